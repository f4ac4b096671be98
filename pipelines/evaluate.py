"""DVC stage `evaluate`: paper protocol (IV-B) on every evaluation set present.

Writes `reports/metrics.json` (flat, for `dvc metrics`), `reports/table.md` (paper Table I
layout), `reports/qf_curve.csv` (for `dvc plots`) and side-by-side crops, and logs all of it to
the training run in MLflow.
"""

from __future__ import annotations

import csv
import time

import numpy as np

from cajnn.data.image_io import save_rgb
from cajnn.evaluation import bicubic_method, evaluate_sets, flat_metrics, markdown_table, model_method
from cajnn.tracking import read_run_file, setup_tracking
from pipelines._common import ROOT, stage, write_json

SAMPLE_CROP = 96  # HR pixels of each side-by-side crop


def side_by_side(lr: np.ndarray, images: dict[str, np.ndarray], scale: int) -> np.ndarray:
    """Input (nearest-upscaled), bicubic, CAJNN, ground truth: one centre crop each."""
    gt = images["gt"]
    h, w = gt.shape[:2]
    c = min(SAMPLE_CROP, h, w)
    y, x = (h - c) // 2 // scale * scale, (w - c) // 2 // scale * scale
    lr_up = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
    panels = [lr_up] + [images[k] for k in ("bicubic", "cajnn", "gt") if k in images]
    return np.concatenate([p[y : y + c, x : x + c] for p in panels], axis=1)


def main() -> None:
    with stage("evaluate") as params:
        from cajnn.weights import load_weights
        from mlflow import MlflowClient

        cfg = params.evaluate
        out = ROOT / cfg.out
        model = load_weights(ROOT / cfg.weights)
        n_params = sum(p.numel() for p in model.parameters())
        methods = {"bicubic": bicubic_method(cfg.scale), "cajnn": model_method(model)}
        labels = {"bicubic": "Bicubic", "cajnn": "CAJNN"}
        if cfg.self_ensemble:
            methods["cajnn_x8"] = model_method(model, self_ensemble=True)
            labels["cajnn_x8"] = "CAJNN (self-ensembled)"
        samples = out / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        first: dict[tuple[str, int], bool] = {}

        def keep_sample(set_name, qf, stem, lr, images):
            if (set_name, qf) not in first:
                first[(set_name, qf)] = True
                save_rgb(side_by_side(lr, images, cfg.scale), samples / f"{set_name}_qf{qf}_{stem}.png")

        t0 = time.perf_counter()
        report = evaluate_sets(methods, {k: ROOT / v for k, v in cfg.sets.items() if (ROOT / v).is_dir()},
                               cfg.qualities, cfg.scale, cfg.crop_border, on_image=keep_sample)
        missing = sorted(k for k, v in cfg.sets.items() if not (ROOT / v).is_dir())
        metrics = flat_metrics(report)
        metrics["params"] = n_params
        metrics["eval_seconds"] = round(time.perf_counter() - t0, 2)
        table = markdown_table(report, n_params / 1e6, labels)
        write_json(out / "metrics.json", metrics)
        (out / "table.md").write_text(
            "# CAJNN evaluation (PSNR-Y dB / SSIM-Y, border 4 px; runtime = seconds for the whole set)\n\n"
            + table
            + (f"\nSets not present (not fetched): {', '.join(missing)}\n" if missing else "")
            + (f"\nSkipped files: {report.skipped}\n" if report.skipped else "")
        )
        with (out / "qf_curve.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["set", "qf", "method", "psnr_y", "ssim_y"])
            for set_name, per_qf in report.results.items():
                for qf, per_method in sorted(per_qf.items()):
                    for method, r in per_method.items():
                        writer.writerow([set_name, qf, method, f"{r.psnr_y:.4f}", f"{r.ssim_y:.5f}"])

        setup_tracking(params.mlflow, ROOT)
        run_id = read_run_file(ROOT / params.train.out / "run.json")["run_id"]
        client = MlflowClient()
        for key, value in metrics.items():
            client.log_metric(run_id, "eval/" + key.replace("/", "."), float(value))
        for path in [out / "table.md", out / "qf_curve.csv", out / "metrics.json"]:
            client.log_artifact(run_id, str(path), "evaluation")
        client.log_artifacts(run_id, str(samples), "evaluation/samples")
        print(table)
        print(f"[evaluate] metrics in {out / 'metrics.json'}, table in {out / 'table.md'}; logged to run {run_id}")


if __name__ == "__main__":
    main()
