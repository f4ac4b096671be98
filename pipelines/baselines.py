"""DVC stage `baselines`: the two-stage baselines of paper Table I (ARCNN / DnCNN, then RRDBNet),
each trained through the same Ray Train path, patch shards and recipe as CAJNN.

Writes `models/baselines/<name>.safetensors` (+ `.json`) per network and
`models/baselines/baselines.json`: what each one is (preset, task, parameters) and the budget it
had (iterations, samples, seconds). With `baselines.enabled: false` only the record is written,
so that `evaluate` can depend on the folder either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import replace

from cajnn.atomic import atomic_dir, write_json_atomic
from cajnn.config import ModelConfig, to_dict
from cajnn.evaluation import BASELINES_RECORD as RECORD
from pipelines._common import ROOT, init_ray, stage


def main() -> None:
    with stage("baselines") as params:
        cfg = params.baselines
        out = ROOT / cfg.out
        record: dict = {"enabled": cfg.enabled, "models": {}, "chains": cfg.chains, "sr_only": cfg.sr_only}
        if not cfg.enabled:
            with atomic_dir(out) as partial:
                write_json_atomic(partial / RECORD, record)
            print(f"[baselines] off (baselines.enabled: false); {cfg.out}/{RECORD} says so")
            return
        import ray
        from mlflow import MlflowClient

        from cajnn.archs import build_model
        from cajnn.tracking import resolve_tracking_uri, run_tags, setup_tracking
        from cajnn.training.checkpoint import load_training_state
        from cajnn.training.ray_trainer import check_cluster_stores, fit
        from cajnn.training.validation import build_val_pairs
        from cajnn.weights import save_weights
        from pipelines.train import code_digest, mlflow_run_for, run_key, write_curve

        check_cluster_stores(params.train, resolve_tracking_uri(params.mlflow, ROOT), params.ray.address)
        manifest_sha = hashlib.sha256((ROOT / params.train.data / "manifest.json").read_bytes()).hexdigest()
        uri, experiment_id = setup_tracking(params.mlflow, ROOT)
        client = MlflowClient()
        val_dirs = [ROOT / v for v in params.train.val_sets if (ROOT / v).is_dir()]
        val_pairs = build_val_pairs(val_dirs, params.train.val_qualities, params.train.val_crop, 4)
        init_ray(params.ray)
        with atomic_dir(out) as partial:
            for name, model in cfg.models.items():
                tcfg = replace(
                    params.train,
                    model=ModelConfig(model.preset),
                    task=model.task,
                    init_weights="",
                    iterations=cfg.iterations or params.train.iterations,
                    export="last",
                    run_name=f"baseline-{name}",
                )
                net = build_model(model.preset)
                n_params = sum(p.numel() for p in net.parameters())
                key = run_key(to_dict(tcfg), manifest_sha, code_digest())
                run_name = f"baseline-{name}-{model.preset}-{tcfg.iterations}it-{key[:6]}"
                run_id = mlflow_run_for(
                    experiment_id,
                    key,
                    run_name,
                    {"train": to_dict(tcfg)},
                    {
                        **run_tags(ROOT, __file__, params.preset),
                        "stage": "baselines",
                        "baseline": name,
                        "data_manifest_sha256": manifest_sha,
                    },
                )
                print(
                    f"[baselines] {name}: {model.preset} ({n_params / 1e6:.3f} M parameters, task {model.task}), "
                    f"{tcfg.iterations} iterations of {tcfg.batch_size} x {tcfg.crop}px; MLflow run {run_name}"
                )
                t0 = time.perf_counter()
                try:
                    result = fit(
                        tcfg,
                        f"{tcfg.run_name}-{key}",
                        str(ROOT / tcfg.data),
                        val_pairs,
                        mlflow_tracking_uri=uri,
                        mlflow_run_id=run_id,
                        task_resources=params.ray.task_resources,
                    )
                except BaseException as exc:
                    with contextlib.suppress(Exception):
                        client.set_terminated(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
                    raise
                seconds = time.perf_counter() - t0
                with result.checkpoint.as_directory() as ckpt:
                    meta = load_training_state(ckpt, net)
                save_weights(net, partial / f"{name}.safetensors")
                write_curve(client, run_id, partial / f"{name}_curve.csv")
                client.log_metric(run_id, "params_millions", n_params / 1e6, step=int(meta["iteration"]))
                client.set_terminated(run_id, "FINISHED")
                val = meta.get("metrics", {}).get("val_psnr_y")
                record["models"][name] = {
                    "preset": model.preset,
                    "task": model.task,
                    "params": n_params,
                    "weights": f"{name}.safetensors",
                    "iterations": int(meta["iteration"]),
                    "samples": int(meta["iteration"]) * tcfg.batch_size,
                    "train_seconds": round(seconds, 1),
                    "run_id": run_id,
                    "val_psnr_y": val,
                }
                print(
                    f"[baselines] {name}: {meta['iteration']} iterations in {seconds:.0f} s"
                    + (f"; validation PSNR-Y ({'LR' if model.task == 'car' else 'HR'}) {val:.2f} dB" if val else "")
                )
            write_json_atomic(partial / RECORD, record)
        ray.shutdown()


if __name__ == "__main__":
    main()
