"""What a cajnn model logged to MLflow holds: the names of its artifacts and where its MLmodel
file says they are.

:func:`cajnn.serving.registry.log_pyfunc` logs the safetensors weights and their JSON config as
pyfunc artifacts; the enhance command, the registry's champion check and the pyfunc wrapper
find them again by the same names. The MLmodel file is read with MLflow's own
``mlflow.models.Model.load`` (which fetches only that file from a remote URI), not parsed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

WEIGHTS_ARTIFACT = "weights"  # the safetensors file
CONFIG_ARTIFACT = "config"  # its JSON architecture config (cajnn.weights.config_path_for)


class NotCajnnModelError(ValueError):
    """An MLflow model that is not a cajnn pyfunc (no weights artifact)."""


@dataclass(frozen=True)
class CajnnArtifacts:
    """Paths of a cajnn model's artifacts, relative to the model's folder."""

    weights: str
    config: str | None


def cajnn_artifacts(model: str, name: str | None = None) -> CajnnArtifacts:
    """The artifacts of the MLflow model at `model`: a local model folder or MLmodel file, or any
    MLflow model URI (runs:/, models:/, a store path). Raises :class:`NotCajnnModelError` when the
    model has no weights artifact (named `name`, by default `model`, in the message), and
    MLflow's errors when there is no model there."""
    from mlflow.models import Model

    flavor = Model.load(model).flavors.get("python_function") or {}
    arts = flavor.get("artifacts") or {}
    weights = (arts.get(WEIGHTS_ARTIFACT) or {}).get("path")
    if not weights:
        raise NotCajnnModelError(
            f"{name or model} is not a cajnn model: its MLmodel has no {WEIGHTS_ARTIFACT!r} artifact "
            "(expected a pyfunc logged by cajnn.serving.registry.log_pyfunc)"
        )
    return CajnnArtifacts(weights, (arts.get(CONFIG_ARTIFACT) or {}).get("path"))
