"""DVC stage `train`: Ray Train on the patch shards; weights, run id and curve as outputs.

The Ray Train run name includes a hash of the training parameters and the data manifest, so
re-running after a crash or Ctrl-C resumes that run from its latest checkpoint, while changed
parameters or data start a fresh run. The MLflow run is resumed the same way (tag lookup).
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from pathlib import Path

from cajnn.config import flatten, to_dict
from cajnn.tracking import git_commit, setup_tracking, write_run_file
from pipelines._common import ROOT, init_ray, stage

RUN_KEY_TAG = "cajnn.train_key"


def run_key(train_cfg: dict, manifest_sha: str) -> str:
    blob = json.dumps({"train": train_cfg, "data": manifest_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def mlflow_run_for(experiment_id: str, key: str, params: dict, tags: dict) -> str:
    """Resume the unfinished MLflow run of this training key, or create a new one."""
    from mlflow.entities import Param

    from mlflow import MlflowClient

    client = MlflowClient()
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}' and attributes.status != 'FINISHED'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"train-{key}", tags={RUN_KEY_TAG: key, **tags})
    items = [Param(k, str(v)) for k, v in flatten(params).items()]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i : i + 100])
    return run.info.run_id


def main() -> None:
    with stage("train") as params:
        from cajnn.archs import build_model
        from cajnn.training.checkpoint import load_training_state
        from cajnn.training.ray_trainer import fit
        from cajnn.weights import save_weights
        from mlflow import MlflowClient

        cfg = params.train
        out = ROOT / cfg.out
        manifest_path = ROOT / cfg.data / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path}: no patch manifest; run the degrade stage first")
        manifest_sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
        key = run_key(to_dict(cfg), manifest_sha)
        uri, experiment_id = setup_tracking(params.mlflow, ROOT)
        run_id = mlflow_run_for(
            experiment_id,
            key,
            {"train": to_dict(cfg), "degrade": to_dict(params.degrade)},
            {"git_commit": git_commit(ROOT), "data_manifest_sha256": manifest_sha, "stage": "train"},
        )
        print(f"[train] MLflow run {run_id} (key {key}); tracking {uri}")

        init_ray(params.ray)
        storage = cfg.storage_path if "://" in cfg.storage_path else str((ROOT / cfg.storage_path).resolve())
        result = fit(cfg, f"{cfg.run_name}-{key}", storage, mlflow_tracking_uri=uri, mlflow_run_id=run_id)

        net = build_model(cfg.model.preset, **cfg.model.overrides)
        with result.checkpoint.as_directory() as ckpt:
            meta = load_training_state(ckpt, net)
        out.mkdir(parents=True, exist_ok=True)
        weights = out / "cajnn.safetensors"
        save_weights(net, weights)
        n_params = sum(p.numel() for p in net.parameters())

        client = MlflowClient()
        history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
        lrs = {m.step: m.value for m in client.get_metric_history(run_id, "lr")}
        with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["iteration", "loss", "lr"])
            for m in history:
                writer.writerow([m.step, f"{m.value:.6f}", f"{lrs.get(m.step, float('nan')):.3e}"])
        Path(fh.name).replace(out / "train_curve.csv")
        client.log_metric(run_id, "params_millions", n_params / 1e6)
        client.log_artifact(run_id, str(out / "train_curve.csv"))
        client.set_terminated(run_id, "FINISHED")
        write_run_file(out / "run.json", run_id, iterations=int(meta["iteration"]), params=n_params,
                       tracking_uri=params.mlflow.tracking_uri, train_key=key)
        import ray

        ray.shutdown()
        print(f"[train] {meta['iteration']} iterations; weights {weights} ({n_params:,} parameters)")


if __name__ == "__main__":
    main()
