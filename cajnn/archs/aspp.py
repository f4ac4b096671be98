"""Context extractors built from dilated (atrous) 3x3 convolutions (paper section III-A1).

``ASPP`` is the paper's context-aware feature extractor (eq. 2); ``SequentialAtrous`` is the
"sequential atrous pooling" alternative of the ablation in Table IV.
"""

from __future__ import annotations

import torch
from torch import nn

#: Dilation rates chosen in the paper (III-A1): the largest field of view (dilation 4 -> 9x9)
#: covers an 8x8 JPEG block, and rates 1, 3, 4 do not sample the same offsets twice.
ASPP_DILATIONS: tuple[int, ...] = (1, 3, 4)


def _atrous_conv(nf: int, dilation: int) -> nn.Conv2d:
    """3x3 convolution with ``padding = dilation`` so the spatial size is kept."""
    return nn.Conv2d(nf, nf, kernel_size=3, padding=dilation, dilation=dilation)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling, paper eq. 2.

    ``f^L' = [C_{3x3,1} * f^L | C_{3x3,3} * f^L | C_{3x3,4} * f^L] * C_{1x1}``: three parallel
    3x3 convolutions (dilation 1, 3, 4) on the same input, concatenated to ``3 * nf`` channels and
    fused back to ``nf`` channels by a 1x1 convolution. No activation is applied: equation 2 has
    none, and docs/design.md's parameter count (14,884,419) is independent of it.
    """

    def __init__(self, nf: int, dilations: tuple[int, ...] = ASPP_DILATIONS) -> None:
        super().__init__()
        self.dilations = tuple(dilations)
        self.branches = nn.ModuleList(_atrous_conv(nf, d) for d in self.dilations)
        self.fuse = nn.Conv2d(len(self.dilations) * nf, nf, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


class SequentialAtrous(nn.Module):
    """Sequential atrous pooling (paper Table IV, ablation column 3).

    The paper gives no formula for it; our reading: the same three dilated 3x3 convolutions as
    :class:`ASPP` (dilation 1, 3, 4, ``nf -> nf`` each) applied one after the other (a cascade,
    receptive field 3 + 6 + 8 = 17 px) instead of in parallel, with no concatenation and hence no
    1x1 fusion conv. This has exactly the parameters of the three ASPP branches, so the ablation
    isolates "pyramid + fusion" against "cascade". No activation between the stages, mirroring
    eq. 2, which has none either.
    """

    def __init__(self, nf: int, dilations: tuple[int, ...] = ASPP_DILATIONS) -> None:
        super().__init__()
        self.dilations = tuple(dilations)
        self.body = nn.Sequential(*(_atrous_conv(nf, d) for d in self.dilations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
