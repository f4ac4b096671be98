"""Tests of robust image loading / saving (cajnn/data/image_io.py) on a synthetic corpus."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cajnn.data import image_io
from cajnn.data.image_io import ImageLoadError, list_images, load_rgb, save_rgb
from tests.helpers.image_corpus import png_chunk, png_header_only


def rgb_pattern(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def smooth_pattern(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    r = 40 + 150 * x / w
    g = 60 + 120 * y / h
    b = 128 + 60 * np.sin(x / 5.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


# --- valid images -----------------------------------------------------------------------------


def test_png_rgb_round_trip(tmp_path):
    arr = rgb_pattern()
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_jpeg_rgb(tmp_path):
    arr = smooth_pattern()
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    out = load_rgb(str(tmp_path / "a.jpg"))  # str paths accepted too
    assert out.shape == arr.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - arr).mean() < 4


def test_grayscale_l(tmp_path):
    g = rgb_pattern()[..., 0]
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    out = load_rgb(tmp_path / "g.png")
    assert out.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_la_alpha_on_white(tmp_path):
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0] = 40
    la[..., 1] = 255
    la[0, 0, 1] = 0  # fully transparent
    la[1, 1, 1] = 128  # half transparent
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = load_rgb(tmp_path / "la.png")
    assert out.shape == (4, 4, 3)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[2, 2]) == (40, 40, 40)
    expected = 40 * 128 / 255 + 255 * (1 - 128 / 255)
    assert np.all(np.abs(out[1, 1].astype(float) - expected) <= 1.5)


def test_rgba_alpha_composited_on_white(tmp_path):
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[..., :3] = (10, 20, 200)
    rgba[..., 3] = 255
    rgba[0, 0] = (0, 0, 0, 0)  # transparent black must become white, not black
    rgba[5, 4] = (200, 0, 0, 0)
    rgba[2, 2] = (0, 0, 0, 128)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    out = load_rgb(tmp_path / "t.png")
    assert out.shape == (6, 5, 3)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[5, 4]) == (255, 255, 255)
    assert tuple(out[3, 3]) == (10, 20, 200)
    assert np.all(np.abs(out[2, 2].astype(int) - 127) <= 1)  # 50% black over white


def test_palette_with_transparency(tmp_path):
    idx = np.zeros((4, 6), np.uint8)
    idx[:, 3:] = 1
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (3 * 254))
    img.info["transparency"] = 0  # index 0 (black) is transparent
    img.save(tmp_path / "p.png", transparency=0)
    with Image.open(tmp_path / "p.png") as check:
        assert check.mode == "P" and "transparency" in check.info
    out = load_rgb(tmp_path / "p.png")
    assert out.shape == (4, 6, 3)
    assert np.all(out[:, :3] == 255)  # transparent black -> white
    assert np.all(out[:, 3:] == (255, 0, 0))


def test_palette_without_transparency(tmp_path):
    idx = np.array([[0, 1], [1, 0]], np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 255, 0, 255, 0] + [0] * (3 * 254))
    img.save(tmp_path / "p.png")
    out = load_rgb(tmp_path / "p.png")
    assert tuple(out[0, 0]) == (0, 0, 255) and tuple(out[0, 1]) == (0, 255, 0)


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:, 8:, 3] = 255  # right half: full black ink; left half: no ink = white
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=100)
    with Image.open(tmp_path / "c.jpg") as check:
        assert check.mode == "CMYK"
    out = load_rgb(tmp_path / "c.jpg")
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert out[:, :4].min() > 240  # white
    assert out[:, 12:].max() < 15  # black


def test_16bit_png_scaled_to_8_bits(tmp_path):
    vals = np.array([[0, 257, 1000, 32768], [40000, 65535, 65535, 12345]], np.uint16)
    img = Image.fromarray(vals)
    img.save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as check:
        assert check.mode.startswith("I")
    out = load_rgb(tmp_path / "d.png")
    expected = np.rint(vals.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    assert out.shape == (2, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)


def test_dark_16bit_png_is_still_scaled_from_16_bits(tmp_path):
    vals = np.array([[0, 100], [200, 255]], np.uint16)  # at most 0.4% of the 16-bit range
    Image.fromarray(vals).save(tmp_path / "dark.png")
    out = load_rgb(tmp_path / "dark.png")
    assert out.max() <= 1


def test_exif_orientation_6_is_applied(tmp_path):
    h, w = 16, 40
    arr = np.full((h, w, 3), 255, np.uint8)
    arr[:8, :8] = (255, 0, 0)  # red marker at the stored top-left
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    img.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    out = load_rgb(tmp_path / "o.jpg")
    assert out.shape == (w, h, 3)  # transposed
    # rotating 90 degrees clockwise moves the stored top-left corner to the top-right
    top_right = out[:8, -8:].reshape(-1, 3).mean(0)
    top_left = out[:8, :8].reshape(-1, 3).mean(0)
    assert top_right[0] > 200 and top_right[1] < 60
    assert top_left.min() > 200


def test_exif_orientation_1_keeps_shape(tmp_path):
    img = Image.fromarray(smooth_pattern(16, 40))
    exif = Image.Exif()
    exif[0x0112] = 1
    img.save(tmp_path / "o.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "o.jpg").shape == (16, 40, 3)


# --- bad inputs -------------------------------------------------------------------------------


def valid_png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb_pattern(64, 64)).save(buf, format="PNG")
    return buf.getvalue()


def valid_jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb_pattern(64, 64)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="cannot read file") as exc:
        load_rgb(tmp_path / "nope.png")
    assert exc.value.path.endswith("nope.png")


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageLoadError) as exc:
        load_rgb(tmp_path / "e.png")
    assert exc.value.reason == "empty file"
    assert str(tmp_path / "e.png") in str(exc.value)


def test_text_file_named_png(tmp_path):
    (tmp_path / "t.png").write_text("this is not an image\n")
    with pytest.raises(ImageLoadError) as exc:
        load_rgb(tmp_path / "t.png")
    assert "not an image" in exc.value.reason


@pytest.mark.parametrize("maker, name", [(valid_png_bytes, "cut.png"), (valid_jpeg_bytes, "cut.jpg")])
def test_truncated_files(tmp_path, maker, name):
    data = maker()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as exc:
        load_rgb(tmp_path / name)
    assert "corrupt or truncated" in exc.value.reason


def test_max_pixels_argument(tmp_path):
    Image.fromarray(rgb_pattern(20, 20)).save(tmp_path / "a.png")
    with pytest.raises(ImageLoadError) as exc:
        load_rgb(tmp_path / "a.png", max_pixels=399)
    assert "pixel limit" in exc.value.reason and "20x20" in exc.value.reason
    assert load_rgb(tmp_path / "a.png", max_pixels=400).shape == (20, 20, 3)


def test_header_over_project_limit(tmp_path):
    # 9000 x 9000 = 81 MP: under Pillow's own warning threshold, over the project's 64 MP cap
    (tmp_path / "big.png").write_bytes(png_header_only(9000, 9000))
    with pytest.raises(ImageLoadError) as exc:
        load_rgb(tmp_path / "big.png")
    assert "pixel limit" in exc.value.reason


def test_decompression_bomb_header(tmp_path):
    # 30000 x 30000 = 900 MP: Pillow itself refuses to open it
    (tmp_path / "bomb.png").write_bytes(png_header_only(30000, 30000))
    with pytest.raises(ImageLoadError) as exc:
        load_rgb(tmp_path / "bomb.png")
    assert "bomb" in exc.value.reason


def test_bomb_refused_even_with_high_max_pixels(tmp_path):
    (tmp_path / "bomb.png").write_bytes(png_header_only(30000, 30000))
    with pytest.raises(ImageLoadError, match="bomb"):
        load_rgb(tmp_path / "bomb.png", max_pixels=10**12)


def test_image_load_error_is_not_an_oserror():
    # callers catch ImageLoadError specifically; it carries path and reason
    err = ImageLoadError("x.png", "why")
    assert err.path == "x.png" and err.reason == "why" and str(err) == "x.png: why"
    assert image_io.MAX_PIXELS == 64_000_000


# --- list_images ------------------------------------------------------------------------------


def test_list_images_filters_and_sorts(tmp_path):
    names = ["b.png", "a.JPG", "c.jpeg", "sub/d.webp", "sub/deeper/e.tif", "z.bmp"]
    ignored = ["notes.txt", "x.png.bak", "README", "f.gif", "sub/meta.json"]
    for n in names + ignored:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()  # a folder with an image suffix is not a file
    found = list_images(tmp_path)
    assert found == sorted(found)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in found) == sorted(names)
    assert all(isinstance(p, Path) for p in found)


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")


def test_list_images_empty(tmp_path):
    assert list_images(tmp_path) == []


# --- save_rgb ---------------------------------------------------------------------------------


def test_save_rgb_png_round_trip(tmp_path):
    arr = rgb_pattern()
    target = tmp_path / "out" / "nested" / "x.png"
    save_rgb(arr, target)
    np.testing.assert_array_equal(load_rgb(target), arr)
    assert [p.name for p in target.parent.iterdir()] == ["x.png"]  # no temp file left


def test_save_rgb_jpeg_kwargs(tmp_path):
    arr = rgb_pattern(64, 64)
    save_rgb(arr, tmp_path / "lo.jpg", quality=10)
    save_rgb(arr, tmp_path / "hi.jpg", quality=95)
    assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size
    with Image.open(tmp_path / "hi.jpg") as im:
        assert im.format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hi.jpg", "lo.jpg"]


def test_save_rgb_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="xyz"):
        save_rgb(rgb_pattern(), tmp_path / "x.xyz")
    assert list(tmp_path.iterdir()) == []


def test_save_rgb_failure_leaves_no_temp_and_keeps_old_file(tmp_path):
    target = tmp_path / "keep.png"
    good = rgb_pattern()
    save_rgb(good, target)
    before = target.read_bytes()
    bad = np.zeros((4, 4, 3), np.float64)  # Pillow cannot build an image from float64 RGB
    with pytest.raises((TypeError, ValueError)):
        save_rgb(bad, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_save_rgb_jpeg_of_rgba_fails_cleanly(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(OSError):  # JPEG cannot hold an alpha channel
        save_rgb(rgba, tmp_path / "a.jpg")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "exc, reason",
    [
        (EOFError("no more data"), "corrupt or truncated"),
        (MemoryError(), "not enough memory"),
        (IndexError("tile out of range"), "unreadable image (IndexError: tile out of range)"),
    ],
)
def test_any_decoder_failure_becomes_a_reason(tmp_path, monkeypatch, exc, reason):
    Image.fromarray(rgb_pattern()).save(tmp_path / "a.png")

    def boom(self):
        raise exc

    monkeypatch.setattr(Image.Image, "load", boom)
    with pytest.raises(ImageLoadError) as info:
        load_rgb(tmp_path / "a.png")
    assert reason in info.value.reason


def test_16bit_rgb_png_becomes_8bit_rgb(tmp_path):
    # a 48-bit PNG written by hand (Pillow cannot write one): 2 x 1 pixels
    rows = [b"\x00" + np.array([[65535, 0, 257], [32896, 65535, 0]], ">u2").tobytes()]
    body = zlib.compress(b"".join(rows))
    ihdr = struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0)
    (tmp_path / "d.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")
    )
    out = load_rgb(tmp_path / "d.png")
    assert out.shape == (1, 2, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == (255, 0, 1) and tuple(out[0, 1]) == (128, 255, 0)
