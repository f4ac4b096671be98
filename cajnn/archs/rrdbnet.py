"""RRDBNet (Wang et al., ESRGAN, ECCVW 2018): the x4 super-resolution network of the SR-only and
two-stage baselines (paper Table I: "RRDB").

conv 3x3 -> `num_blocks` :class:`~cajnn.archs.rrdb.RRDB` -> conv 3x3, added to the first
conv's output -> two x2 stages (nearest-neighbour upsampling, conv 3x3, LeakyReLU 0.2) -> conv
3x3 + LeakyReLU -> conv 3x3 to RGB. ESRGAN's configuration (nf 64, 23 blocks, growth 32) has
16,697,987 parameters (tests pin it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .rrdb import RRDB


class RRDBNet(nn.Module):
    """Clean LR (N, C, H, W) in [0, 1] -> 4x HR."""

    def __init__(self, in_ch: int = 3, nf: int = 64, num_blocks: int = 23, growth: int = 32) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(in_ch, nf, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(nf, growth) for _ in range(num_blocks)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.up1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.up2 = nn.Conv2d(nf, nf, 3, padding=1)
        self.hr_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, in_ch, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.config: dict[str, Any] = {
            "arch": "rrdbnet",
            "in_ch": in_ch,
            "nf": nf,
            "num_blocks": num_blocks,
            "growth": growth,
            "scale": 4,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.trunk_conv(self.trunk(feat))
        feat = self.act(self.up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.act(self.up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.act(self.hr_conv(feat)))
