"""Embedded-Gaussian non-local block (Wang et al., "Non-local Neural Networks", CVPR 2018), used
as the "non-local module" context extractor of the paper's Table IV ablation (column 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block with a residual connection.

    ``z = x + W_z(y)``, ``y_i = sum_j softmax_j(theta(x_i)^T phi(x_j)) g(x_j)``, where theta, phi
    and g are 1x1 convs ``nf -> inter`` (``inter = nf // 2`` by default, as in Wang et al.) and
    W_z is a 1x1 conv ``inter -> nf``. W_z is zero-initialised so the block starts as the
    identity (Wang et al. zero-initialise the BN scale after W_z for the same reason; we use no
    BN, since the rest of CAJNN has none). ``sub_sample=True`` max-pools phi and g by 2 (Wang et
    al.'s optional trick); it is off by default and does not change the parameter count.

    Memory / compute: every position attends to every other, so the attention is
    O((HW)^2) in compute and, when materialised, in memory (a 128x128 LR input already gives a
    16384 x 16384 matrix = 1 GiB in float32 per image). We call
    ``F.scaled_dot_product_attention`` with ``scale=1`` (exactly the embedded-Gaussian softmax,
    no 1/sqrt(d)); on backends with a fused (flash / memory-efficient) kernel the matrix is not
    materialised, but the compute stays quadratic. Prefer ``context="aspp"`` for large inputs.
    """

    def __init__(self, nf: int, inter_channels: int | None = None, sub_sample: bool = False) -> None:
        super().__init__()
        inter = inter_channels if inter_channels is not None else max(nf // 2, 1)
        self.inter_channels = inter
        self.sub_sample = sub_sample
        self.theta = nn.Conv2d(nf, inter, kernel_size=1)
        self.phi = nn.Conv2d(nf, inter, kernel_size=1)
        self.g = nn.Conv2d(nf, inter, kernel_size=1)
        self.out = nn.Conv2d(inter, nf, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        key, value = self.phi(x), self.g(x)
        if self.sub_sample:
            key = F.max_pool2d(key, kernel_size=2, ceil_mode=True)
            value = F.max_pool2d(value, kernel_size=2, ceil_mode=True)
        # (B, 1, N, C') layout: a single attention "head" over all spatial positions.
        query = self.theta(x).flatten(2).transpose(1, 2).unsqueeze(1)
        key = key.flatten(2).transpose(1, 2).unsqueeze(1)
        value = value.flatten(2).transpose(1, 2).unsqueeze(1)
        y = F.scaled_dot_product_attention(query, key, value, scale=1.0)
        y = y.squeeze(1).transpose(1, 2).reshape(b, self.inter_channels, h, w)
        return x + self.out(y)
