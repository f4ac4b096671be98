"""DVC stage `register`: log the trained model to MLflow as a pyfunc, register a version,
set `challenger`, and promote it to `champion` under the policy in `cajnn.serving.registry`."""

from __future__ import annotations

import json
import re

from cajnn.serving.registry import log_pyfunc, register
from cajnn.tracking import read_run_file, setup_tracking
from pipelines._common import ROOT, stage, write_json

PSNR_KEY = re.compile(r"^(?P<set>[^/]+)/qf(?P<qf>\d+)/cajnn/psnr_y$")


def main() -> None:
    with stage("register") as params:
        cfg = params.register
        run_id = read_run_file(ROOT / params.train.out / "run.json")["run_id"]
        metrics = json.loads((ROOT / params.evaluate.out / "metrics.json").read_text())
        psnr = {k.replace("/cajnn/psnr_y", ""): v for k, v in metrics.items() if PSNR_KEY.match(k)}
        setup_tracking(params.mlflow, ROOT)
        model_uri = log_pyfunc(ROOT / params.evaluate.weights, run_id)
        record = register(model_uri, run_id, psnr, cfg)
        write_json(ROOT / cfg.out, record)
        d = record["decision"]
        print(
            f"[register] {cfg.model_name} version {record['version']} is challenger; "
            f"{'promoted to champion' if d['promote'] else 'champion stays version ' + str(record['champion'])}"
            f" ({d['reason']})"
        )


if __name__ == "__main__":
    main()
