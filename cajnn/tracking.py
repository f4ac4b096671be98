"""MLflow plumbing shared by the stages: where the store is, which experiment, which run, and
what a run says about itself (source tags, dataset inputs, system metrics).

A relative `sqlite:///` URI or artifact folder in `params.yaml` is taken relative to the
repository root, so every stage (and Ray workers, whose working directory differs) reaches
the same store. `MLFLOW_TRACKING_URI` in the environment overrides `params.yaml`, as users of
MLflow expect.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from cajnn.atomic import write_json_atomic
from cajnn.config import TrackingConfig

RUN_FILE = "run.json"  # written by `train` beside the weights: which MLflow run to attach to
# The experiment kind MLflow 3's UI shows for an experiment (model training, not GenAI). In
# 3.17.2 the first page is decided by the sidebar's GenAI / Model training switch (default
# GenAI, remembered by the browser) or the link's `?workflowType=machine_learning`, which
# `make ui` prints; the tag is what the UI reads where that switch is off.
EXPERIMENT_KIND_TAG = ("mlflow.experimentKind", "custom_model_development")
DIGEST_CHARS = 16  # of a dataset's sha256 in MLflow (its store holds 36 characters)
# Seconds between system-metric samples: a few hundred points for an hour of training, and
# no measurable cost to a 2-core training loop.
SYSTEM_METRICS_INTERVAL_S = 10.0


def resolve_tracking_uri(cfg: TrackingConfig, root: Path, create: bool = False) -> str:
    """MLFLOW_TRACKING_URI, else `mlflow.tracking_uri` with a relative sqlite path made absolute
    under `root` (and its folder made when `create`)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        db = Path(uri[len(prefix) :]) if uri[len(prefix) :].startswith("/") else (root / uri[len(prefix) :]).resolve()
        if create:
            db.parent.mkdir(parents=True, exist_ok=True)
        uri = prefix + str(db)
    return uri


def setup_tracking(cfg: TrackingConfig, root: Path) -> tuple[str, str]:
    """Point MLflow at the store and make sure the experiment exists; returns (uri, exp id)."""
    import mlflow

    uri = resolve_tracking_uri(cfg, root, create=True)
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


def _git(root: Path, *args: str) -> str:
    """Output of one git command in `root` ('' when git or the repository is missing)."""
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def pipeline_outputs(root: Path) -> list[str]:
    """What the DVC pipeline writes, which git may track: dvc.lock and the stages' outputs.

    Not changes to the code: `dvc repro` rewrites dvc.lock after each stage and deletes a stage's
    outputs (models/run.json, reports/...) before running it, so counting them would mark every
    run as dirty."""
    import yaml

    found = ["dvc.lock"]
    with contextlib.suppress(OSError, yaml.YAMLError, AttributeError, TypeError):
        for stage in (yaml.safe_load((Path(root) / "dvc.yaml").read_text()) or {}).get("stages", {}).values():
            for kind in ("outs", "metrics", "plots"):
                found += [next(iter(o)) if isinstance(o, dict) else str(o) for o in stage.get(kind) or []]
    return found


def source_tags(root: Path, entry_point: Path | str) -> dict[str, str]:
    """MLflow's own source tags for a stage started from `entry_point` in the repository at `root`.

    `client.create_run` adds none of them (only `mlflow.start_run` does, with an absolute script
    path): the entry point is given relative to the repository, as the UI's Source column shows
    it. `git_dirty` counts changes to tracked files other than the pipeline's outputs
    (:func:`pipeline_outputs`), so that data and scratch files do not mark every run; inside
    `dvc exp run -S` the tree is dirty by design (DVC writes params.yaml).
    """
    from mlflow.entities import SourceType
    from mlflow.utils import mlflow_tags

    entry = Path(entry_point)
    with contextlib.suppress(ValueError):
        entry = entry.resolve().relative_to(Path(root).resolve())
    tags = {
        mlflow_tags.MLFLOW_SOURCE_NAME: entry.as_posix(),
        mlflow_tags.MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.LOCAL),
    }
    with contextlib.suppress(KeyError, OSError):
        tags[mlflow_tags.MLFLOW_USER] = getpass.getuser()
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return tags
    excluded = [f":(exclude){p}" for p in pipeline_outputs(root)]
    dirty = "true" if _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded) else "false"
    tags.update({mlflow_tags.MLFLOW_GIT_COMMIT: commit, mlflow_tags.MLFLOW_GIT_DIRTY: dirty, "git_dirty": dirty})
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":  # "HEAD": detached, e.g. a `dvc exp run --temp` checkout
        tags[mlflow_tags.MLFLOW_GIT_BRANCH] = branch
    if url := _git(root, "config", "--get", "remote.origin.url"):
        tags[mlflow_tags.MLFLOW_GIT_REPO_URL] = url
    return tags


