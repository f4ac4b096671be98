"""One optimisation step of paper eq. 8: l = l_HR + lambda * l_LR, with guard rails."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class NonFiniteLossError(RuntimeError):
    """Too many consecutive steps produced a NaN/inf loss."""


@dataclass
class StepGuard:
    """Skips steps whose loss is not finite and stops after `max_consecutive` in a row."""

    max_consecutive: int = 10
    skipped: int = 0
    consecutive: int = 0

    def check(self, loss: torch.Tensor) -> bool:
        if torch.isfinite(loss):
            self.consecutive = 0
            return True
        self.skipped += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive non-finite losses: lower train.lr, "
                "set train.grad_clip, or check the data"
            )
        return False


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    lr_img: torch.Tensor,
    hr_img: torch.Tensor,
    guard: StepGuard,
    aux_weight: float = 0.0,
    clean_lr: torch.Tensor | None = None,
    grad_clip: float = 0.0,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float | None:
    """Forward (under `autocast`, e.g. bf16), loss, backward and update; returns the loss, or
    None if the step was skipped."""
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        out = model(lr_img)
        if isinstance(out, tuple):  # aux LR head (paper eq. 6-8) in training mode
            sr, lr_pred = out
            loss = loss_fn(sr.float(), hr_img)
            if aux_weight > 0 and clean_lr is not None:
                loss = loss + aux_weight * loss_fn(lr_pred.float(), clean_lr)
        else:
            loss = loss_fn(out.float(), hr_img)
    if not guard.check(loss.detach()):
        return None
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())
