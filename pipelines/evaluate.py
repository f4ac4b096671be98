"""DVC stage `evaluate`: the paper's protocol (IV-B) on every evaluation set present.

Writes `reports/metrics.json` (for `dvc metrics`), `reports/table.md` (paper Table I layout),
`reports/qf_curve.csv` and `reports/qf_sweep.csv` (paper Fig. 3; for `dvc plots`),
side-by-side crops and `reports/compare.html` (all of it on one self-contained page, with
before/after sliders), and logs all of it to the training run in MLflow.
"""

from __future__ import annotations

import shutil

from cajnn.evaluation import baseline_methods, read_baselines, run_protocol, write_reports
from cajnn.metrics.keys import MetricKey, model_metric_name
from cajnn.reports.compare import write_compare_page
from cajnn.tracking import RUN_FILE, read_run_file, setup_tracking
from pipelines._common import ROOT, stage


def budgets(run: dict, baselines: dict) -> list[str]:
    """One line per trained model: what it was trained with (a comparison is fair only at equal
    budgets, and the table says what they were)."""

    def line(label: str, r: dict) -> str:
        secs = f", {r['train_seconds']:.0f} s" if r.get("train_seconds") is not None else ""
        return (
            f"- {label}: {r['iterations']} iterations x batch {r['batch_size']} = "
            f"{r['iterations'] * r['batch_size']:,} samples{secs}, {r['params'] / 1e6:.3f} M parameters"
        )

    if not baselines.get("models"):
        return []
    lines = ["Training budgets (same patch shards and recipe):", line("CAJNN", run)]
    for name, m in baselines["models"].items():
        lines.append(
            line(f"{name} ({m['preset']}, {m['task']})", {**m, "batch_size": m["samples"] // max(m["iterations"], 1)})
        )
    return lines


def main() -> None:
    with stage("evaluate") as params:
        from mlflow import MlflowClient

        from cajnn.weights import load_weights

        cfg = params.evaluate
        out = ROOT / cfg.out
        samples = out / "samples"
        if samples.exists():
            shutil.rmtree(samples)
        samples.mkdir(parents=True)
        model = load_weights(ROOT / cfg.weights)
        record = read_baselines(ROOT / params.baselines.out)
        extra = baseline_methods(record, ROOT / params.baselines.out, tile=cfg.tile)
        protocol = run_protocol(model, cfg, ROOT, sample_dir=samples, extra=extra)
        protocol.budgets = budgets(read_run_file(ROOT / params.train.out / RUN_FILE), record)
        metrics = write_reports(protocol, out)
        page_bytes = write_compare_page(protocol, out / "compare.html")

        setup_tracking(params.mlflow, ROOT)
        run_id = read_run_file(ROOT / params.train.out / RUN_FILE)["run_id"]
        client = MlflowClient()
        for key, value in metrics.items():
            client.log_metric(run_id, model_metric_name(key), float(value))
        for name in ("table.md", "qf_curve.csv", "qf_sweep.csv", "metrics.json", "compare.html"):
            client.log_artifact(run_id, str(out / name), "evaluation")
        client.log_artifacts(run_id, str(samples), "evaluation/samples")
        sets = sorted({m.set for k in metrics if (m := MetricKey.parse(k))})
        print(
            f"[evaluate] {len(sets)} set(s) ({', '.join(sets)}) at QF {', '.join(map(str, cfg.qualities))}"
            + (f", with {len(extra)} baseline rows ({', '.join(m.label for m in extra.values())})" if extra else "")
            + ": "
            f"{cfg.out}/table.md, {cfg.out}/metrics.json, {cfg.out}/compare.html ({page_bytes / 2**20:.1f} MiB); "
            f"logged to MLflow run {run_id[:8]}"
        )


if __name__ == "__main__":
    main()