def dvc_experiment() -> str:
    """The name of the DVC experiment running this stage (`dvc exp run` exports it), or ''."""
    return os.environ.get("DVC_EXP_NAME", "")


def run_tags(root: Path, entry_point: Path | str, preset: str) -> dict[str, str]:
    """What every training run says about where it came from: source, DVC experiment, preset."""
    return {**source_tags(root, entry_point), "dvc_exp": dvc_experiment(), "preset": preset}


# --------------------------------------------------------------------------- dataset inputs


def files_digest(base: Path, files: list[Path]) -> str:
    """sha256 over the files' paths (relative to `base`) and contents: a folder's fingerprint."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(Path(f).relative_to(base).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


def dataset(name: str, location: Path | str, digest: str, profile: dict):
    """An MLflow dataset that is metadata only (the data stay where they are): `digest` is
    shortened to what MLflow's store holds (36 characters); `profile` is what the UI's dataset
    panel lists (counts, settings)."""
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json
    from mlflow.data.meta_dataset import MetaDataset

    class Described(MetaDataset):
        @property
        def profile(self):
            return profile

        def to_dict(self):
            return {**super().to_dict(), "profile": json.dumps(profile, sort_keys=True)}

    location = str(location)
    remote = location.startswith("s3://")
    # looked up by type: MLflow's resolver would warn that a local path matches two kinds of source
    source = get_dataset_source_from_json(
        json.dumps({"uri": location if remote else str(Path(location).resolve())}),
        source_type="s3" if remote else "local",
    )
    return Described(source, name=name, digest=digest[:DIGEST_CHARS])


def log_datasets(client, run_id: str, datasets: list[tuple[object, str]]) -> None:
    """Log (dataset, context) pairs as the run's inputs; logging the same one again is a no-op."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = [
        DatasetInput(ds._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)]) for ds, context in datasets
    ]
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def patch_set_summary(manifest: dict) -> dict:
    """The facts of a patch manifest (`cajnn.data.shards`) that describe a training set."""
    sources = Counter(str(s.get("source", "")).split("/")[0] for s in manifest.get("shards", []))
    keys = ("patches", "images", "lr_images", "real_pairs", "profile", "patch_size_lr", "qualities_per_image", "bytes")
    return {
        **{k: manifest[k] for k in keys if manifest.get(k) is not None},
        "sources": {k: n for k, n in sorted(sources.items()) if k},
    }


def patch_set_dataset(data_dir: Path, manifest: dict, manifest_sha256: str):
    """The `degrade` stage's patch shards as the `patches` dataset (digest: its manifest's hash)."""
    profile = patch_set_summary(manifest)
    profile["sources"] = ", ".join(f"{k} ({n} images)" for k, n in profile["sources"].items())
    return dataset("patches", data_dir, manifest_sha256, profile)


# --------------------------------------------------------------------------- system metrics


@contextlib.contextmanager
def system_metrics(
    run_id: str | None, tracking_uri: str | None = None, interval: float = SYSTEM_METRICS_INTERVAL_S
) -> Iterator[None]:
    """Sample this machine's CPU, memory, disk and network (NVIDIA GPUs too when nvidia-ml-py is
    installed) into the run's `system/...` metrics every `interval` seconds while the block runs.

    MLflow's `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` overrides `interval`. A resumed run
    continues its steps. Sampling stops by itself once the run is no longer RUNNING.
    """
    if not run_id:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, resume_logging=True, tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def write_run_file(path: Path, run_id: str, **extra) -> None:
    # Keys in the order given (run_id first): people read this file; it is not compared by hash.
    write_json_atomic(path, {"run_id": run_id, **extra}, sort_keys=False)


def read_run_file(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training run recorded; run the train stage first")
    return json.loads(path.read_text())
