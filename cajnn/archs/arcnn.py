"""ARCNN (Dong et al., "Compression Artifacts Reduction by a Deep Convolutional Network", ICCV
2015; paper ref. [16]): the JPEG artifact remover of the two-stage baselines (paper Table I).

Four convolutions at the input resolution, each but the last followed by ReLU (the SRCNN
design it extends): feature extraction 9x9 -> 64, feature enhancement 7x7 -> 32, mapping
1x1 -> 16, reconstruction 5x5 -> channels. On the Y channel, as published, that is 106,561
parameters; here it restores RGB like the rest of the pipeline: 117,731 (tests pin both).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ARCNN(nn.Module):
    """JPEG LR (N, C, H, W) in [0, 1] -> restored LR of the same size (`scale` 1)."""

    def __init__(
        self, in_ch: int = 3, widths: tuple[int, ...] = (64, 32, 16), kernels: tuple[int, ...] = (9, 7, 1, 5)
    ) -> None:
        super().__init__()
        if len(kernels) != len(widths) + 1:
            raise ValueError(f"ARCNN needs one kernel size per layer: {len(widths) + 1}, got {len(kernels)}")
        chans = (in_ch, *widths, in_ch)
        layers: list[nn.Module] = []
        for i, k in enumerate(kernels):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], k, padding=k // 2))
            if i < len(kernels) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.config: dict[str, Any] = {
            "arch": "arcnn",
            "in_ch": in_ch,
            "widths": list(widths),
            "kernels": list(kernels),
            "scale": 1,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
