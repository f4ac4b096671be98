"""Typed configuration: one dataclass per `params.yaml` section, the single source of truth.

Every pipeline stage reads its section through :func:`load_params`; unknown keys and wrong
types are rejected with a message naming the key, so that a typo in `params.yaml` or in
`dvc exp run -S ...` fails loudly instead of being ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cajnn.config.base import ConfigError, deep_merge, flatten, from_dict, read_yaml, to_dict
from cajnn.config.baselines import BaselineModel, BaselinesConfig
from cajnn.config.degrade import DegradeConfig, ProfileConfig
from cajnn.config.downstream import DownstreamConfig
from cajnn.config.evaluate import EvaluateConfig
from cajnn.config.fetch import FetchConfig
from cajnn.config.register import RegisterConfig
from cajnn.config.services import RayConfig, TrackingConfig
from cajnn.config.train import ModelConfig, TrainConfig

__all__ = [
    "BaselineModel",
    "BaselinesConfig",
    "ConfigError",
    "DegradeConfig",
    "DownstreamConfig",
    "EvaluateConfig",
    "FetchConfig",
    "ModelConfig",
    "Params",
    "ProfileConfig",
    "RayConfig",
    "RegisterConfig",
    "TrackingConfig",
    "TrainConfig",
    "deep_merge",
    "flatten",
    "from_dict",
    "load_params",
    "read_yaml",
    "to_dict",
]


@dataclass(frozen=True)
class Params:
    """All of `params.yaml`: the effective parameters, composed from conf/ (`preset` names the
    conf/preset/ file that was merged over conf/config.yaml; see :mod:`cajnn.config.compose`)."""

    preset: str = "embedded"
    mlflow: TrackingConfig = field(default_factory=TrackingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    downstream: DownstreamConfig = field(default_factory=DownstreamConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read `params.yaml` into :class:`Params`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such parameters file (run from the repository root)")
    return from_dict(Params, read_yaml(path) or {})
