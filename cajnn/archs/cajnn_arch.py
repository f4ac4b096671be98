"""CAJNN: context-aware joint compression-artifact reduction and super-resolution network
(Xiang, Lin, Allebach, ICPR 2020, section III-A, Fig. 2).

Pipeline (paper config: nf=64, 20 RRDB, gc=32, x4)::

    x (B,3,h,w) -> conv3x3 3->nf                         f^L      (III-A)
                -> context extractor (ASPP, eq. 2)        f^L'     (III-A1)
                -> 20 x RRDB -> conv3x3, + f^L'           f^L''    (III-A2)
                -> upsampler (PixelShuffle, eq. 3-4)      I^SR'    (III-A3)
                -> conv3x3 -> LeakyReLU -> conv3x3 nf->3  I^SR     (III-A3, enhancement)
    output = bilinear_x_s(x) + I^SR                                (eq. 5, global skip)

Optional auxiliary LR head (ablation, eq. 6-8): ``G^(f^L') = x + conv3x3(f^L')`` predicts the
artifact-free LR image; the training loop weights its loss by lambda (0 = off, the paper's best).

Parameter count of the default (paper) config: 14,884,419, as fixed by docs/design.md ("Network"): two x2
PixelShuffle stages of conv 64->256. The literal single-stage reading of eq. 3
(``upsampler="pixelshuffle_single"``: conv 64->48 + PixelShuffle(4) producing a 3-channel image,
enhancement convs 3->64->3) gives docs/design.md's 14,581,555. The paper itself only says "14.8M".

Where we go beyond the paper: the enhancement convs are joined by LeakyReLU(0.2) (the paper
writes two stacked convs with no activation, which would collapse to one linear map; docs/design.md puts
the LeakyReLU there); ASPP has no activation (eq. 2 has none); all convs have biases.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .aspp import ASPP, SequentialAtrous
from .nonlocal_block import NonLocalBlock
from .rrdb import RRDB
from .upsample import SCALES, UPSAMPLERS, build_upsampler

CONTEXTS: tuple[str, ...] = ("none", "aspp", "sequential_atrous", "nonlocal")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    # exact type match too: 4.0 == 4 and True == 1, but neither is a valid scale / choice
    if not any(type(value) is type(a) and value == a for a in allowed):
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool (True or False), got {value!r}")


def _build_context(kind: str, nf: int) -> nn.Module:
    if kind == "aspp":
        return ASPP(nf)
    if kind == "sequential_atrous":
        return SequentialAtrous(nf)
    if kind == "nonlocal":
        return NonLocalBlock(nf)
    return nn.Identity()  # "none": Table IV base model


class CAJNN(nn.Module):
    """Context-aware joint CAR + SR network (paper section III-A, Fig. 2).

    Args:
        nf: feature channels (paper: 64).
        num_blocks: RRDBs in the reconstruction trunk (paper: 20).
        growth: dense-block growth channels gc (paper/ESRGAN: 32).
        scale: upscaling factor, one of 2, 3, 4 (paper: 4).
        context: context extractor, one of ``"none"``, ``"aspp"`` (paper), ``"sequential_atrous"``,
            ``"nonlocal"`` (Table IV).
        upsampler: ``"pixelshuffle"`` (paper, two x2 stages for x4), ``"pixelshuffle_single"``
            (one conv + PixelShuffle(s), eq. 3 literally) or ``"upconv"`` (Table IV).
        global_skip: add the bilinearly upsampled input to the output (eq. 5).
        aux_lr_head: add the auxiliary artifact-free-LR head on f^L' (eq. 6-8).
        in_ch: image channels of input and output (3 = RGB).

    Input: float tensor ``(B, in_ch, H, W)`` in [0, 1], any H, W >= 1. Output: ``(B, in_ch,
    scale*H, scale*W)``, not clamped. In training mode with ``aux_lr_head=True`` the forward
    returns ``(sr, lr_pred)`` with ``lr_pred`` of the input's shape; otherwise just ``sr``.

    ``self.config`` holds the constructor arguments (a JSON-serialisable dict):
    ``CAJNN(**model.config)`` rebuilds the architecture.
    """

    def __init__(
        self,
        nf: int = 64,
        num_blocks: int = 20,
        growth: int = 32,
        scale: int = 4,
        context: str = "aspp",
        upsampler: str = "pixelshuffle",
        global_skip: bool = True,
        aux_lr_head: bool = False,
        in_ch: int = 3,
    ) -> None:
        super().__init__()
        _check_int("nf", nf, 1)
        _check_int("num_blocks", num_blocks, 0)
        _check_int("growth", growth, 1)
        _check_int("in_ch", in_ch, 1)
        _check_choice("scale", scale, SCALES)
        _check_choice("context", context, CONTEXTS)
        _check_choice("upsampler", upsampler, UPSAMPLERS)
        _check_bool("global_skip", global_skip)
        _check_bool("aux_lr_head", aux_lr_head)
        self.config: dict[str, Any] = {
            "nf": nf,
            "num_blocks": num_blocks,
            "growth": growth,
            "scale": scale,
            "context": context,
            "upsampler": upsampler,
            "global_skip": global_skip,
            "aux_lr_head": aux_lr_head,
            "in_ch": in_ch,
        }
        self.scale = scale
        self.in_ch = in_ch
        self.global_skip = global_skip

        self.conv_first = nn.Conv2d(in_ch, nf, 3, padding=1)  # f^L
        self.context = _build_context(context, nf)  # f^L' (eq. 2)
        self.trunk = nn.Sequential(*(RRDB(nf, growth) for _ in range(num_blocks)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upsampler = build_upsampler(upsampler, nf, scale, out_ch=in_ch)
        self.enhance = nn.Sequential(
            nn.Conv2d(self.upsampler.out_channels, nf, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(nf, in_ch, 3, padding=1),
        )
        self.lr_head = nn.Conv2d(nf, in_ch, 3, padding=1) if aux_lr_head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"CAJNN expects a (B, {self.in_ch}, H, W) tensor, got shape {tuple(x.shape)}")
        feat = self.context(self.conv_first(x))  # f^L'
        out = self.enhance(self.upsampler(feat + self.trunk_conv(self.trunk(feat))))
        if self.global_skip:  # eq. 5
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        if self.lr_head is not None and self.training:  # eq. 7: G^(f^L')
            return out, x + self.lr_head(feat)
        return out
