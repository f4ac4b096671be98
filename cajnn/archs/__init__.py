"""CAJNN network and its building blocks (paper section III-A), and the baselines of Table I."""

from .arcnn import ARCNN
from .aspp import ASPP, SequentialAtrous
from .cajnn_arch import CAJNN, CONTEXTS
from .dncnn import DnCNN
from .nonlocal_block import NonLocalBlock
from .presets import ARCHS, PRESETS, build_from_config, build_model
from .rrdb import RRDB, ResidualDenseBlock
from .rrdbnet import RRDBNet
from .upsample import SCALES, UPSAMPLERS

__all__ = [
    "ARCHS",
    "ARCNN",
    "ASPP",
    "CAJNN",
    "CONTEXTS",
    "DnCNN",
    "NonLocalBlock",
    "PRESETS",
    "RRDB",
    "RRDBNet",
    "ResidualDenseBlock",
    "SCALES",
    "SequentialAtrous",
    "UPSAMPLERS",
    "build_from_config",
    "build_model",
]
