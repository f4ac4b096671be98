"""`cajnn evaluate` on a saved micro model and a synthetic HR folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cajnn.archs import build_model
from cajnn.cli import app
from cajnn.weights import save_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_evaluate_weights_on_a_folder(tmp_path):
    import torch

    torch.manual_seed(0)
    weights = tmp_path / "m.safetensors"
    save_weights(build_model("micro"), weights)
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(hr / f"{i}.png")
    (hr / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--weights",
            str(weights),
            "--set",
            f"toy={hr}",
            "--qualities",
            "10,40",
            "--no-self-ensemble",
            "-o",
            str(out),
            "--params",
            str(tmp_path / "none.yaml"),
        ],
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"toy/qf10/cajnn/psnr_y", "toy/qf40/bicubic/psnr_y"} <= set(metrics)
    assert "toy/qf10/cajnn_x8/psnr_y" not in metrics
    assert "broken.png" in (out / "table.md").read_text()


def test_evaluate_needs_exactly_one_model(tmp_path):
    res = CliRunner().invoke(app, ["evaluate", "-o", str(tmp_path / "o"), "--params", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2
