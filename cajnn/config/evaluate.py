"""The `evaluate` section."""

from __future__ import annotations

from dataclasses import dataclass, field

from cajnn.config.base import ConfigError


@dataclass(frozen=True)
class EvaluateConfig:
    """`evaluate` section: the paper's test protocol (IV-B) on each set present."""

    weights: str = "models/cajnn.safetensors"
    # name -> folder of HR images; sets whose folder is missing (not fetched) are listed as such
    sets: dict[str, str] = field(default_factory=lambda: {"holdout": "data/raw/sample-holdout"})
    qualities: list[int] = field(default_factory=lambda: [10, 20, 40])
    scale: int = 4
    crop_border: int = 4
    self_ensemble: bool = True  # also score CAJNN with the 8-way self-ensemble (Table I)
    # QF sweep on one set (paper Fig. 3), bicubic vs CAJNN; skipped when that set is absent
    sweep_set: str = "holdout"
    sweep_qualities: list[int] = field(default_factory=lambda: list(range(10, 101, 10)))
    tile: int = 0  # LR tile for inference (0 = whole image); bounds memory on large sets
    samples: int = 1  # side-by-side crops saved per set and QF
    out: str = "reports"

    def __post_init__(self) -> None:
        bad = [q for q in [*self.qualities, *self.sweep_qualities] if not 1 <= q <= 100]
        if bad:
            raise ConfigError(f"evaluate: quality factors {bad} are outside 1..100")
