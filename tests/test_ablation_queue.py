"""End-to-end: the ablation grid as real queued DVC experiments on the micro preset
(`cajnn ablation queue --run`, then `cajnn ablation report`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cajnn.ablation import SETTINGS
from tests.helpers.project import copy_project, project_env, run

pytestmark = pytest.mark.e2e


def test_table_v_from_queued_experiments(degraded_micro, tmp_path):
    project = copy_project(
        degraded_micro, tmp_path, evaluate={"qualities": [10], "self_ensemble": False, "sweep_set": ""}
    )
    cli = [sys.executable, "-m", "cajnn.cli", "ablation"]
    # two of Table V's settings (each queued experiment is a whole micro pipeline up to evaluate)
    out = run(
        [*cli, "queue", "--tables", "V", "--settings", "lambda16,lambda0", "--seeds", "0", "--run"],
        project,
        timeout=900,
    )
    assert "queued 2 experiments" in out and "queue done" in out and "failed" not in out, out
    shown = json.loads(
        subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "show", "--json"],
            cwd=project,
            env=project_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    names = {e.get("name") for row in shown for e in (row.get("experiments") or [])}
    assert {"abl-lambda16-s0", "abl-lambda0-s0"} <= names, names
    # the checkout is not touched by queued experiments
    assert (
        subprocess.run(
            ["git", "status", "--porcelain", "params.yaml", "dvc.lock"], cwd=project, capture_output=True, text=True
        ).stdout
        == ""
    )

    out = run([*cli, "report"], project)
    assert "2 of 8 settings have results" in out, out
    md = (project / "reports" / "ablation.md").read_text()
    for s in SETTINGS:
        row = next(line for line in md.splitlines() if line.startswith(f"| {s.label} |"))
        cells = [c.strip() for c in row.split("|")[1:-1]]
        if s.key in ("lambda16", "lambda0"):
            assert 5 < float(cells[1]) < 60 and cells[5] == "0" and cells[7] == "holdout", row
        else:
            assert cells[1] == "not run", row
