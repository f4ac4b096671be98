"""The `evaluate` section."""

from __future__ import annotations

from dataclasses import dataclass, field


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
