"""DVC experiments on a fresh clone: a preset switch shows up as the parameters it changes, and
metrics and plots diff against the last commit (its dvc.lock and small outputs are committed)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.helpers.project import REPO, make_project, ran, run

pytestmark = pytest.mark.e2e


def _committed_outputs() -> list[str]:
    """The small `cache: false` outputs the repository commits (what a fresh clone has)."""
    out = subprocess.run(
        ["git", "ls-files", "models", "reports"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "reports/metrics.json" in out and "models/train_curve.csv" in out, out
    return out


def test_exp_run_with_a_preset_lists_effective_params_and_diffs_metrics_and_plots(tmp_path):
    project = make_project(tmp_path, preset="embedded")
    for rel in _committed_outputs():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, project / rel)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "as cloned"], project)

    out = run(["dvc", "exp", "run", "-S", "preset=micro", "-n", "micro-try"], project, timeout=900)
    assert ran(out) == ["fetch", "degrade", "train", "baselines", "evaluate", "downstream", "register"]

    # the preset's values are parameters: both values of what it changed are listed
    diff = json.loads(run(["dvc", "params", "diff", "--json"], project))["params.yaml"]
    assert (diff["preset"]["old"], diff["preset"]["new"]) == ("embedded", "micro")
    assert (diff["train.iterations"]["old"], diff["train.iterations"]["new"]) == (1800, 12)
    assert (diff["train.model.preset"]["old"], diff["train.model.preset"]["new"]) == ("cpu-small", "micro")
    assert "train.lr" not in diff  # unchanged values are not reported

    metrics = json.loads(run(["dvc", "metrics", "diff", "--json"], project))["reports/metrics.json"]
    old_new = metrics["holdout/qf10/cajnn/psnr_y"]
    assert old_new["old"] is not None and old_new["new"] is not None and old_new["old"] != old_new["new"]
    run(["dvc", "plots", "diff", "-o", str(tmp_path / "plots")], project)
    assert "PSNR-Y vs JPEG quality" in (tmp_path / "plots" / "index.html").read_text()

    table = json.loads(run(["dvc", "exp", "show", "--json"], project))
    names = [
        exp.get("name")
        for rev in table
        for exp in [rev, *(e for r in rev.get("experiments") or [] for e in r.get("revs") or [])]
    ]
    assert "micro-try" in names, names
