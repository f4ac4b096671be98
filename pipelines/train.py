"""DVC stage `train`: Ray Train on the patch shards; weights, run id and curve as outputs.

The Ray Train run name includes a hash of the training parameters, the data manifest and the
training code, so re-running after a crash or Ctrl-C resumes that run from its latest checkpoint,
while changed parameters, data or code start a fresh run. The MLflow run is resumed the same way
(tag lookup); it is named after the DVC experiment when `dvc exp run` runs the stage, carries
MLflow's source tags, the patch set as its training dataset and the trainer's system metrics.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cajnn
from cajnn.atomic import write_text_atomic
from cajnn.config import Params, TrainConfig, flatten, to_dict
from cajnn.tracking import (
    RUN_FILE,
    dataset,
    dvc_experiment,
    files_digest,
    log_datasets,
    patch_set_dataset,
    patch_set_summary,
    resolve_tracking_uri,
    run_tags,
    setup_tracking,
    write_run_file,
)
from pipelines._common import ROOT, init_ray, stage

RUN_KEY_TAG = "cajnn.train_key"
# The code that decides what training produces. Part of the run key: after a change to it DVC
# reruns the stage, and without it Ray would resume the finished run and hand back old weights.
TRAIN_CODE = (
    "cajnn/archs",
    "cajnn/config",
    "cajnn/data",
    "cajnn/degradation",
    "cajnn/metrics",
    "cajnn/training",
    "cajnn/weights.py",
)
CODE_ROOT = Path(cajnn.__file__).resolve().parents[1]  # the code this process runs


def code_digest(root: Path = CODE_ROOT, paths: tuple[str, ...] = TRAIN_CODE) -> str:
    """sha256 of the training code's `*.py` files under `root` (names and contents)."""
    files: list[Path] = []
    for rel in paths:
        path = root / rel
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    return files_digest(root, files)


def run_key(train_cfg: dict, manifest_sha: str, code_sha: str) -> str:
    blob = json.dumps({"train": train_cfg, "data": manifest_sha, "code": code_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_name(preset: str, cfg: TrainConfig, key: str) -> str:
    """The MLflow run's name: the DVC experiment's inside `dvc exp run`, else what was trained
    (`embedded-cpu-small-1800it-7d289b`; the key's prefix keeps it the same when resumed)."""
    return dvc_experiment() or f"{preset}-{cfg.model.preset}-{cfg.iterations}it-{key[:6]}"


def mlflow_run_for(experiment_id: str, key: str, name: str, params: dict, tags: dict) -> str:
    """Resume the unfinished MLflow run of this training key, or create a new one."""
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag

    client = MlflowClient()
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}' and attributes.status != 'FINISHED'",
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
        # Running again (system metrics stop on a run that is not), and named, tagged after
        # this attempt: its commit and DVC experiment are the ones that finish the run.
        client.update_run(run_id, status="RUNNING", name=name)
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        return run_id
    run = client.create_run(experiment_id, run_name=name, tags={RUN_KEY_TAG: key, **tags})
    items = [Param(k, str(v)) for k, v in flatten(params).items()]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i : i + 100])
    return run.info.run_id


def image_folder_dataset(folder: Path):
    """A folder of images as a dataset named after it; digest over its files' names and bytes."""
    from cajnn.data.image_io import list_images

    files = list_images(folder)
    return dataset(folder.name, folder, files_digest(folder, files), {"images": len(files)})


@dataclass(frozen=True)
class TrainRun:
    """The MLflow run a training attaches to, and what it was keyed on."""

    tracking_uri: str
    run_id: str
    key: str
    name: str
    manifest: dict
    manifest_sha: str
    val_dirs: list[Path]


def start_run(params: Params, root: Path) -> TrainRun:
    """Create or resume the train stage's MLflow run: name, tags (source, DVC experiment, preset,
    data and code hashes), parameters, and the patch set and validation sets as dataset inputs."""
    from mlflow import MlflowClient

    cfg = params.train
    manifest_path = root / cfg.data / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: no patch manifest; run the degrade stage first")
    manifest_bytes = manifest_path.read_bytes()
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    manifest = json.loads(manifest_bytes)
    code_sha = code_digest()
    key = run_key(to_dict(cfg), manifest_sha, code_sha)
    name = run_name(params.preset, cfg, key)
    uri, experiment_id = setup_tracking(params.mlflow, root)
    run_id = mlflow_run_for(
        experiment_id,
        key,
        name,
        {"train": to_dict(cfg), "degrade": to_dict(params.degrade)},
        {
            **run_tags(root, __file__, params.preset),
            "data_manifest_sha256": manifest_sha,
            "code_sha256": code_sha,
            "stage": "train",
        },
    )
    val_dirs = [root / v for v in cfg.val_sets if (root / v).is_dir()]
    log_datasets(
        MlflowClient(),
        run_id,
        [
            (patch_set_dataset(root / cfg.data, manifest, manifest_sha), "training"),
            *((image_folder_dataset(d), "validation") for d in val_dirs),
        ],
    )
    return TrainRun(uri, run_id, key, name, manifest, manifest_sha, val_dirs)


