"""Named CAJNN configurations and a builder with validated overrides.

``paper`` is the configuration of section III-A (14,884,419 parameters, see docs/design.md "Network");
``cpu-small`` keeps the ASPP / RRDB / PixelShuffle structure at a width and depth that trains on a
2-core CPU in minutes, with the literal single-stage reading of the upsampler (one conv to
3 x 4^2 channels and PixelShuffle(4), docs/design.md "Network"): the two-stage one spends 41 % of
a small network's FLOPs at 2x and 4x resolution, so the single stage trains 1.55x more
iterations in the same time and gains more per iteration too (benchmarks/README.md,
"sweep_embedded"); ``cpu-base`` is the shipped model's network (conf/preset/cpu-base.yaml, about
an hour on 2 cores); ``micro`` is for tests only.
"""

from __future__ import annotations

import inspect
from typing import Any

from .cajnn_arch import CAJNN

_PAPER: dict[str, Any] = {
    "nf": 64,
    "num_blocks": 20,
    "growth": 32,
    "scale": 4,
    "context": "aspp",
    "upsampler": "pixelshuffle",
    "global_skip": True,
    "aux_lr_head": False,
    "in_ch": 3,
}

#: Full constructor kwargs for each preset (copy before mutating; ``build_model`` does).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(_PAPER),
    "cpu-small": {**_PAPER, "nf": 32, "num_blocks": 2, "growth": 16, "upsampler": "pixelshuffle_single"},
    # the shipped model's network: cpu-small's structure, 1.25x the width (0.65M parameters);
    # 0.34 s per batch of 16 x 24^2 LR crops on 2 cores (docs/shipped-model.md)
    "cpu-base": {**_PAPER, "nf": 40, "num_blocks": 2, "growth": 20, "upsampler": "pixelshuffle_single"},
    "micro": {**_PAPER, "nf": 8, "num_blocks": 1, "growth": 4},
}

_ARG_NAMES: tuple[str, ...] = tuple(inspect.signature(CAJNN.__init__).parameters)[1:]


def build_model(preset: str = "paper", **overrides: Any) -> CAJNN:
    """Build ``CAJNN(**PRESETS[preset])`` with ``overrides`` applied on top.

    Raises ``ValueError`` for an unknown preset name or override key (the message lists the valid
    ones); invalid override values are reported by :class:`CAJNN` itself.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(_ARG_NAMES))
    if unknown:
        raise ValueError(
            f"unknown CAJNN argument(s) {unknown} for preset {preset!r}; "
            f"allowed: {list(_ARG_NAMES)}"
        )
    return CAJNN(**{**PRESETS[preset], **overrides})
