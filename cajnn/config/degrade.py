"""The `degrade` section and degradation profiles."""

from __future__ import annotations

from dataclasses import dataclass, field

from cajnn.config.base import ConfigError


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
