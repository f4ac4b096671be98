"""Validation during training: PSNR-Y / SSIM-Y on a few held-out images (paper IV-B protocol
on centre crops, so that it costs seconds, not minutes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from cajnn.data.image_io import ImageLoadError, list_images, load_rgb
from cajnn.degradation.imresize import matlab_imresize, modcrop
from cajnn.degradation.protocol import compress_for_test, downscale_for_test
from cajnn.inference import enhance
from cajnn.metrics import psnr_y, ssim_y


@dataclass(frozen=True)
class ValPair:
    name: str
    qf: int
    lr: np.ndarray  # JPEG-degraded LR, uint8
    hr: np.ndarray  # ground truth, uint8


def centre_crop(img: np.ndarray, side: int, multiple: int) -> np.ndarray:
    """The central `side` x `side` region (or less), with sides a multiple of `multiple`."""
    h, w = img.shape[:2]
    ch, cw = min(side, h) // multiple * multiple, min(side, w) // multiple * multiple
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[y : y + ch, x : x + cw])


def build_val_pairs(folders: Sequence[str | Path], qualities: Sequence[int], crop: int, scale: int) -> list[ValPair]:
    """HR centre crops degraded as in the test protocol (:mod:`cajnn.degradation.protocol`)."""
    pairs = []
    for folder in folders:
        for path in list_images(folder):
            try:
                hr = centre_crop(modcrop(load_rgb(path), scale), crop, 8 * scale)
            except ImageLoadError:
                continue  # evaluation reports unreadable files; validation just uses the rest
            if min(hr.shape[:2]) < 8 * scale:
                continue
            lr_clean = downscale_for_test(hr, scale)
            for qf in qualities:
                pairs.append(ValPair(path.stem, int(qf), compress_for_test(lr_clean, int(qf)), hr))
    return pairs


def task_pair(pair: ValPair, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) of a validation pair for a training task (`train.task`): JPEG LR -> HR
    (joint), JPEG LR -> clean LR (car), clean LR -> HR (sr); clean LR = MATLAB bicubic x1/scale."""
    if task == "joint":
        return pair.lr, pair.hr
    clean = downscale_for_test(pair.hr, pair.hr.shape[0] // pair.lr.shape[0])
    return (pair.lr, clean) if task == "car" else (clean, pair.hr)


def validate(
    model: nn.Module, pairs: Sequence[ValPair], crop: int = 4, task: str = "joint"
) -> tuple[dict[str, float], np.ndarray | None]:
    """Mean PSNR-Y / SSIM-Y over the pairs (and per QF), and a side-by-side sample image
    (input nearest-upscaled | bicubic (joint only) | output | target) of the first pair."""
    if not pairs:
        return {}, None
    scores: dict[int, list[tuple[float, float]]] = {}
    sample = None
    for pair in pairs:
        inp, target = task_pair(pair, task)
        out = enhance(inp, model, device=str(next(model.parameters()).device.type))
        scores.setdefault(pair.qf, []).append((psnr_y(out, target, crop), ssim_y(out, target, crop)))
        if sample is None:
            scale = target.shape[0] // inp.shape[0]
            near = np.repeat(np.repeat(inp, scale, axis=0), scale, axis=1)
            bicubic = [matlab_imresize(inp, float(scale))] if task == "joint" else []
            sample = np.concatenate([near, *bicubic, out, target], axis=1)
    metrics = {}
    for qf, vals in sorted(scores.items()):
        metrics[f"val_psnr_y_qf{qf}"] = float(np.mean([v[0] for v in vals]))
        metrics[f"val_ssim_y_qf{qf}"] = float(np.mean([v[1] for v in vals]))
    allv = [v for vals in scores.values() for v in vals]
    metrics["val_psnr_y"] = float(np.mean([v[0] for v in allv]))
    metrics["val_ssim_y"] = float(np.mean([v[1] for v in allv]))
    return metrics, sample
