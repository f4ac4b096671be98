"""Upsampling modules (paper section III-A3, eq. 3-4; ablation of Table IV).

Each module maps LR features (``nf`` channels) to HR tensors and exposes ``out_channels``, the
channel count that the enhancement convs of :class:`~cajnn.archs.cajnn_arch.CAJNN` receive.

* ``pixelshuffle`` (default): log2(s) x2 stages of ``conv3x3(nf -> 4 nf) + PixelShuffle(2) +
  LeakyReLU(0.2)`` for s = 2, 4; one ``conv3x3(nf -> 9 nf) + PixelShuffle(3) + LeakyReLU`` stage
  for s = 3. Output: ``nf`` channels. With the enhancement convs this gives docs/design.md's 14,884,419
  parameters for the paper configuration.
* ``pixelshuffle_single``: the literal reading of eq. 3, ``I^SR' = PS(W_L * f^L'' + b_L)`` with
  ``I^SR'`` a c-channel (RGB) HR image: one ``conv3x3(nf -> 3 s^2)`` + ``PixelShuffle(s)``,
  no activation (eq. 3 is linear). Output: 3 channels, so the first enhancement conv is
  ``3 -> nf`` (not ``nf -> nf``). For the paper config: conv 64 -> 48 has 27,696 parameters
  and the enhancement convs 1,792 + 1,731, giving docs/design.md's 14,581,555 in all.
* ``upconv``: per x2 stage, nearest-neighbour interpolation x2 + ``conv3x3(nf -> nf)`` +
  LeakyReLU(0.2) (ESRGAN-style "upconvolution"); s = 3 uses one x3 stage. Output: ``nf``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLERS: tuple[str, ...] = ("pixelshuffle", "pixelshuffle_single", "upconv")
SCALES: tuple[int, ...] = (2, 3, 4)


def _stage_factors(scale: int) -> list[int]:
    """Per-stage factors: x2 stages for powers of two, one x3 stage for 3."""
    if scale == 3:
        return [3]
    if scale == 2:
        return [2]
    if scale == 4:
        return [2, 2]
    raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")


class PixelShuffleUpsampler(nn.Sequential):
    """Multi-stage sub-pixel upsampler (Shi et al. 2016): per stage conv3x3(nf -> r^2 nf) +
    PixelShuffle(r) + LeakyReLU(0.2). Keeps ``nf`` channels."""

    def __init__(self, nf: int, scale: int) -> None:
        layers: list[nn.Module] = []
        for r in _stage_factors(scale):
            layers += [
                nn.Conv2d(nf, nf * r * r, kernel_size=3, padding=1),
                nn.PixelShuffle(r),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        super().__init__(*layers)
        self.out_channels = nf


class PixelShuffleSingleUpsampler(nn.Sequential):
    """Single-stage sub-pixel upsampler, literal eq. 3: conv3x3(nf -> out_ch s^2) +
    PixelShuffle(s), linear. Emits an ``out_ch``-channel HR image ``I^SR'``."""

    def __init__(self, nf: int, scale: int, out_ch: int = 3) -> None:
        _stage_factors(scale)  # validates the scale
        super().__init__(
            nn.Conv2d(nf, out_ch * scale * scale, kernel_size=3, padding=1),
            nn.PixelShuffle(scale),
        )
        self.out_channels = out_ch


class _UpConvStage(nn.Module):
    def __init__(self, nf: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(nf, nf, kernel_size=3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest")))


class UpConvUpsampler(nn.Sequential):
    """Interpolation + convolution upsampler ("upconvolution" of Table IV): per stage
    nearest x r + conv3x3(nf -> nf) + LeakyReLU(0.2). Keeps ``nf`` channels."""

    def __init__(self, nf: int, scale: int) -> None:
        super().__init__(*(_UpConvStage(nf, r) for r in _stage_factors(scale)))
        self.out_channels = nf


def build_upsampler(kind: str, nf: int, scale: int, out_ch: int = 3) -> nn.Module:
    """Return the upsampler named ``kind`` (one of :data:`UPSAMPLERS`)."""
    if kind == "pixelshuffle":
        return PixelShuffleUpsampler(nf, scale)
    if kind == "pixelshuffle_single":
        return PixelShuffleSingleUpsampler(nf, scale, out_ch)
    if kind == "upconv":
        return UpConvUpsampler(nf, scale)
    raise ValueError(f"upsampler must be one of {list(UPSAMPLERS)}, got {kind!r}")
