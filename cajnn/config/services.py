"""The shared `mlflow` and `ray` sections."""

from __future__ import annotations

from dataclasses import dataclass


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
