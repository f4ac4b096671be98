"""The `fetch` section."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FetchConfig:
    """`fetch` section: which datasets to put under `dest`, one folder each."""

    sources: list[str] = field(default_factory=lambda: ["sample"])
    dest: str = "data/raw"
    # Embedded sample images kept out of training and used by `evaluate` instead.
    holdout: list[str] = field(default_factory=lambda: ["chelsea", "coffee"])
