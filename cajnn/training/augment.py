"""Training-time augmentation (paper IV-A): random aligned crops and the 8 dihedral variants
(rotation by 0/90/180/270 degrees, with and without a horizontal flip: :mod:`cajnn.data.dihedral`)."""

from __future__ import annotations

import numpy as np
import torch

from cajnn.data.dihedral import DIHEDRAL, dihedral


def random_crop_pairs(
    hr: np.ndarray, lr: np.ndarray, crop: int, scale: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample aligned crops: LR `crop` x `crop`, HR `scale*crop` square, from (N,H,W,3)."""
    n, h, w = lr.shape[:3]
    if crop > min(h, w):
        raise ValueError(f"crop {crop} is larger than the stored LR patch {h}x{w}")
    ys = rng.integers(0, h - crop + 1, size=n)
    xs = rng.integers(0, w - crop + 1, size=n)
    hc = crop * scale
    lr_out = np.stack([lr[i, y : y + crop, x : x + crop] for i, (y, x) in enumerate(zip(ys, xs))])
    hr_out = np.stack(
        [hr[i, y * scale : y * scale + hc, x * scale : x * scale + hc] for i, (y, x) in enumerate(zip(ys, xs))]
    )
    return hr_out, lr_out


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)


def augment_batch(
    hr: np.ndarray, lr: np.ndarray, crop: int, scale: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop, convert and apply one random dihedral transform per sample, identically to HR/LR."""
    hr, lr = random_crop_pairs(hr, lr, crop, scale, rng)
    hr_t, lr_t = to_tensor(hr), to_tensor(lr)
    ks = rng.integers(0, DIHEDRAL, size=len(hr_t))
    hr_t = torch.stack([dihedral(t, int(k)) for t, k in zip(hr_t, ks)])
    lr_t = torch.stack([dihedral(t, int(k)) for t, k in zip(lr_t, ks)])
    return hr_t, lr_t
