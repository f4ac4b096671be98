"""Crash safety of the train stage: the process is killed halfway (SIGKILL to its whole
process group, Ray included) and started again; training continues from the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from cajnn.config.compose import write_params
from tests.helpers.project import copy_project, project_env, run

pytestmark = pytest.mark.e2e

ITERATIONS = 200
CHECKPOINT_EVERY = 20
KILL_AFTER = 40  # kill once Ray Train has registered a checkpoint at or past this iteration


def _registered(root) -> list[int]:
    """Iterations of the checkpoints Ray Train has registered (its snapshot file)."""
    found = []
    for snap in root.glob("runs/*/checkpoint_manager_snapshot.json"):
        try:
            found += [int(c["metrics"]["iteration"]) for c in json.loads(snap.read_text())["checkpoint_results"]]
        except (ValueError, KeyError):  # being rewritten right now
            continue
    return found


def test_killed_training_resumes_from_last_checkpoint(degraded_micro, tmp_path):
    root = copy_project(degraded_micro, tmp_path)
    # The micro preset sets train.* itself, so the longer schedule goes into the preset file.
    preset = root / "conf" / "preset" / "micro.yaml"
    values = yaml.safe_load(preset.read_text())
    values["train"].update(
        iterations=ITERATIONS, checkpoint_every=CHECKPOINT_EVERY, log_every=5, restart_every=ITERATIONS
    )
    preset.write_text("# @package _global_\n" + yaml.safe_dump(values))
    write_params(root)
    run(["dvc", "repro", "degrade"], root)  # up to date in the copy: the train schedule is not its param

    cmd = [sys.executable, "-m", "pipelines.train"]
    log = tmp_path / "first.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, cwd=root, env=project_env(), stdout=fh, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    killed_after = None
    deadline = time.monotonic() + 300
    try:
        # Worker output stays in Ray's logs; Ray Train's checkpoint registry says how far it is.
        while proc.poll() is None and time.monotonic() < deadline:
            if max(_registered(root), default=0) >= KILL_AFTER:
                killed_after = max(_registered(root))
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    seen = log.read_text().splitlines()
    assert killed_after is not None, "training finished before it could be killed:\n" + "\n".join(seen[-40:])
    assert proc.returncode == -signal.SIGKILL
    assert not (root / "models" / "run.json").exists()
    time.sleep(2)  # let the orphaned Ray processes notice their raylet is gone
    # The last checkpoint Ray Train had registered when the process died (its controller
    # records checkpoints asynchronously, so this may lag the last one the worker wrote).
    last = max(_registered(root))
    assert KILL_AFTER <= last < ITERATIONS

    out = subprocess.run(cmd, cwd=root, env=project_env(), capture_output=True, text=True, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    train_lines = "".join(line + "\n" for line in log.splitlines() if "[train]" in line)
    record = json.loads((root / "models" / "run.json").read_text())
    assert record["resumed_from"] == [last], train_lines[-6000:]  # continued from it, not from 0
    assert f"(resumed at {last})" in log, log[-3000:]  # and said so
    # An uninterrupted run makes exactly ITERATIONS optimizer steps; so did this one, in total.
    assert record["iterations"] == ITERATIONS
    assert record["optimizer_steps"] == ITERATIONS

    # The same MLflow run was resumed, not a second one created.
    run_id = record["run_id"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cajnn").experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert max(steps) == ITERATIONS and last in steps
