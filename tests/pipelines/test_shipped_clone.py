"""A fresh clone enhances out of the box: `cajnn enhance` with no model option uses the shipped
cpu-base weights committed in the repository (no registry, no `make run`) and says so."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers.project import REPO, project_env, run

pytestmark = pytest.mark.integration


def test_enhance_in_a_fresh_clone_uses_the_shipped_model(tmp_path):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO), str(clone)], tmp_path)  # what is committed, nothing else
    assert not (clone / "mlflow").exists() and not (clone / "models" / "cajnn.safetensors").exists()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (20, 30, 4), dtype=np.uint8), "RGBA").save(
        tmp_path / "in.png"
    )
    env = {**project_env(), "PYTHONPATH": str(clone)}  # the clone's package, not the checkout's
    proc = subprocess.run(
        [sys.executable, "-m", "cajnn.cli", "enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out")],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "model: shipped cpu-base (no registry champion here" in proc.stderr + proc.stdout
    with Image.open(tmp_path / "out" / "in.png") as im:
        assert im.size == (120, 80) and im.mode == "RGBA"
    probe = subprocess.run(
        [sys.executable, "-c", "import cajnn.shipped as s; print(s.weights_path())"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip().startswith(str(clone)), probe.stdout + probe.stderr
