"""The `baselines` section: the two-stage baselines of paper Table I (CAR network, then SR
network) trained on the same patch shards with the same recipe as CAJNN."""

from __future__ import annotations

from dataclasses import dataclass, field

from cajnn.config.base import ConfigError


@dataclass(frozen=True)
class BaselineModel:
    """One baseline network: an architecture preset (`cajnn.archs.presets`) and what it learns
    (`car`: JPEG LR -> clean LR; `sr`: clean LR -> HR)."""

    preset: str
    task: str

    def __post_init__(self) -> None:
        if self.task not in ("car", "sr"):
            raise ConfigError(f"baselines.models: task {self.task!r}: use car or sr")


@dataclass(frozen=True)
class BaselinesConfig:
    """`baselines` section. Off by default (the embedded budget has no room for three more
    trainings); `dvc exp run -S baselines.enabled=true` trains them at CAJNN's budget."""

    enabled: bool = False
    out: str = "models/baselines"
    models: dict[str, BaselineModel] = field(
        default_factory=lambda: {
            "arcnn": BaselineModel("arcnn", "car"),
            "dncnn": BaselineModel("dncnn-small", "car"),
            "rrdbnet": BaselineModel("rrdbnet-small", "sr"),
        }
    )
    # Table I rows: chains (name -> [car model, sr model]) and the SR-only row (the SR model on
    # the JPEG input, no artifact removal); names are those of `models`.
    chains: dict[str, list[str]] = field(
        default_factory=lambda: {"arcnn_rrdbnet": ["arcnn", "rrdbnet"], "dncnn_rrdbnet": ["dncnn", "rrdbnet"]}
    )
    sr_only: str = "rrdbnet"
    # iterations of each baseline; 0 = train.iterations (the same budget per network as CAJNN)
    iterations: int = 0

    def __post_init__(self) -> None:
        names = set(self.models)
        for chain, members in self.chains.items():
            if len(members) != 2 or any(m not in names for m in members):
                raise ConfigError(f"baselines.chains.{chain}: expected [car model, sr model] from {sorted(names)}")
            car, sr = members
            if self.models[car].task != "car" or self.models[sr].task != "sr":
                raise ConfigError(f"baselines.chains.{chain}: {car} must be a car model and {sr} an sr model")
            if not chain.replace("_", "").isalnum():
                raise ConfigError(f"baselines.chains.{chain}: use letters, digits and '_' (it names metrics)")
        if self.sr_only and (self.sr_only not in names or self.models[self.sr_only].task != "sr"):
            raise ConfigError(f"baselines.sr_only {self.sr_only!r}: must name an sr model of baselines.models")
        if self.iterations < 0:
            raise ConfigError("baselines.iterations must be >= 0")
