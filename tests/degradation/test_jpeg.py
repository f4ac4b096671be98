"""Tests of the libjpeg-turbo JPEG degradation (docs/design.md "Data and degradation", paper IV-A)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from skimage import data as skdata

from cajnn.degradation import jpeg as jpeg_mod
from cajnn.degradation import jpeg_compress, jpeg_encode
from cajnn.metrics import psnr


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    # natural image shipped inside scikit-image (no download); odd size to exercise MCU padding
    return np.ascontiguousarray(skdata.astronaut()[100:197, 150:273])


# Pillow's get_sampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
PIL_SAMPLING = {"444": 0, "422": 1, "420": 2}


@pytest.mark.parametrize("sub", ["420", "422", "444", "gray"])
def test_round_trip_shape_and_dtype(photo, sub):
    out = jpeg_compress(photo, 40, sub)
    assert out.shape == photo.shape and out.dtype == np.uint8
    if sub == "gray":
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        np.testing.assert_array_equal(out[..., 0], out[..., 2])
        luma = np.asarray(Image.fromarray(photo).convert("L"))  # BT.601 luma, like libjpeg's Y
        assert psnr(out[..., 0], luma) > 28
    else:
        assert psnr(out, photo) > 28


@pytest.mark.parametrize("sub", ["420", "422", "444", "gray"])
def test_bytes_decode_with_pillow(photo, sub):
    data = jpeg_encode(photo, 40, sub)
    assert isinstance(data, bytes) and data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    im = Image.open(io.BytesIO(data))
    im.load()
    assert im.format == "JPEG" and im.size == (photo.shape[1], photo.shape[0])
    if sub == "gray":
        assert im.mode == "L"
    else:
        assert im.mode == "RGB"
        assert JpegImagePlugin.get_sampling(im) == PIL_SAMPLING[sub]
    # Pillow's libjpeg decode (islow IDCT, fancy upsampling) agrees with ours
    ours = jpeg_compress(photo, 40, sub)
    theirs = np.asarray(im.convert("RGB"))
    assert np.abs(theirs.astype(int) - ours.astype(int)).max() <= 1


def test_grayscale_path(photo):
    gray = np.ascontiguousarray(photo[..., 1])
    out = jpeg_compress(gray, 30, "gray")
    assert out.shape == gray.shape and out.dtype == np.uint8
    assert Image.open(io.BytesIO(jpeg_encode(gray, 30, "gray"))).mode == "L"
    out1 = jpeg_compress(gray[..., None], 30, "gray")
    assert out1.shape == gray.shape + (1,)
    np.testing.assert_array_equal(out1[..., 0], out)
    # chroma subsampling does not apply to a single-channel image: same bytes whatever it says
    assert jpeg_encode(gray, 30, "420") == jpeg_encode(gray, 30, "gray")


@pytest.mark.parametrize("q", [0, 101, -5, 50.0, 50.5, "50", True, None])
def test_quality_bounds(photo, q):
    with pytest.raises(ValueError, match="quality"):
        jpeg_encode(photo, q)
    with pytest.raises(ValueError, match="quality"):
        jpeg_compress(photo, q)


def test_quality_extremes_and_numpy_int_ok(photo):
    assert jpeg_compress(photo, 1).shape == photo.shape
    assert jpeg_compress(photo, 100).shape == photo.shape
    assert jpeg_encode(photo, np.int64(37)) == jpeg_encode(photo, 37)


@pytest.mark.parametrize("sub", ["411", "4:2:0", "", None, 420])
def test_bad_subsampling(photo, sub):
    with pytest.raises(ValueError, match="subsampling"):
        jpeg_encode(photo, 50, sub)


@pytest.mark.parametrize(
    "img",
    [
        np.zeros((16, 16, 3), dtype=np.float32),
        np.zeros((16, 16, 3), dtype=np.uint16),
        np.zeros((16, 16, 4), dtype=np.uint8),
        np.zeros((16,), dtype=np.uint8),
        np.zeros((0, 16, 3), dtype=np.uint8),
    ],
)
def test_bad_image(img):
    with pytest.raises(ValueError):
        jpeg_compress(img, 50)


def test_lower_quality_fewer_bytes_lower_psnr(photo):
    qualities = [10, 20, 40, 70, 95]
    sizes = [len(jpeg_encode(photo, q)) for q in qualities]
    psnrs = [psnr(jpeg_compress(photo, q), photo) for q in qualities]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert psnrs == sorted(psnrs) and len(set(psnrs)) == len(psnrs)


def test_deterministic(photo):
    a = jpeg_encode(photo, 20)
    b = jpeg_encode(photo.copy(), 20)
    assert a == b
    np.testing.assert_array_equal(jpeg_compress(photo, 20), jpeg_compress(photo, 20))


def test_non_contiguous_input(photo):
    view = photo[:, ::-1]
    assert not view.flags.c_contiguous
    assert jpeg_encode(view, 30) == jpeg_encode(view.copy(), 30)


def test_missing_library_message(monkeypatch):
    import turbojpeg

    def boom(*args, **kwargs):
        raise RuntimeError("Unable to locate turbojpeg library automatically.")

    monkeypatch.setattr(jpeg_mod, "_handle", None)
    monkeypatch.setattr(turbojpeg, "TurboJPEG", boom)
    with pytest.raises(RuntimeError, match="apt-get install -y libturbojpeg0"):
        jpeg_encode(np.zeros((8, 8, 3), dtype=np.uint8), 50)


def test_handle_is_cached():
    jpeg_encode(np.zeros((8, 8, 3), dtype=np.uint8), 50)
    h = jpeg_mod._get_handle()
    jpeg_encode(np.zeros((8, 8, 3), dtype=np.uint8), 50)
    assert jpeg_mod._get_handle() is h
