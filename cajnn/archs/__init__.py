"""CAJNN network and its building blocks (paper section III-A)."""

from .aspp import ASPP, SequentialAtrous
from .cajnn_arch import CAJNN, CONTEXTS
from .nonlocal_block import NonLocalBlock
from .presets import PRESETS, build_model
from .rrdb import RRDB, ResidualDenseBlock
from .upsample import SCALES, UPSAMPLERS

__all__ = [
    "ASPP",
    "CAJNN",
    "CONTEXTS",
    "NonLocalBlock",
    "PRESETS",
    "RRDB",
    "ResidualDenseBlock",
    "SCALES",
    "SequentialAtrous",
    "UPSAMPLERS",
    "build_model",
]
