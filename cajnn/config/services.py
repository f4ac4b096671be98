"""The shared `mlflow` and `ray` sections."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    # Custom resources every degrade task and every training worker asks for, e.g. {worker: 1}
    # with `ray start --resources '{"worker": 1}'` on the worker nodes, so that the work runs
    # there and not on the head. {} = anywhere.
    task_resources: dict[str, float] = field(default_factory=dict)
