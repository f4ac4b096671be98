"""Aligned HR/LR patch pairs cut from a degraded image (paper IV-A: HR 128 / LR 32 crops are
taken from these at training time)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def grid(length: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets covering [0, length) with `patch`-sized windows; the last is flush."""
    if length < patch:
        return []
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def patch_pairs(
    hr: np.ndarray, lr: np.ndarray, patch: int, stride: int, scale: int
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Yield (y, x, hr_patch, lr_patch) with LR offsets (y, x); HR is `scale` x LR, aligned."""
    h, w = lr.shape[:2]
    if hr.shape[0] < h * scale or hr.shape[1] < w * scale:
        raise ValueError(f"HR {hr.shape[:2]} is smaller than {scale} x LR {lr.shape[:2]}")
    hp = patch * scale
    for y in grid(h, patch, stride):
        for x in grid(w, patch, stride):
            yield (
                y,
                x,
                np.ascontiguousarray(hr[y * scale : y * scale + hp, x * scale : x * scale + hp]),
                np.ascontiguousarray(lr[y : y + patch, x : x + patch]),
            )
