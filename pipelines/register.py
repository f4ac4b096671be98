"""DVC stage `register`: log the trained model to MLflow as a pyfunc, register a version,
set `challenger`, and promote it to `champion` under the policy in `cajnn.serving.registry`.

The challenger's numbers are the evaluate stage's (reports/metrics.json, CAJNN rows without
self-ensemble); the champion is scored again here on the same frozen evaluation sets. Both
models' numbers, the decision and the reason go to the version's tags and to
reports/registry.json.
"""

from __future__ import annotations

import json

from cajnn.serving.registry import log_pyfunc, psnr_from_metrics, register, score_weights, sets_fingerprint
from cajnn.tracking import read_run_file, setup_tracking
from pipelines._common import ROOT, stage, write_json


def main() -> None:
    with stage("register") as params:
        cfg = params.register
        run_id = read_run_file(ROOT / params.train.out / "run.json")["run_id"]
        metrics = json.loads((ROOT / params.evaluate.out / "metrics.json").read_text())
        psnr = psnr_from_metrics(metrics)
        if not psnr:
            raise ValueError(f"{params.evaluate.out}/metrics.json has no CAJNN PSNR-Y rows; rerun the evaluate stage")
        setup_tracking(params.mlflow, ROOT)
        model_uri = log_pyfunc(ROOT / params.evaluate.weights, run_id)
        record = register(
            model_uri, run_id, psnr, cfg,
            scorer=lambda weights: score_weights(weights, params.evaluate, ROOT),
            extra={"eval_sets": sets_fingerprint(params.evaluate, ROOT)},
        )
        write_json(ROOT / cfg.out, record)
        d = record["decision"]
        print(
            f"[register] {cfg.model_name} version {record['version']} is challenger; "
            f"{'promoted to champion' if d['promote'] else 'champion stays version ' + str(record['champion'])}"
            f" ({d['reason']}; champion numbers: {record['champion_psnr_y_source']})"
        )


if __name__ == "__main__":
    main()
