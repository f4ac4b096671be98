"""Typed configuration: one dataclass per `params.yaml` section, the single source of truth.

Every pipeline stage reads its section through :func:`load_params`; unknown keys and wrong
types are rejected with a message naming the key, so that a typo in `params.yaml` or in
`dvc exp run -S ...` fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `2e-4` (no dot) as a string; DVC (YAML 1.2) reads it as a number.
    Agree with DVC so that `dvc exp run -S train.lr=2e-4` means what it says."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.load(fh, Loader=_Loader)


class ConfigError(ValueError):
    """A `params.yaml` value is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class TrackingConfig:
    """Where MLflow keeps runs and registered models (`mlflow` section)."""

    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_location: str = "mlflow/artifacts"
    experiment: str = "cajnn"


@dataclass(frozen=True)
class RayConfig:
    """How to reach Ray (`ray` section). `address: local` starts a local instance."""

    address: str = "local"
    num_cpus: int | None = None


@dataclass(frozen=True)
class FetchConfig:
    """`fetch` section: which datasets to put under `dest`, one folder each."""

    sources: list[str] = field(default_factory=lambda: ["sample"])
    dest: str = "data/raw"
    # Embedded sample images kept out of training and used by `evaluate` instead.
    holdout: list[str] = field(default_factory=lambda: ["chelsea", "coffee"])


@dataclass(frozen=True)
class ProfileConfig:
    """A degradation profile (paper IV-A): how a web platform shrinks and compresses images."""

    resize: str = "matlab_bicubic"
    scale: int = 4
    qf_min: int = 10
    qf_max: int = 100
    subsampling: str = "420"

    def __post_init__(self) -> None:
        if self.resize != "matlab_bicubic":
            raise ConfigError(f"profile resize {self.resize!r}: only 'matlab_bicubic' is known")
        if not 1 <= self.qf_min <= self.qf_max <= 100:
            raise ConfigError(f"profile QF range [{self.qf_min}, {self.qf_max}] must lie in 1..100")
        if self.subsampling not in ("420", "422", "444"):
            raise ConfigError(f"profile subsampling {self.subsampling!r}: use 420, 422 or 444")


@dataclass(frozen=True)
class DegradeConfig:
    """`degrade` section: HR folders -> aligned HR/LR patch shards (Parquet) + manifest."""

    inputs: list[str] = field(default_factory=lambda: ["data/raw/sample-train"])
    out: str = "data/patches"
    profile: str = "paper"
    profiles: dict[str, ProfileConfig] = field(default_factory=lambda: {"paper": ProfileConfig()})
    # K quality factors drawn per image; the whole LR image is compressed once per draw.
    qualities_per_image: int = 4
    # Stored LR patch side (HR = scale x this); larger than the training crop so that random
    # crops still see every 8x8 JPEG block-grid phase.
    patch_size: int = 48
    stride: int = 40
    seed: int = 0

    def selected_profile(self) -> ProfileConfig:
        try:
            return self.profiles[self.profile]
        except KeyError:
            raise ConfigError(
                f"degrade.profile {self.profile!r} is not in degrade.profiles "
                f"({', '.join(sorted(self.profiles))})"
            ) from None


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


@dataclass(frozen=True)
class EvaluateConfig:
    """`evaluate` section: the paper's test protocol (IV-B) on each set present."""

    weights: str = "models/cajnn.safetensors"
    sets: dict[str, str] = field(default_factory=lambda: {"holdout": "data/raw/sample-holdout"})
    qualities: list[int] = field(default_factory=lambda: [10, 20, 40])
    scale: int = 4
    crop_border: int = 4
    self_ensemble: bool = False
    out: str = "reports"


@dataclass(frozen=True)
class RegisterConfig:
    """`register` section: MLflow model registry name and the promotion policy."""

    model_name: str = "cajnn"
    # A challenger becomes champion only if its mean PSNR-Y is higher by more than `min_gain`
    # and no single set/QF is worse by more than `tolerance` dB (ties keep the champion).
    min_gain: float = 0.0
    tolerance: float = 0.1
    out: str = "reports/registry.json"


@dataclass(frozen=True)
class Params:
    """All of `params.yaml`. `preset` names a file `presets/<preset>.yaml` whose sections are
    deep-merged over the others (`embedded` is the default and changes nothing)."""

    preset: str = "embedded"
    mlflow: TrackingConfig = field(default_factory=TrackingConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, building nested dataclasses."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)  # `iterations: 1e6`
    if tp is str and isinstance(value, bool):
        # YAML reads `true`/`false` as booleans; for string options keep their text.
        return "true" if value else "false"
    if tp in (int, float, str, bool):
        if isinstance(value, bool) and tp is not bool or not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    kwargs = {
        name: _coerce(value, hints[name], f"{where}.{name}" if where else name)
        for name, value in data.items()
    }
    return cls(**kwargs)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read `params.yaml` into :class:`Params`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such parameters file (run from the repository root)")
    data = read_yaml(path) or {}
    preset = data.get("preset", "embedded")
    preset_file = path.parent / "presets" / f"{preset}.yaml"
    if not preset_file.is_file():
        known = sorted(p.stem for p in (path.parent / "presets").glob("*.yaml"))
        raise ConfigError(f"preset {preset!r}: no {preset_file} (known presets: {', '.join(known) or 'none'})")
    data = deep_merge(data, read_yaml(preset_file) or {})
    return from_dict(Params, data)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` wins; nested mappings are merged key by key, lists are replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def to_dict(obj: Any) -> Any:
    """Plain-dict view of a config object (for logging to MLflow)."""
    return dataclasses.asdict(obj)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`: MLflow params are flat."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out
