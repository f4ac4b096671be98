"""DnCNN (Zhang et al., "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image
Denoising", TIP 2017; paper ref. [17]), the JPEG deblocking network of the two-stage baselines
(paper Table I): the blind model DnCNN-3 that the TIP paper also applies to JPEG deblocking.

`depth` 3x3 convolutions of 64 channels: conv + ReLU, then `depth - 2` x (conv + batch norm +
ReLU), then conv to the image channels; the network predicts the residual (the artifacts) and
the output is input - residual. Convolutions followed by batch norm carry no bias (the norm's
shift replaces it). DnCNN-3 (depth 20) on RGB: 669,379 parameters; on one channel 667,073
(tests pin both).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class DnCNN(nn.Module):
    """JPEG LR (N, C, H, W) in [0, 1] -> restored LR of the same size (`scale` 1)."""

    def __init__(self, in_ch: int = 3, depth: int = 20, nf: int = 64) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"DnCNN depth {depth}: must be >= 3")
        layers: list[nn.Module] = [nn.Conv2d(in_ch, nf, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(nf, nf, 3, padding=1, bias=False), nn.BatchNorm2d(nf), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(nf, in_ch, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.config: dict[str, Any] = {"arch": "dncnn", "in_ch": in_ch, "depth": depth, "nf": nf, "scale": 1}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)
