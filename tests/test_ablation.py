"""The ablation grid's parts (cajnn/ablation.py): the experiments it queues, how results are
read back and averaged, and the report's layout."""

from __future__ import annotations

import pytest

from cajnn.ablation import SETTINGS, collect, queue_args, report, score


def test_settings_are_the_papers_columns():
    assert [s.key for s in SETTINGS if s.table == "IV"] == [
        "base",
        "nonlocal",
        "aspp-upconv",
        "aspp-pixelshuffle",
        "seqatrous",
    ]
    assert [s.paper_psnr for s in SETTINGS if s.table == "V"] == [27.507, 27.627, 27.672]
    from cajnn.archs import build_model

    for s in SETTINGS:  # every setting builds a network
        model = {k.rsplit(".", 1)[1]: v for k, v in s.overrides.items() if k.startswith("train.model.overrides.")}
        build_model("micro", **model)


def test_queue_args():
    base = next(s for s in SETTINGS if s.key == "base")
    args = queue_args(base, 2, ["mlflow.tracking_uri=sqlite:////x/mlflow.db"])
    assert args[:4] == ["--queue", "-n", "abl-base-s2", "-S"] and args[-1] == "evaluate"
    sets = [args[i + 1] for i, a in enumerate(args) if a == "-S"]
    assert sets == [
        "train.seed=2",
        "++train.model.overrides.context=none",
        "++train.model.overrides.upsampler=upconv",
        "++train.model.overrides.global_skip=false",
        "mlflow.tracking_uri=sqlite:////x/mlflow.db",
    ]


def test_score_averages_cajnn_over_the_qfs_of_one_set():
    metrics = {
        "holdout/qf10/cajnn/psnr_y": 25.0,
        "holdout/qf40/cajnn/psnr_y": 27.0,
        "holdout/qf10/bicubic/psnr_y": 1.0,
        "Set5/qf10/cajnn/psnr_y": 30.0,
        "holdout/qf10/cajnn/ssim_y": 0.7,
        "params": 5,
    }
    assert score(metrics) == ("Set5", 30.0)  # the first set by name when none is asked for
    assert score(metrics, "holdout") == ("holdout", 26.0)
    assert score({"params": 3}) is None


def test_collect_averages_seeds_and_lists_every_setting():
    exps = [
        {
            "name": "abl-lambda0-s1",
            "metrics": {"holdout/qf10/cajnn/psnr_y": 26.0},
            "params": {"train": {"iterations": 900}},
        },
        {"name": "abl-lambda0-s0", "metrics": {"holdout/qf10/cajnn/psnr_y": 25.0}},
        {
            "name": "abl-lambda16-s0",
            "metrics": {"holdout/qf10/cajnn/psnr_y": 24.0},
            "params": {"train": {"iterations": 900}},
        },
        {"name": "abl-lambda1-s0", "metrics": {}},  # queued or failed: no result
        {"name": "other-exp", "metrics": {"holdout/qf10/cajnn/psnr_y": 99.0}},
    ]
    rows = {r.setting.key: r for r in collect(exps, "holdout")}
    assert len(rows) == len(SETTINGS)
    assert rows["lambda0"].seeds == [0, 1] and rows["lambda0"].mean == pytest.approx(25.5)
    assert rows["lambda1"].mean is None and rows["base"].mean is None
    md = report(list(rows.values()), "micro")
    assert md.count("| ") > 0 and "## Table IV" in md and "## Table V" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| a: lambda = 16"))
    assert "| 24.000 | -1.500 | 27.507 | -0.165 | 0 | 24.000 | holdout | 900 |" in line
    assert next(ln for ln in md.splitlines() if ln.startswith("| b: lambda = 1")).count("not run") == 1
    for s in SETTINGS:
        assert f"| {s.label} |" in md
