"""What `cajnn enhance` keeps of an image (cajnn.data.image_meta), end to end with a micro model."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from typer.testing import CliRunner

from cajnn.archs import build_model
from cajnn.atomic import write_atomic
from cajnn.cli import app
from cajnn.data.image_meta import _ORIENT, finish, png16_bytes, read_image, to_8bit
from cajnn.degradation import matlab_imresize
from cajnn.inference import enhance
from cajnn.weights import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_weights(build_model("micro"), tmp_path_factory.mktemp("w") / "micro.safetensors")


@pytest.fixture(scope="module")
def net(weights):
    return load_weights(weights)


def noise(shape, seed=0, high=256, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def cli(*args):
    return CliRunner().invoke(app, ["enhance", *map(str, args)])


def run_one(tmp_path: Path, weights: Path, src: Path, *extra) -> tuple[Path, object]:
    """Enhance `src` into tmp_path/o; returns the single output file and the CLI result."""
    res = cli(src, "-o", tmp_path / "o", "--weights", weights, "--device", "cpu", *extra)
    assert res.exit_code == 0, res.output
    outs = [p for p in (tmp_path / "o").iterdir()]
    assert len(outs) == 1, outs
    return outs[0], res


def gray_sr(net, gray8: np.ndarray) -> np.ndarray:
    """The network's output for a gray plane, reduced back to gray the way enhance does."""
    return enhance(np.repeat(gray8[:, :, None], 3, axis=2), net, device="cpu").astype(np.float64).mean(axis=2)


def enhanced(tmp_path, weights, image: np.ndarray, name: str, mode: str, size: tuple[int, int]) -> np.ndarray:
    """Save `image` as `name`, enhance it, check the output's mode and size, return its pixels."""
    Image.fromarray(image).save(tmp_path / name)
    out, _ = run_one(tmp_path, weights, tmp_path / name)
    with Image.open(out) as im:
        assert im.mode == mode and im.size == size
        return np.asarray(im)


def test_rgba_keeps_its_alpha_upscaled_on_its_own(tmp_path, weights, net):
    rgba = noise((9, 11, 4), 1)
    rgba[:3, :, 3] = 0  # a transparent band
    got = enhanced(tmp_path, weights, rgba, "a.png", "RGBA", (44, 36))
    np.testing.assert_array_equal(got[:, :, 3], matlab_imresize(rgba[:, :, 3], 4))
    np.testing.assert_array_equal(got[:, :, :3], enhance(np.ascontiguousarray(rgba[:, :, :3]), net, device="cpu"))


def test_la_and_l_stay_gray(tmp_path, weights, net):
    la = noise((8, 7, 2), 2)
    got = enhanced(tmp_path, weights, la, "la.png", "LA", (28, 32))
    np.testing.assert_array_equal(got[:, :, 1], matlab_imresize(la[:, :, 1], 4))
    np.testing.assert_array_equal(got[:, :, 0], np.rint(gray_sr(net, np.ascontiguousarray(la[:, :, 0]))))

    Image.fromarray(la[:, :, 0]).save(tmp_path / "l.jpg", quality=90)
    out, _ = run_one(tmp_path / "l", weights, tmp_path / "l.jpg", "--format", "auto")
    with Image.open(out) as im:
        assert out.suffix == ".jpg" and im.mode == "L" and im.size == (28, 32)


