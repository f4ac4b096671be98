"""Inference: enhance a uint8 RGB image with a CAJNN model (any size, optional tiling and
8-way self-ensemble as in paper Table I's "self-ensembled" rows)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cajnn.training.augment import dihedral, dihedral_inverse


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def _forward(model: nn.Module, x: torch.Tensor, self_ensemble: bool) -> torch.Tensor:
    if not self_ensemble:
        return model(x)
    # Mean of the 8 dihedral transforms, each undone on the output.
    out = torch.zeros(())
    for k in range(8):
        out = out + dihedral_inverse(model(dihedral(x, k)), k)
    return out / 8


def _tiled(model: nn.Module, x: torch.Tensor, scale: int, tile: int, overlap: int, self_ensemble: bool) -> torch.Tensor:
    """Cut the LR image into `tile` x `tile` regions, run each with `overlap` pixels of extra
    context on every side and keep only the region: seams then see (nearly) full context."""
    _, c, h, w = x.shape
    out = torch.empty((1, c, h * scale, w * scale), dtype=x.dtype, device=x.device)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)  # region this tile is responsible for
            ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
            yb, xb = min(y1 + overlap, h), min(x1 + overlap, w)
            sr = _forward(model, x[:, :, ya:yb, xa:xb], self_ensemble)
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = sr[
                :, :, (y0 - ya) * scale : (y1 - ya) * scale, (x0 - xa) * scale : (x1 - xa) * scale
            ]
    return out


def enhance(
    image,
    model: nn.Module,
    *,
    tile: int | None = None,
    overlap: int = 16,
    self_ensemble: bool = False,
    device: str = "auto",
) -> np.ndarray:
    """LR uint8 RGB (array or PIL image) -> HR uint8 RGB array, `scale` times larger.

    `tile` (LR pixels) bounds memory for large inputs: each forward pass sees at most
    (tile + 2*overlap)^2 LR pixels; the `overlap` pixels of context on each side are
    discarded after the pass.
    """
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    dev = resolve_device(device)
    net = getattr(model, "module", model)
    scale = int(getattr(net, "config", {}).get("scale", 4))
    was_training = net.training
    net.eval().to(dev)
    try:
        with torch.inference_mode():
            x = torch.from_numpy(np.array(arr, order="C", copy=True)).permute(2, 0, 1)[None].float().div_(255.0).to(dev)
            if tile and max(arr.shape[:2]) > tile:
                y = _tiled(net, x, scale, tile, overlap, self_ensemble)
            else:
                y = _forward(net, x, self_ensemble)
            y = y.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
            return y[0].permute(1, 2, 0).cpu().numpy()
    finally:
        net.train(was_training)
