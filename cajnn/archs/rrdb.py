"""Residual-in-residual dense block (RRDB) of ESRGAN (Wang et al. 2018), the reconstruction
trunk's basic block (paper section III-A2; 20 blocks in the paper configuration)."""

from __future__ import annotations

import torch
from torch import nn

#: Residual scaling used by ESRGAN for both the dense block and the RRDB.
RESIDUAL_SCALE = 0.2
#: ESRGAN's initialisation of the dense-block convolutions: Kaiming-normal weights scaled by
#: 0.1, zero biases. Each block then starts close to the identity, so a deep trunk trains from
#: the first iterations (measured: `benchmarks/sweep_embedded.py --init-scale`).
INIT_SCALE = 0.1


class ResidualDenseBlock(nn.Module):
    """Dense block of five 3x3 convolutions (ESRGAN).

    Conv ``k`` (k = 1..5) sees the block input concatenated with the outputs of all previous
    convs: ``nf + (k - 1) * gc`` input channels. Convs 1-4 emit ``gc`` channels followed by
    LeakyReLU(0.2); conv 5 emits ``nf`` channels with no activation. Output:
    ``x + 0.2 * conv5(...)``. Weights start as Kaiming-normal x ``init_scale`` (ESRGAN: 0.1;
    1.0 with PyTorch's default init is the ``init_scale=None`` case).
    """

    def __init__(self, nf: int = 64, gc: int = 32, init_scale: float | None = INIT_SCALE) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(nf + i * gc, gc if i < 4 else nf, kernel_size=3, padding=1) for i in range(5)
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)
        if init_scale is not None:
            for conv in self.convs:
                nn.init.kaiming_normal_(conv.weight)
                conv.weight.data.mul_(init_scale)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(self.act(conv(torch.cat(feats, dim=1))))
        return x + RESIDUAL_SCALE * self.convs[-1](torch.cat(feats, dim=1))


class RRDB(nn.Module):
    """Three :class:`ResidualDenseBlock` in sequence, wrapped in a scaled residual:
    ``x + 0.2 * rdb3(rdb2(rdb1(x)))`` (ESRGAN)."""

    def __init__(self, nf: int = 64, gc: int = 32, init_scale: float | None = INIT_SCALE) -> None:
        super().__init__()
        self.body = nn.Sequential(*(ResidualDenseBlock(nf, gc, init_scale) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.body(x)
