"""DVC stage `train`: Ray Train on the patch shards; weights, run id and curve as outputs.

The Ray Train run name includes a hash of the training parameters and the data manifest, so
re-running after a crash or Ctrl-C resumes that run from its latest checkpoint, while changed
parameters or data start a fresh run. The MLflow run is resumed the same way (tag lookup).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from pathlib import Path

from cajnn.config import flatten, to_dict
from cajnn.fetch.files import write_text_atomic
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
        from cajnn.archs import build_model
        from cajnn.training.checkpoint import load_training_state
        from cajnn.training.ray_trainer import fit
        from cajnn.training.validation import build_val_pairs
        from cajnn.weights import save_weights
        from mlflow import MlflowClient

        cfg = params.train
        out = ROOT / cfg.out
        net = build_model(cfg.model.preset, **cfg.model.overrides)
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
        val_pairs = build_val_pairs([ROOT / v for v in cfg.val_sets if (ROOT / v).is_dir()],
                                    cfg.val_qualities, cfg.val_crop, net.config["scale"])
        n_params = sum(p.numel() for p in net.parameters())
        print(f"[train] {cfg.model.preset} network ({n_params / 1e6:.2f} M parameters), {cfg.iterations} iterations "
              f"of {cfg.batch_size} x {cfg.crop}px LR crops; validation: {len(val_pairs)} crops at QF "
              f"{', '.join(map(str, cfg.val_qualities))}; MLflow run {run_id[:8]}")
        if cfg.init_weights:
            print(f"[train] warm start from {cfg.init_weights} (a checkpoint of this run, if any, takes precedence)")
        init_ray(params.ray)
        t0 = time.perf_counter()
        result = fit(cfg, f"{cfg.run_name}-{key}", str(ROOT / cfg.data), val_pairs,
                     mlflow_tracking_uri=uri, mlflow_run_id=run_id)
        train_s = time.perf_counter() - t0

        with result.checkpoint.as_directory() as ckpt:
            meta = load_training_state(ckpt, net)
        out.mkdir(parents=True, exist_ok=True)
        weights = out / "cajnn.safetensors"
        save_weights(net, weights)

        client = MlflowClient()
        write_curve(client, run_id, out / "train_curve.csv")
        client.log_metric(run_id, "params_millions", n_params / 1e6)
        client.log_artifact(run_id, str(out / "train_curve.csv"))
        client.set_terminated(run_id, "FINISHED")
        resumed = meta.get("resumed_from", [])
        val = meta.get("metrics", {}).get("val_psnr_y")
        write_run_file(
            out / "run.json", run_id, iterations=int(meta["iteration"]),
            optimizer_steps=int(meta.get("optimizer_steps", 0)), params=n_params, exported=cfg.export,
            train_key=key, resumed_from=resumed, val_psnr_y=val,
        )
        import ray

        ray.shutdown()
        print(f"[train] {meta['iteration']} iterations in {train_s:.0f} s"
              + (f" (resumed at {', '.join(map(str, resumed))})" if resumed else "")
              + (f"; validation PSNR-Y {val:.2f} dB" if val is not None else "")
              + f"; weights {cfg.out}/cajnn.safetensors")


if __name__ == "__main__":
    main()
