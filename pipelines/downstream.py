"""DVC stage `downstream`: does the exported model help programs read text and find tiny faces?
(paper IV-C, Table II; IV-D, Table III). Writes `reports/downstream.json` (DVC metrics) and
`reports/downstream.md` (the tables), and logs both to the training run in MLflow."""

from __future__ import annotations

from cajnn.atomic import write_json_atomic, write_text_atomic
from cajnn.console import progress
from cajnn.downstream.protocol import markdown_report, run_downstream
from cajnn.metrics.keys import DOWNSTREAM_PREFIX, FACES, TEXT, MetricKey, model_metric_name
from cajnn.tracking import RUN_FILE, read_run_file, setup_tracking
from pipelines._common import ROOT, stage


def main() -> None:
    with stage("downstream") as params:
        from mlflow import MlflowClient

        from cajnn.weights import load_weights

        cfg = params.downstream
        out = ROOT / cfg.out
        model = load_weights(ROOT / cfg.weights)
        steps = (1 + len(cfg.qualities)) * (2 if cfg.scenes else 1)  # HR + each QF, for text (and faces)
        with progress(total=steps, desc="[downstream] text + faces", unit="step") as bar:
            result = run_downstream(model, cfg, progress=lambda label: (bar.set_postfix_str(label), bar.update()))
        write_json_atomic(out / "downstream.json", result.metrics)
        write_text_atomic(out / "downstream.md", markdown_report(result, cfg))

        setup_tracking(params.mlflow, ROOT)
        run_id = read_run_file(ROOT / params.train.out / RUN_FILE)["run_id"]
        client = MlflowClient()
        for key, value in result.metrics.items():
            client.log_metric(run_id, model_metric_name(key, DOWNSTREAM_PREFIX), float(value))
        for name in ("downstream.json", "downstream.md"):
            client.log_artifact(run_id, str(out / name), "downstream")
        q = cfg.qualities[0]

        def m(task: str, method: str, metric: str) -> float:
            return result.metrics[MetricKey(task, q, method, metric).format()]

        print(
            f"[downstream] QF {q}: word accuracy LR {m(TEXT, 'lr', 'word_acc'):.1f} % -> CAJNN "
            f"{m(TEXT, 'cajnn', 'word_acc'):.1f} % (HR {result.metrics['text/hr/word_acc']:.1f} %)"
            + (
                f"; face AP (hard) LR {m(FACES, 'lr', 'ap_hard'):.3f} -> CAJNN {m(FACES, 'cajnn', 'ap_hard'):.3f}"
                if cfg.scenes and "hard" in cfg.face_bins
                else ""
            )
            + f"; {cfg.out}/downstream.md; logged to MLflow run {run_id[:8]}"
        )


if __name__ == "__main__":
    main()
