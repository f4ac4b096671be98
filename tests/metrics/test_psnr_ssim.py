"""Tests of PSNR / SSIM on Y (docs/design.md "Test protocol", paper IV-B)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from skimage import data as skdata
from skimage.metrics import structural_similarity

from cajnn.degradation import jpeg_compress
from cajnn.metrics import psnr, psnr_y, rgb_to_y, ssim, ssim_y


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    gt = np.ascontiguousarray(skdata.astronaut()[40:140, 200:290])  # 100 x 90
    pred = jpeg_compress(gt, 15)
    return pred, gt


def test_rgb_to_y_formula():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]], [[0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    y = rgb_to_y(img)
    assert y.dtype == np.float64 and y.shape == (2, 3)
    expected = [
        [16.0, 235.0, 16 + 65.481],
        [16 + 128.553, 16 + 24.966, 16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255],
    ]
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)


def test_psnr_known_mse_uniform_offset():
    # pred = gt + d on all three channels -> Y differs by d * 219/255 everywhere
    # (65.481 + 128.553 + 24.966 = 219), so MSE = (219 d / 255)^2 exactly.
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 200, (20, 24, 3), dtype=np.uint8)
    for d in (1, 3, 50):
        pred = gt + np.uint8(d)
        expected = 10 * math.log10(255.0**2 / (219.0 * d / 255.0) ** 2)
        assert psnr_y(pred, gt) == pytest.approx(expected, abs=1e-9)
        assert psnr_y(gt, pred) == pytest.approx(expected, abs=1e-9)


def test_psnr_y_matches_independent_formula(pair):
    pred, gt = pair

    def y(img):  # written out per channel, independent of rgb_to_y's matrix product
        r, g, b = (img[..., i].astype(np.float64) for i in range(3))
        return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0

    dy = (y(pred) - y(gt))[4:-4, 4:-4]
    expected = 10 * np.log10(255.0**2 / np.mean(dy**2))
    assert psnr_y(pred, gt) == pytest.approx(expected, abs=1e-9)
    assert psnr_y(pred, gt, crop=4) == psnr_y(pred, gt)


def test_identical_images_inf_no_warning(pair):
    _, gt = pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr_y(gt, gt.copy()) == float("inf")
        assert psnr(gt, gt) == float("inf")
        assert ssim_y(gt, gt) == 1.0


def test_ssim_identity_and_flat():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    assert ssim_y(x, x) == pytest.approx(1.0, abs=1e-12)
    flat = np.full((32, 40, 3), 128, np.uint8)
    assert ssim_y(flat, flat) == 1.0  # constants: C1/C2 keep it defined


def test_ssim_y_matches_skimage(pair):
    pred, gt = pair
    yp, yg = rgb_to_y(pred)[4:-4, 4:-4], rgb_to_y(gt)[4:-4, 4:-4]
    # skimage filters the whole image (reflect padding) and averages the map cropped by
    # (win_size - 1) // 2 = 5 pixels: exactly the windows that lie fully inside = our 'valid'.
    ref = structural_similarity(yp, yg, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    ours = ssim_y(pred, gt)
    assert 0.5 < ours < 0.999
    assert ours == pytest.approx(ref, abs=1e-4)
    assert ssim(yp, yg) == pytest.approx(ours, abs=1e-12)
    # full=True map, cropped by 5, has the same mean
    _, smap = structural_similarity(
        yp, yg, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, full=True
    )
    assert float(smap[5:-5, 5:-5].mean()) == pytest.approx(ours, abs=1e-4)


def test_ssim_lower_for_worse_compression(pair):
    _, gt = pair
    s10 = ssim_y(jpeg_compress(gt, 10), gt)
    s40 = ssim_y(jpeg_compress(gt, 40), gt)
    s90 = ssim_y(jpeg_compress(gt, 90), gt)
    assert s10 < s40 < s90 < 1.0
    p10 = psnr_y(jpeg_compress(gt, 10), gt)
    p90 = psnr_y(jpeg_compress(gt, 90), gt)
    assert p10 < p90


def test_crop_handling():
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    pred = gt.copy()
    # damage only the outer 4-pixel frame
    pred[:4] = 255 - pred[:4]
    pred[-4:] = 255 - pred[-4:]
    pred[:, :4] = 255 - pred[:, :4]
    pred[:, -4:] = 255 - pred[:, -4:]
    assert psnr_y(pred, gt, crop=4) == float("inf")
    assert ssim_y(pred, gt, crop=4) == 1.0
    assert math.isfinite(psnr_y(pred, gt, crop=0))
    assert math.isfinite(psnr_y(pred, gt, crop=3))
    assert ssim_y(pred, gt, crop=0) < 1.0
    # crop = 0 uses every pixel
    dy = rgb_to_y(pred) - rgb_to_y(gt)
    assert psnr_y(pred, gt, crop=0) == pytest.approx(10 * np.log10(255.0**2 / np.mean(dy**2)), abs=1e-9)


def test_dtype_and_shape_checks():
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        psnr_y(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="uint8"):
        ssim_y(a, a.astype(np.int64))
    with pytest.raises(ValueError, match="same shape"):
        psnr_y(a, np.zeros((16, 17, 3), np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        ssim_y(a, np.zeros((17, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB"):
        psnr_y(a[..., 0], a[..., 0])
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_y(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="crop"):
        psnr_y(a, a, crop=8)
    with pytest.raises(ValueError, match="crop"):
        psnr_y(a, a, crop=-1)
    with pytest.raises(ValueError, match="11"):
        ssim_y(a, a, crop=3)  # 10 x 10 left: no full 11 x 11 window
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros(3), np.zeros(4))


def test_generic_psnr():
    a = np.zeros((4, 4))
    b = np.full((4, 4), 2.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 4.0))
    assert psnr(a, b / 255, data_range=1.0) == pytest.approx(10 * math.log10(255**2 / 4.0))