def test_16bit_gray_stays_16bit_and_close_to_the_8bit_result(tmp_path, weights, net):
    # a smooth ramp (where 8 bits would band) plus noise, over the whole 16-bit range
    ramp = np.linspace(0, 65535, 12 * 10).reshape(12, 10)
    x16 = np.clip(ramp + noise((12, 10), 3, 4000).astype(np.float64) - 2000, 0, 65535).astype(np.uint16)
    Image.fromarray(x16).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode == "I;16"
    out, _ = run_one(tmp_path, weights, tmp_path / "g16.png")
    with Image.open(out) as im:
        assert im.mode == "I;16" and im.size == (40, 48)
        got = np.asarray(im).astype(np.float64)
    eight = gray_sr(net, to_8bit(x16))
    assert np.abs(got / 257 - eight).max() <= 1.0  # within one 8-bit step of the 8-bit path
    assert np.mean(got % 257 != 0) > 0.5  # and it carries what 8 bits cannot


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16bit_rgb_is_read_and_written_at_16_bits(tmp_path, weights, net, suffix):
    import cv2

    x16 = noise((6, 9, 3), 4, 65536, np.uint16)  # Pillow would decode both files to 8 bits
    if suffix == ".png":
        (tmp_path / "c16.png").write_bytes(png16_bytes(x16))
    else:
        (tmp_path / "c16.tiff").write_bytes(cv2.imencode(".tiff", x16[:, :, ::-1])[1].tobytes())
    out, res = run_one(tmp_path, weights, tmp_path / f"c16{suffix}")
    assert out.name == "c16.png" and "8 bits" not in res.output
    got = cv2.imdecode(np.fromfile(out, np.uint8), cv2.IMREAD_UNCHANGED)
    assert got.dtype == np.uint16 and got.shape == (24, 36, 3)
    sr8 = enhance(to_8bit(x16), net, device="cpu").astype(np.float64)
    assert np.abs(got[:, :, ::-1] / 257 - sr8).max() <= 1.0


def test_16bit_rgba_with_exif_rotation_agrees_with_pillow(tmp_path):
    x16 = noise((5, 8, 4), 5, 65536, np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "r.png").write_bytes(png16_bytes(x16, exif=exif.tobytes()))
    kept = read_image(tmp_path / "r.png")
    assert kept.colour.dtype == np.uint16 and kept.alpha.dtype == np.uint16 and not kept.notes
    np.testing.assert_array_equal(kept.colour, np.rot90(x16[:, :, :3], -1))
    np.testing.assert_array_equal(kept.alpha, np.rot90(x16[:, :, 3], -1))
    assert kept.exif is None  # the orientation was its only tag


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_array_orientation_table_matches_pillow(orientation):
    from PIL import ImageOps

    arr = noise((3, 5, 3), orientation)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(img))
    np.testing.assert_array_equal(_ORIENT.get(orientation, lambda a: a)(arr), expected)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_bytes_round_trip(channels):
    import cv2

    arr = noise((4, 6, channels), channels, 65536, np.uint16)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = png16_bytes(arr, icc=icc)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.info["icc_profile"] == icc and im.size == (6, 4)
        if channels == 1:
            np.testing.assert_array_equal(np.asarray(im), arr[:, :, 0])
    if channels != 2:  # OpenCV turns gray+alpha into BGRA
        got = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        got = got if channels == 1 else got[:, :, [2, 1, 0, 3][:channels]]
        np.testing.assert_array_equal(got.reshape(arr.shape), arr)


def test_palette_images_with_and_without_transparency(tmp_path, weights):
    rgb = noise((7, 6, 3), 6)
    pal = Image.fromarray(rgb).quantize(8)
    pal.save(tmp_path / "p.png")
    out, _ = run_one(tmp_path / "a", weights, tmp_path / "p.png")
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == (24, 28)

    pal.save(tmp_path / "pt.png", transparency=0)
    with Image.open(tmp_path / "pt.png") as im:
        alpha = np.asarray(im.convert("RGBA"))[:, :, 3]
    assert 0 < alpha.mean() < 255
    out, _ = run_one(tmp_path / "b", weights, tmp_path / "pt.png")
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (24, 28)
        np.testing.assert_array_equal(np.asarray(im)[:, :, 3], matlab_imresize(alpha, 4))


