"""The `train` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cajnn.config.base import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """A named architecture preset plus field overrides (see `cajnn.archs.presets`)."""

    preset: str = "cpu-small"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """`train` section: the paper's recipe (IV-A) with every number a parameter."""

    data: str = "data/patches"
    out: str = "models"
    model: ModelConfig = field(default_factory=ModelConfig)
    iterations: int = 1_000_000
    batch_size: int = 36
    crop: int = 32  # LR crop; HR crop = scale x crop (paper: 32 / 128)
    lr: float = 2e-4
    lr_min: float = 1e-7
    restart_every: int = 250_000
    loss: str = "l1"
    aux_lr_weight: float = 0.0  # lambda of paper eq. 8
    grad_clip: float = 0.0  # 0 disables clipping
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    seed: int = 0
    num_workers: int = 1
    use_gpu: str = "auto"  # auto | true | false
    cpus_per_worker: int = 1
    storage_path: str = "runs"
    run_name: str = "cajnn-train"

    def __post_init__(self) -> None:
        if self.loss not in ("l1", "mse", "charbonnier"):
            raise ConfigError(f"train.loss {self.loss!r}: use l1, mse or charbonnier")
        if self.use_gpu not in ("auto", "true", "false"):
            raise ConfigError(f"train.use_gpu {self.use_gpu!r}: use auto, true or false")
        if self.iterations < 1 or self.batch_size < 1:
            raise ConfigError("train.iterations and train.batch_size must be >= 1")
