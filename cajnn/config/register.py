"""The `register` section (model registry, promotion policy) and its `retrain` subsection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cajnn.config.base import ConfigError


@dataclass(frozen=True)
class RetrainConfig:
    """`register.retrain`: where new web-platform degradation data lands and how `cajnn retrain`
    fine-tunes the champion on it (see cajnn/retrain.py and infra/README.md)."""

    # s3://bucket/prefix/ or a local folder; "" = not configured (`cajnn retrain --source`).
    # Under it: `samples_dir`/ JPEGs as the platform serves them (a profile is fitted to them:
    # `cajnn profile fit`), `pairs_dir`/originals/ + copies/ (real pairs), `profiles_file`
    # (hand-written profiles); every other image is a new HR training image.
    source: str = ""
    # S3-compatible endpoint (MinIO, ...); "" = AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL or AWS itself.
    endpoint_url: str = ""
    profiles_file: str = "profiles.yaml"
    samples_dir: str = "samples"
    pairs_dir: str = "pairs"
    # Name of the profile fitted to the samples (refitted on all samples seen, at each new drop).
    samples_profile: str = "served"
    # New HR images are downloaded here; the fetch stage reads it as `local:<images_dir>`.
    images_dir: str = "data/web"
    # New pairs are downloaded here (originals/, copies/); fetched as `local:<pairs_local>` and
    # degraded as `degrade.pairs`.
    pairs_local: str = "data/web-pairs"
    # State (keys + ETags already seen), the lock, the champion's weights for the warm start,
    # the pipeline logs.
    workdir: str = "data/retrain"
    # Overlay preset (conf/preset/<preset>.yaml, fewer iterations, lower lr) merged over the preset
    # in use; the result is written to conf/preset/retrain.yaml (git-ignored) and run as a DVC
    # experiment `dvc exp run --temp -S preset=retrain`: the checkout's params.yaml and dvc.lock
    # stay as they are.
    preset: str = "finetune"
    # Base preset under the overlay; "" = the one params.yaml selects (or the one recorded by
    # the previous retrain when params.yaml already selects `retrain`).
    base_preset: str = ""
    # Dotted keys applied last, e.g. {train.iterations: 20000} for the paper setting.
    overrides: dict[str, Any] = field(default_factory=dict)
    # One JSON line per `cajnn retrain` (no-op checks included).
    log: str = "reports/retrain.jsonl"

    def __post_init__(self) -> None:
        if self.preset == "retrain" or self.base_preset == "retrain":
            raise ConfigError("register.retrain.preset/base_preset: 'retrain' is the generated preset's own name")
        bad = [k for k in self.overrides if "." not in k]
        if bad:
            raise ConfigError(f"register.retrain.overrides {bad}: keys are dotted paths such as train.iterations")


@dataclass(frozen=True)
class RegisterConfig:
    """`register` section: MLflow model registry name and the promotion policy."""

    model_name: str = "cajnn"
    # A challenger becomes champion only if its mean PSNR-Y over the frozen evaluation sets and
    # QFs is higher than the champion's by more than `min_gain` dB and no single set/QF is worse
    # by more than `tolerance` dB (ties keep the champion). The first model becomes champion.
    min_gain: float = 0.0
    tolerance: float = 0.1
    # Score the champion again on the current evaluation sets (its weights loaded from the
    # registry) instead of trusting the numbers recorded when it was registered.
    rescore_champion: bool = True
    # Downstream gate (off when null): a version whose output loses more than this many points
    # of word accuracy against the LR input it was given, at any QF of the downstream stage
    # (reports/downstream.json, paper Table II), is registered but never promoted.
    max_word_acc_drop: float | None = None
    # The shipped model (cajnn/shipped/<name>) an EMPTY registry starts with: registered first,
    # scored on the same sets, made champion; the trained model is then its challenger.
    # null = the first trained model becomes champion.
    seed_champion: str | None = "cpu-base"
    out: str = "reports/registry.json"
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    def __post_init__(self) -> None:
        if self.min_gain < 0 or self.tolerance < 0:
            raise ConfigError("register.min_gain and register.tolerance must be >= 0 (dB)")
        if self.max_word_acc_drop is not None and self.max_word_acc_drop < 0:
            raise ConfigError("register.max_word_acc_drop must be >= 0 (points) or null (off)")