CURVE_METRICS = ("loss", "lr", "val_psnr_y", "val_ssim_y")


def write_curve(client, run_id: str, path: Path) -> None:
    """The training curve from MLflow's metric history, as a CSV for `dvc plots`."""
    rows: dict[int, dict[str, float]] = {}
    for name in CURVE_METRICS:
        for m in client.get_metric_history(run_id, name):
            rows.setdefault(m.step, {})[name] = m.value
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["iteration", *CURVE_METRICS])
    for step in sorted(rows):
        writer.writerow([step, *(f"{rows[step][k]:.6g}" if k in rows[step] else "" for k in CURVE_METRICS)])
    write_text_atomic(path, text.getvalue())


def main() -> None:
    with stage("train") as params:
        from mlflow import MlflowClient

        from cajnn.archs import build_model
        from cajnn.training.checkpoint import load_training_state
        from cajnn.training.ray_trainer import check_cluster_stores, fit
        from cajnn.training.validation import build_val_pairs
        from cajnn.weights import save_weights

        cfg = params.train
        # before anything is created: a cluster's workers must reach the MLflow store themselves
        note = check_cluster_stores(cfg, resolve_tracking_uri(params.mlflow, ROOT), params.ray.address)
        if note:
            print(f"[train] note: {note}", file=sys.stderr)
        out = ROOT / cfg.out
        net = build_model(cfg.model.preset, **cfg.model.overrides)
        run = start_run(params, ROOT)
        run_id, key, name, client = run.run_id, run.key, run.name, MlflowClient()
        val_pairs = build_val_pairs(run.val_dirs, cfg.val_qualities, cfg.val_crop, net.config["scale"])
        n_params = sum(p.numel() for p in net.parameters())
        print(
            f"[train] {cfg.model.preset} network ({n_params / 1e6:.2f} M parameters), {cfg.iterations} iterations "
            f"of {cfg.batch_size} x {cfg.crop}px LR crops; validation: {len(val_pairs)} crops at QF "
            f"{', '.join(map(str, cfg.val_qualities))}; MLflow run {name} ({run_id[:8]})"
        )
        if cfg.init_weights:
            print(f"[train] warm start from {cfg.init_weights} (a checkpoint of this run, if any, takes precedence)")
        try:
            init_ray(params.ray)
            t0 = time.perf_counter()
            result = fit(
                cfg,
                f"{cfg.run_name}-{key}",
                str(ROOT / cfg.data),
                val_pairs,
                mlflow_tracking_uri=run.tracking_uri,
                mlflow_run_id=run_id,
                task_resources=params.ray.task_resources,
            )
            train_s = time.perf_counter() - t0
        except BaseException as exc:
            # The UI lists the run as stopped, not as running forever; the next attempt resumes it.
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise

        with result.checkpoint.as_directory() as ckpt:
            meta = load_training_state(ckpt, net)
        out.mkdir(parents=True, exist_ok=True)
        weights = out / "cajnn.safetensors"
        save_weights(net, weights)

        write_curve(client, run_id, out / "train_curve.csv")
        # at the last iteration: register logs the model at that step, and MLflow copies the run's
        # metrics of that step (final loss, validation, size) to it
        client.log_metric(run_id, "params_millions", n_params / 1e6, step=int(meta["iteration"]))
        client.log_artifact(run_id, str(out / "train_curve.csv"))
        client.set_terminated(run_id, "FINISHED")
        resumed = meta.get("resumed_from", [])
        val = meta.get("metrics", {}).get("val_psnr_y")
        write_run_file(
            out / RUN_FILE,
            run_id,
            iterations=int(meta["iteration"]),
            optimizer_steps=int(meta.get("optimizer_steps", 0)),
            params=n_params,
            exported=cfg.export,
            train_key=key,
            resumed_from=resumed,
            val_psnr_y=val,
            run_name=name,
            preset=params.preset,
            train_seconds=round(train_s, 1),
            model_preset=cfg.model.preset,
            batch_size=cfg.batch_size,
            crop=cfg.crop,
            data={"path": cfg.data, "manifest_sha256": run.manifest_sha, **patch_set_summary(run.manifest)},
        )
        import ray

        ray.shutdown()
        print(
            f"[train] {meta['iteration']} iterations in {train_s:.0f} s"
            + (f" (resumed at {', '.join(map(str, resumed))})" if resumed else "")
            + (f"; validation PSNR-Y {val:.2f} dB" if val is not None else "")
            + f"; weights {cfg.out}/cajnn.safetensors"
        )


if __name__ == "__main__":
    main()
