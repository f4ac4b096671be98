"""End-to-end: the two-stage baselines of Table I through `dvc repro` on the micro preset: each
network trained through Ray Train on the same shards, the chains scored by the evaluate stage
under the same protocol, with their parameters, runtime and budgets in reports/table.md."""

from __future__ import annotations

import json

import pytest

from tests.e2e.project import make_project, ran, run

pytestmark = pytest.mark.slow

MICRO_BASELINES = {  # one chain and the SR-only row (DnCNN's chain is the same code path)
    "enabled": True,
    "models": {"arcnn": {"preset": "arcnn-micro", "task": "car"}, "rrdbnet": {"preset": "rrdbnet-micro", "task": "sr"}},
    "chains": {"arcnn_rrdbnet": ["arcnn", "rrdbnet"]},
}


def test_baselines_train_and_chains_are_scored(tmp_path):
    project = make_project(tmp_path, preset="micro", baselines=MICRO_BASELINES,
                           evaluate={"qualities": [10], "self_ensemble": False, "sweep_set": ""})
    out = run(["dvc", "repro", "evaluate"], project)
    assert ran(out) == ["fetch", "degrade", "train", "baselines", "evaluate"], out
    assert "[baselines] arcnn: arcnn-micro" in out and "with 2 baseline rows" in out, out

    record = json.loads((project / "models" / "baselines" / "baselines.json").read_text())
    assert record["enabled"] and set(record["models"]) == {"arcnn", "rrdbnet"}
    for m in record["models"].values():
        assert m["iterations"] == 12 and m["samples"] == 12 * 4 and m["params"] > 0 and m["train_seconds"] > 0
        assert (project / "models" / "baselines" / m["weights"]).is_file()

    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    for method in ("bicubic", "cajnn", "sr_only", "arcnn_rrdbnet"):
        assert 5 < metrics[f"holdout/qf10/{method}/psnr_y"] < 60, method
    params = record["models"]
    assert metrics["params/arcnn_rrdbnet"] == params["arcnn"]["params"] + params["rrdbnet"]["params"]

    table = (project / "reports" / "table.md").read_text()
    for label in ("Bicubic", "| CAJNN |", "RRDB (SR only)", "ARCNN + RRDB"):
        assert label in table, (label, table)
    assert "s / image" in table and "Training budgets" in table and "arcnn (arcnn-micro, car): 12 iterations" in table