def test_animated_gif_first_frame_is_enhanced_and_the_rest_reported(tmp_path, weights):
    frames = [Image.fromarray(noise((5, 6, 3), s)).quantize(16) for s in (7, 8)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    out, res = run_one(tmp_path, weights, tmp_path / "anim.gif", "--format", "auto")
    assert out.name == "anim.png" and Image.open(out).size == (24, 20)
    assert "2 frames" in res.output and "only the first" in res.output


def test_cmyk_becomes_rgb_and_says_so(tmp_path, weights):
    Image.fromarray(noise((6, 6, 4), 9), mode="CMYK").save(tmp_path / "c.jpg", quality=95)
    out, res = run_one(tmp_path, weights, tmp_path / "c.jpg", "--format", "auto")
    with Image.open(out) as im:
        assert out.name == "c.jpg" and im.mode == "RGB" and im.size == (24, 24)
    assert "CMYK converted to RGB" in res.output


def test_exif_orientation_applied_once_and_other_exif_kept(tmp_path, weights):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 16 wide x 10 high, shown 10 wide x 16 high
    exif[0x010F] = "TestCam"
    Image.fromarray(noise((10, 16, 3), 10)).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    for fmt, name in [("auto", "rot.jpg"), ("png", "rot.png"), ("webp", "rot.webp")]:
        res = cli(tmp_path / "rot.jpg", "-o", tmp_path / fmt, "--weights", weights, "--format", fmt)
        assert res.exit_code == 0, res.output
        with Image.open(tmp_path / fmt / name) as im:
            assert im.size == (40, 64)
            got = im.getexif()
            assert got.get(0x0112, 1) == 1 and got.get(0x010F) == "TestCam"


def test_icc_profile_is_carried_over(tmp_path, weights):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(noise((5, 7, 3), 11)).save(tmp_path / "icc.png", icc_profile=icc)
    Image.fromarray(noise((5, 7, 4), 12)).save(tmp_path / "icc_a.webp", icc_profile=icc, lossless=True)
    res = cli(
        tmp_path / "icc.png", tmp_path / "icc_a.webp", "-o", tmp_path / "o", "--weights", weights, "--format", "auto"
    )
    assert res.exit_code == 0, res.output
    for name, mode in [("icc.png", "RGB"), ("icc_a.webp", "RGBA")]:
        with Image.open(tmp_path / "o" / name) as im:
            assert im.mode == mode and im.info.get("icc_profile") == icc


def test_alpha_to_jpeg_is_composited_on_white_with_one_warning(tmp_path, weights, net):
    rgba = noise((6, 5, 4), 13)
    rgba[:, :, 3] = 0  # fully transparent: white after compositing
    Image.fromarray(rgba).save(tmp_path / "t1.png")
    Image.fromarray(rgba).save(tmp_path / "t2.png")
    res = cli(
        tmp_path / "t1.png",
        tmp_path / "t2.png",
        "-o",
        tmp_path / "o",
        "--weights",
        weights,
        "--format",
        "jpeg",
        "--quality",
        "100",
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("warning: JPEG has no alpha channel") == 1
    with Image.open(tmp_path / "o" / "t1.jpg") as im:
        assert im.mode == "RGB" and np.asarray(im).min() >= 250


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_ordinary_permissions(tmp_path, weights, umask, mode):
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "direct.bin", lambda fh: fh.write(b"x"))
        Image.fromarray(noise((4, 4, 3))).save(tmp_path / "x.png")
        res = cli(tmp_path / "x.png", "-o", tmp_path / "o", "--weights", weights)
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE((tmp_path / "direct.bin").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "o" / "x.png").stat().st_mode) == mode
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["x.png"]  # no temp file left


def test_finish_with_outscale_resizes_colour_and_alpha_together():
    from cajnn.data.image_meta import KeptImage

    kept = KeptImage(noise((4, 6, 1), 14, 65536, np.uint16), noise((4, 6), 15))
    sr = noise((16, 24, 3), 16)
    out = finish(kept, sr, (10, 15))
    assert out.shape == (10, 15, 2) and out.dtype == np.uint16
