"""Data-parallel training: `train.num_workers: 2` (DDP via Ray Train, gloo on CPU) runs the train
stage, the two replicas stay identical (checked at every checkpoint, logged to MLflow), and a
rerun after the outputs are lost resumes from the run's last checkpoint to the same weights."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
import torch

from cajnn.weights import load_weights
from tests.helpers.project import copy_project, ran, run

pytestmark = pytest.mark.e2e


def test_two_workers_train_consistent_replicas_and_resume(degraded_micro, tmp_path):
    project = copy_project(degraded_micro, tmp_path, train={"num_workers": 2})
    out = run(["dvc", "repro", "train"], project)
    assert "[train] done in" in out and ran(out) == ["train"]  # fetch and degrade: the copy's
    record = json.loads((project / "models" / "run.json").read_text())
    assert record["iterations"] == 12
    with sqlite3.connect(project / "mlflow" / "mlflow.db") as db:
        spread = db.execute(
            "select step, value from metrics where key = 'replica_param_spread' order by step"
        ).fetchall()
    assert spread == [(6, 0.0), (12, 0.0)]  # checked at both checkpoints: the replicas agree
    first = load_weights(project / "models" / "cajnn.safetensors").state_dict()

    shutil.rmtree(project / "models")  # outputs lost: the run's checkpoints are still in runs/
    run(["dvc", "repro", "train"], project)
    again = json.loads((project / "models" / "run.json").read_text())
    assert again["iterations"] == 12 and again["resumed_from"] == [12]  # from the checkpoint, not retrained
    second = load_weights(project / "models" / "cajnn.safetensors").state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
