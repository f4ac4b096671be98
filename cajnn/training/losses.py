"""Pixel losses of paper eq. 1 (l = L1 by default; MSE and Charbonnier as options)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


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


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, target)
