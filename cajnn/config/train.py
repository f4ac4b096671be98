"""The `train` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cajnn.config.base import ConfigError

TASKS = ("joint", "car", "sr")


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
    # How in-memory patch sets are sampled: `patch` = uniformly over patches (the paper);
    # `image` = every source image equally often (a large image otherwise dominates a small
    # set). Streamed (large) sets are always sampled by patch.
    balance: str = "patch"
    # How the patches reach the workers: `memory` = the whole set through Ray's object store
    # (each worker samples all of it), `stream` = a Ray Data stream of the shards (each worker
    # reads its own part), `auto` = memory below 2 GiB decoded, else stream.
    feed: str = "auto"
    # What the network learns from a patch pair: `joint` = JPEG LR -> HR (CAJNN); the two stages
    # of the paper's Table I baselines: `car` = JPEG LR -> clean LR (ARCNN, DnCNN), `sr` = clean
    # LR -> HR (RRDBNet); clean LR = MATLAB bicubic x1/scale of the HR crop.
    task: str = "joint"
    aux_lr_weight: float = 0.0  # lambda of paper eq. 8
    grad_clip: float = 0.0  # 0 disables clipping
    max_nonfinite: int = 10  # stop after this many non-finite losses in a row
    log_every: int = 50
    # Every `checkpoint_every` iterations: validate (PSNR-Y on `val_sets`), log a sample
    # image, and save a checkpoint. Ray keeps the `keep_checkpoints` best by validation PSNR-Y
    # plus the latest one.
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    val_sets: list[str] = field(default_factory=lambda: ["data/raw/sample-holdout"])
    val_qualities: list[int] = field(default_factory=lambda: [10, 40])
    val_crop: int = 256  # HR centre crop side for validation images
    export: str = "last"  # last | best: which checkpoint becomes models/cajnn.safetensors
    init_weights: str = ""  # warm start (fine-tuning) from a .safetensors file
    seed: int = 0
    num_workers: int = 1
    use_gpu: str = "auto"  # auto | true | false
    cpus_per_worker: int = 1
    amp: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    channels_last: str = "auto"  # auto (= true, CPU and GPU) | true | false
    compile: bool = False  # torch.compile the model
    storage_path: str = "runs"  # local folder or s3://bucket/prefix
    storage_endpoint_url: str = ""  # S3-compatible endpoint (MinIO) for an s3:// storage_path
    run_name: str = "cajnn-train"

    def __post_init__(self) -> None:
        if self.loss not in ("l1", "mse", "charbonnier"):
            raise ConfigError(f"train.loss {self.loss!r}: use l1, mse or charbonnier")
        if self.use_gpu not in ("auto", "true", "false"):
            raise ConfigError(f"train.use_gpu {self.use_gpu!r}: use auto, true or false")
        for name, value, allowed in (
            ("amp", self.amp, ("auto", "bf16", "fp32")),
            ("channels_last", self.channels_last, ("auto", "true", "false")),
            ("export", self.export, ("last", "best")),
            ("balance", self.balance, ("patch", "image")),
            ("feed", self.feed, ("auto", "memory", "stream")),
            ("task", self.task, TASKS),
        ):
            if value not in allowed:
                raise ConfigError(f"train.{name} {value!r}: use {', '.join(allowed)}")
        if self.checkpoint_every < 1 or self.log_every < 1 or self.max_nonfinite < 1:
            raise ConfigError("train.checkpoint_every, log_every and max_nonfinite must be >= 1")
        if self.iterations < 1 or self.batch_size < 1:
            raise ConfigError("train.iterations and train.batch_size must be >= 1")
