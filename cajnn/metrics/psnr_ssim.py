"""PSNR and SSIM on the Y channel, as SR papers report them (docs/design.md "Test protocol", paper IV-B).

* Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B in [0, 1] (BT.601, MATLAB ``rgb2ycbcr``
  on double input), kept in float64 on the 0..255 scale. MATLAB's ``rgb2ycbcr`` on *uint8* input
  would round Y to uint8; some papers' scripts do that, docs/design.md fixes float64, so we do not round.
* ``crop`` pixels (default 4 = scale) are removed on every side before either metric.
* PSNR: peak 255, ``10 log10(255^2 / MSE)``; identical inputs give ``inf``.
* SSIM (Wang et al. 2004, MATLAB ``ssim_index``): 11 x 11 Gaussian window, sigma 1.5 (normalised
  to sum 1, like ``fspecial('gaussian', 11, 1.5)``), K1 = 0.01, K2 = 0.03, L = 255, 'valid'
  filtering (only windows entirely inside the cropped image), mean of the SSIM map.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.ndimage import correlate1d

__all__ = ["rgb_to_y", "psnr", "psnr_y", "ssim", "ssim_y", "gaussian_window_1d"]

_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)

SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_rgb_uint8(img: Any, name: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8 RGB image (H x W x 3), got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name} must be a uint8 RGB image (H x W x 3), got shape {arr.shape}")
    return arr


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """uint8 RGB H x W x 3 -> float64 Y (BT.601, 16..235 range, not rounded)."""
    arr = _check_rgb_uint8(img, "img")
    rgb = arr.astype(np.float64) / 255.0
    return 16.0 + rgb @ _Y_COEFFS


def _pair_y(pred: Any, gt: Any, crop: int) -> tuple[np.ndarray, np.ndarray]:
    p = _check_rgb_uint8(pred, "pred")
    g = _check_rgb_uint8(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or crop < 0:
        raise ValueError(f"crop must be a non-negative integer, got {crop!r}")
    h, w = p.shape[:2]
    if h <= 2 * crop or w <= 2 * crop:
        raise ValueError(f"crop={crop} leaves nothing of a {h} x {w} image")
    if crop:
        p = p[crop:-crop, crop:-crop]
        g = g[crop:-crop, crop:-crop]
    return rgb_to_y(p), rgb_to_y(g)


def psnr(pred: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB of two arrays of equal shape (any dtype, computed in float64); inf if equal."""
    a = np.asarray(pred)
    b = np.asarray(gt)
    if a.shape != b.shape:
        raise ValueError(f"pred and gt must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("pred and gt must be non-empty")
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


def psnr_y(pred: np.ndarray, gt: np.ndarray, crop: int = 4) -> float:
    """PSNR (dB, peak 255) on the Y channel of uint8 RGB images, ``crop`` border pixels removed."""
    yp, yg = _pair_y(pred, gt, crop)
    return psnr(yp, yg, data_range=255.0)


def gaussian_window_1d(size: int = SSIM_WIN_SIZE, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product equals MATLAB ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Separable correlation keeping only positions where the window lies fully inside."""
    r = (win.size - 1) // 2
    out = correlate1d(img, win, axis=0, mode="constant")
    out = correlate1d(out, win, axis=1, mode="constant")
    return out[r : img.shape[0] - r, r : img.shape[1] - r]


def ssim(img1: np.ndarray, img2: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM of two 2-D arrays (Gaussian 11 x 11, sigma 1.5, 'valid' filtering), float64."""
    a = np.asarray(img1, dtype=np.float64)
    b = np.asarray(img2, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"img1 and img2 must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"ssim expects 2-D arrays, got shape {a.shape}")
    if a.shape[0] < SSIM_WIN_SIZE or a.shape[1] < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs at least {SSIM_WIN_SIZE} x {SSIM_WIN_SIZE} pixels, got {a.shape}")
    win = gaussian_window_1d()
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu1 = _filter_valid(a, win)
    mu2 = _filter_valid(b, win)
    mu1_sq = mu1 * mu1
    mu2_sq = mu2 * mu2
    mu12 = mu1 * mu2
    sigma1_sq = _filter_valid(a * a, win) - mu1_sq
    sigma2_sq = _filter_valid(b * b, win) - mu2_sq
    sigma12 = _filter_valid(a * b, win) - mu12
    num = (2.0 * mu12 + c1) * (2.0 * sigma12 + c2)
    den = (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2)
    return float(np.mean(num / den))


def ssim_y(pred: np.ndarray, gt: np.ndarray, crop: int = 4) -> float:
    """SSIM on the Y channel of uint8 RGB images, ``crop`` border pixels removed (docs/design.md protocol)."""
    yp, yg = _pair_y(pred, gt, crop)
    return ssim(yp, yg, data_range=255.0)
