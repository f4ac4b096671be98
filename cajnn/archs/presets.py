"""Named CAJNN configurations and a builder with validated overrides.

``paper`` is the configuration of section III-A (14,884,419 parameters, see docs/design.md "Network");
``cpu-small`` keeps the ASPP / RRDB / PixelShuffle structure at a width and depth that trains on a
2-core CPU in minutes, with the literal single-stage reading of the upsampler (one conv to
3 x 4^2 channels and PixelShuffle(4), docs/design.md "Network"): the two-stage one spends 41 % of
a small network's FLOPs at 2x and 4x resolution, so the single stage trains 1.55x more
iterations in the same time and gains more per iteration too (benchmarks/README.md,
"sweep_embedded"); ``cpu-base`` is the shipped model's network (conf/preset/cpu-base.yaml, about
an hour on 2 cores); ``micro`` is for tests only. ``arcnn``, ``dncnn`` and ``rrdbnet`` are the
two-stage baselines of paper Table I as published (``-small``: at cpu-small's budget).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from .arcnn import ARCNN
from .cajnn_arch import CAJNN
from .dncnn import DnCNN
from .rrdbnet import RRDBNet

#: Network classes by the `arch` key of a config (CAJNN's configs carry none: the default).
ARCHS: dict[str, type[nn.Module]] = {"cajnn": CAJNN, "arcnn": ARCNN, "dncnn": DnCNN, "rrdbnet": RRDBNet}

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
    # the two-stage baselines of paper Table I (cajnn/archs/{arcnn,dncnn,rrdbnet}.py): as published
    "arcnn": {"arch": "arcnn", "in_ch": 3, "widths": [64, 32, 16], "kernels": [9, 7, 1, 5], "scale": 1},
    "dncnn": {"arch": "dncnn", "in_ch": 3, "depth": 20, "nf": 64, "scale": 1},
    "rrdbnet": {"arch": "rrdbnet", "in_ch": 3, "nf": 64, "num_blocks": 23, "growth": 32, "scale": 4},
    # ... and at the CPU budget of cpu-small (same trunk: nf 32, 2 RRDBs, growth 16)
    "rrdbnet-small": {"arch": "rrdbnet", "in_ch": 3, "nf": 32, "num_blocks": 2, "growth": 16, "scale": 4},
    "dncnn-small": {"arch": "dncnn", "in_ch": 3, "depth": 8, "nf": 32, "scale": 1},
    # for tests only
    "arcnn-micro": {"arch": "arcnn", "in_ch": 3, "widths": [8, 8, 4], "kernels": [5, 3, 1, 3], "scale": 1},
    "dncnn-micro": {"arch": "dncnn", "in_ch": 3, "depth": 3, "nf": 8, "scale": 1},
    "rrdbnet-micro": {"arch": "rrdbnet", "in_ch": 3, "nf": 8, "num_blocks": 1, "growth": 4, "scale": 4},
}


def _arg_names(cls: type[nn.Module]) -> tuple[str, ...]:
    return tuple(inspect.signature(cls.__init__).parameters)[1:]


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """The network a saved config describes (its `arch`, CAJNN when absent)."""
    config = dict(config)
    arch = config.pop("arch", "cajnn")
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {sorted(ARCHS)}")
    if arch != "cajnn":
        scale = config.pop("scale", None)  # fixed by the class, recorded for readers of the config
        net = ARCHS[arch](**config)
        if scale is not None and scale != net.config["scale"]:
            raise ValueError(f"{arch} has scale {net.config['scale']}, not {scale}")
        return net
    return ARCHS[arch](**config)


def build_model(preset: str = "paper", **overrides: Any) -> nn.Module:
    """Build the network of ``PRESETS[preset]`` (CAJNN unless the preset names another
    ``arch``) with ``overrides`` applied on top.

    Raises ``ValueError`` for an unknown preset name or override key (the message lists the valid
    ones); invalid override values are reported by the network class itself.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(PRESETS)}")
    config = dict(PRESETS[preset])
    cls = ARCHS[config.get("arch", "cajnn")]
    unknown = sorted(set(overrides) - set(_arg_names(cls)))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} argument(s) {unknown} for preset {preset!r}; allowed: {list(_arg_names(cls))}"
        )
    return build_from_config({**config, **overrides})
