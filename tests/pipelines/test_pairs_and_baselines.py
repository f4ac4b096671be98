"""End-to-end on one micro project (one fetch / degrade / train for both, to keep the suite
short): real pairs (originals + a platform's copies) fetched with `local:`, degraded into the
same shards and manifest and trained on; then the two-stage baselines of Table I, each trained
through Ray Train on those shards, the chains scored by the evaluate stage under the same
protocol, with their parameters, runtime and budgets in reports/table.md."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cajnn.data.sample import load_sample
from cajnn.data.shards import REAL_PAIR
from tests.helpers.project import make_project, ran, run
from tests.helpers.served import served_jpeg as _served

pytestmark = pytest.mark.e2e

MICRO_BASELINES = {  # one chain and the SR-only row (DnCNN's chain is the same code path)
    "enabled": True,
    "models": {"arcnn": {"preset": "arcnn-micro", "task": "car"}, "rrdbnet": {"preset": "rrdbnet-micro", "task": "sr"}},
    "chains": {"arcnn_rrdbnet": ["arcnn", "rrdbnet"]},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(
        tmp_path_factory.mktemp("pairs-baselines"),
        preset="micro",
        fetch={"sources": ["sample", "local:incoming/pairs"]},
        degrade={"pairs": ["data/raw/pairs"]},
        baselines=MICRO_BASELINES,
        evaluate={"qualities": [10], "self_ensemble": False, "sweep_set": ""},
    )


def test_pairs_through_dvc_repro(project):
    incoming = project / "incoming" / "pairs"
    for side in ("originals", "copies"):
        (incoming / side).mkdir(parents=True)
    for name, q in (("rocket", 30), ("motorcycle_right", 55)):
        img = load_sample(name)[..., :3]
        Image.fromarray(img).save(incoming / "originals" / f"{name}.png")
        (incoming / "copies" / f"{name}.jpg").write_bytes(_served(img, max(img.shape[:2]) // 4, q))
    coffee = load_sample("coffee")[..., :3]
    Image.fromarray(coffee).save(incoming / "originals" / "coffee.png")
    (incoming / "copies" / "coffee.jpg").write_bytes(_served(coffee[:, 150:], 110, 40))  # a crop: refused

    out = run(["dvc", "repro", "train"], project)
    assert ran(out) == ["fetch", "degrade", "train"], out
    assert "2 of them real pairs" in out and "[train] done in" in out, out
    manifest = json.loads((project / "data" / "patches" / "manifest.json").read_text())
    pairs = {s["source"]: s for s in manifest["shards"] if s["kind"] == REAL_PAIR}
    assert set(pairs) == {"pairs/rocket", "pairs/motorcycle_right"} and manifest["real_pairs"] == 2
    assert pairs["pairs/rocket"]["qualities"] == "30" and pairs["pairs/motorcycle_right"]["qualities"] == "55"
    assert [s for s in manifest["skipped"] if s["file"] == "pairs/coffee"][0]["reason"].endswith("(cropped or padded?)")
    assert sum(s["kind"] == "synthetic" for s in manifest["shards"]) == 7  # the sample photos as before
    assert json.loads((project / "models" / "run.json").read_text())["iterations"] == 12


def test_baselines_train_and_chains_are_scored(project):
    out = run(["dvc", "repro", "evaluate"], project)  # after the test above: its data, its CAJNN
    assert ran(out) == ["baselines", "evaluate"], out
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
