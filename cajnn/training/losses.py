"""Pixel losses of paper eq. 1 (l = L1 by default; MSE and Charbonnier as options) and the
target of the auxiliary LR loss (eq. 6)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cajnn.degradation.imresize import matlab_imresize


class CharbonnierLoss(nn.Module):
    """mean(sqrt((x - y)^2 + eps^2)): a differentiable L1 (Lai et al., LapSRN)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((pred - target) ** 2 + self.eps**2).mean()


def build_loss(name: str) -> nn.Module:
    """`l1 | mse | charbonnier` -> a loss module."""
    losses = {"l1": nn.L1Loss, "mse": nn.MSELoss, "charbonnier": CharbonnierLoss}
    try:
        return losses[name]()
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; use one of {', '.join(losses)}") from None


def clean_lr_target(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Artifact-free LR target of paper eq. 6 (MATLAB bicubic of the HR crop), for the
    auxiliary loss. Computed per crop, so its outermost pixels see the crop border instead of
    the full image: a small, documented approximation."""
    arr = hr.permute(0, 2, 3, 1).numpy().astype(np.float64)
    return torch.from_numpy(np.stack([matlab_imresize(a, 1.0 / scale) for a in arr])).permute(0, 3, 1, 2).float()
