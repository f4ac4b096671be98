"""MLflow plumbing shared by the stages: where the store is, which experiment, which run.

A relative `sqlite:///` URI or artifact folder in `params.yaml` is taken relative to the
repository root, so every stage (and Ray workers, whose working directory differs) reaches
the same store. `MLFLOW_TRACKING_URI` in the environment overrides `params.yaml`, as users of
MLflow expect.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cajnn.config import TrackingConfig

RUN_FILE = "run.json"  # written by `train` beside the weights: which MLflow run to attach to
# The experiment kind MLflow 3's UI shows for an experiment (model training, not GenAI). In
# 3.17.2 the first page is decided by the sidebar's GenAI / Model training switch (default
# GenAI, remembered by the browser) or the link's `?workflowType=machine_learning`, which
# `make ui` prints; the tag is what the UI reads where that switch is off.
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")


def resolve_tracking_uri(cfg: TrackingConfig, root: Path) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        db = (root / uri[len(prefix):]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        uri = prefix + str(db)
    return uri


def setup_tracking(cfg: TrackingConfig, root: Path) -> tuple[str, str]:
    """Point MLflow at the store and make sure the experiment exists; returns (uri, exp id)."""
    import mlflow

    uri = resolve_tracking_uri(cfg, root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is None:
        location = None  # a tracking server decides where artifacts go (e.g. its S3 store)
        if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
            location = cfg.artifact_location
            if "://" not in location:
                path = (root / location).resolve()
                path.mkdir(parents=True, exist_ok=True)
                location = path.as_uri()
        exp_id = mlflow.create_experiment(cfg.experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    if exp is None or EXPERIMENT_KIND_TAG[0] not in exp.tags:  # a kind the user chose in the UI stays
        mlflow.MlflowClient(uri).set_experiment_tag(exp_id, *EXPERIMENT_KIND_TAG)
    mlflow.set_experiment(experiment_id=exp_id)
    return uri, exp_id


def git_commit(root: Path) -> str:
    """The checked-out commit (plus '-dirty' when the tree has changes), or 'unknown'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_run_file(path: Path, run_id: str, **extra) -> None:
    path.write_text(json.dumps({"run_id": run_id, **extra}, indent=2) + "\n")


def read_run_file(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training run recorded; run the train stage first")
    return json.loads(path.read_text())
