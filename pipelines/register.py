"""DVC stage `register`: log the trained model to MLflow as a pyfunc, register a version,
set `challenger`, and promote it to `champion` under the policy in `cajnn.serving.registry`.
An empty registry first gets the shipped model (`register.seed_champion`) as its champion, so
the trained model is a challenger from the first run on.

The challenger's numbers are the evaluate stage's (reports/metrics.json, CAJNN rows without
self-ensemble); the champion is scored again here on the same frozen evaluation sets. The
version's description is a model card (architecture, training data, training, evaluation table,
the decision and its numbers); its evaluation metrics are metrics of its logged model; the
evaluation sets are inputs of the training run. The record also goes to reports/registry.json.
"""

from __future__ import annotations

import json

from cajnn.atomic import write_json_atomic
from cajnn.serving.registry import (
    downstream_gate,
    eval_set_datasets,
    log_pyfunc,
    model_card,
    model_metrics_from,
    psnr_from_metrics,
    register,
    score_weights,
    seed_champion,
    sets_fingerprint,
)
from cajnn.tracking import RUN_FILE, log_datasets, read_run_file, setup_tracking
from pipelines._common import ROOT, stage


def main() -> None:
    with stage("register") as params:
        from mlflow import MlflowClient
        from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

        cfg = params.register
        trained = read_run_file(ROOT / params.train.out / RUN_FILE)
        run_id = trained["run_id"]
        metrics = json.loads((ROOT / params.evaluate.out / "metrics.json").read_text())
        psnr = psnr_from_metrics(metrics)
        if not psnr:
            raise ValueError(f"{params.evaluate.out}/metrics.json has no CAJNN PSNR-Y rows; rerun the evaluate stage")
        setup_tracking(params.mlflow, ROOT)
        client = MlflowClient()
        run = client.get_run(run_id)
        sets = sets_fingerprint(params.evaluate, ROOT)
        log_datasets(client, run_id, [(d, "evaluation") for d in eval_set_datasets(params.evaluate, ROOT, sets)])
        scorer = lambda w: score_weights(w, params.evaluate, ROOT)  # noqa: E731
        seeded = seed_champion(cfg.seed_champion, cfg, scorer, sets) if cfg.seed_champion else None
        if seeded:
            print(
                f"[register] empty registry: shipped model {cfg.seed_champion} registered as {cfg.model_name} "
                f"version {seeded['version']}, champion (mean PSNR-Y {seeded['decision']['challenger_mean']:.3f} dB)"
            )
        weights = ROOT / params.evaluate.weights
        card = model_card(
            json.loads(weights.with_suffix(".json").read_text()),
            {
                **trained,
                "run_name": run.info.run_name,
                "commit": run.data.tags.get(MLFLOW_GIT_COMMIT),
                "dirty": run.data.tags.get("git_dirty"),
                "dvc_exp": run.data.tags.get("dvc_exp"),
            },
            metrics,
        )
        model_uri = log_pyfunc(weights, run_id, step=int(trained.get("iterations", 0)))
        gate = None
        if cfg.max_word_acc_drop is not None:
            gate = downstream_gate(
                json.loads((ROOT / params.downstream.out / "downstream.json").read_text()), cfg.max_word_acc_drop
            )
        record = register(
            model_uri,
            run_id,
            psnr,
            cfg,
            gate=gate,
            scorer=scorer,
            card=card,
            model_metrics=model_metrics_from(metrics),
            eval_sets=sets,
        )
        if seeded:
            record["seeded"] = {k: seeded[k] for k in ("version", "run_id", "model_uri", "challenger_psnr_y")}
            record["seeded"]["shipped_model"] = cfg.seed_champion
        write_json_atomic(ROOT / cfg.out, record)
        d = record["decision"]
        print(
            f"[register] {cfg.model_name} version {record['version']} is challenger; "
            f"{'promoted to champion' if d['promote'] else 'champion stays version ' + str(record['champion'])}"
            f" ({d['reason']}; champion numbers: {record['champion_psnr_y_source']})"
        )


if __name__ == "__main__":
    main()
