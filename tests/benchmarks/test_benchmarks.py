"""The benchmark scripts run (tiny settings) and count FLOPs right."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_conv_flop_counter_matches_the_paper_network_by_hand():
    import torch

    from cajnn.archs import build_model

    bench = _load("bench_model")
    dense = [64 + 32 * i for i in range(5)]  # dense-block conv inputs; outputs 32, 32, 32, 32, 64
    rrdb = 20 * 3 * 2 * 9 * (sum(c * 32 for c in dense[:4]) + dense[4] * 64)
    lr = 2 * 9 * (3 * 64 + 3 * 64 * 64 + 64 * 64 + 64 * 256) + 2 * 192 * 64  # first, ASPP, trunk, up1
    hr = 2 * 9 * (4 * 64 * 256 + 16 * 64 * 64 + 16 * 64 * 3)  # up2 at 2x, enhancement convs at 4x
    assert rrdb + lr + hr == 31_786_368
    with torch.device("meta"):  # sizes only
        paper, paper_x2 = build_model("paper"), build_model("paper", scale=2)
    assert bench.conv_flops_per_pixel(paper) == 31_786_368
    assert bench.conv_flops_per_pixel(paper_x2) < 31_786_368


def test_bench_model_runs(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_model.py"),
            "--presets",
            "micro",
            "--size",
            "16",
            "--reps",
            "1",
            "--threads",
            "1",
            "--windows",
            "",
            "--memory-size",
            "40x30",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=ENV,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "fraction" in res.stdout and "peak RSS" in res.stdout
    data = json.loads(out.read_text())
    assert {r["layout"] for r in data["rows"]} >= {"channels_last", "contiguous"}
    assert all(r["gflops"] > 0 and r["fraction"] > 0 for r in data["rows"])
    assert data["memory"]["output"] == [160, 120] and data["memory"]["peak_rss"] > 0


def test_gpu_check_runs_on_cpu_quick(tmp_path):
    res = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick", "--reps", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**ENV, "PYTHON": sys.executable, "OUT": str(tmp_path)},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [r["precision"] for r in data["precisions"]] == ["fp32", "bf16"]
    assert all(r["set5_forward_s_median"] > 0 for r in data["precisions"])
    assert len(data["lr_sizes_wh"]) == 5


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_gpu_check_script_is_executable():
    assert os.access(ROOT / "benchmarks" / "gpu_check.sh", os.X_OK)


def test_gpu_train_check_runs_on_cpu_with_tiny_settings(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check_train.py"),
            "--device",
            "cpu",
            "--iterations",
            "1",
            "--warmup",
            "1",
            "--batch",
            "1",
            "--crop",
            "8",
            "--dtype",
            "fp32",
        ],
        env={**ENV, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "gpu_check_train_fp32.json").read_text())
    assert result["iterations_per_s"] > 0 and result["hours_for_1e6_iterations"] > 0


@pytest.mark.integration
def test_bench_train_compares_ray_train_with_a_plain_loop(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_train.py"),
            "--preset",
            "micro",
            "--iterations",
            "6",
            "--batch",
            "2",
            "--crop",
            "8",
            "--rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        env=ENV,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    table = [ln.split() for ln in lines if re.match(r"(plain|Ray Train) +\d+ ", ln)]
    assert [row[0] for row in table] == ["plain", "Ray", "plain"]
    assert all(float(row[-3]) > 0 and float(row[-1]) > 0 for row in table)  # samples/s, s/step
    assert any(ln.startswith("Ray Train / plain per round:") for ln in lines)
    assert any(ln.startswith("Ray Train data wait (median) =") for ln in lines)


def test_sweep_embedded_runs_and_reports_the_three_gains(tmp_path):
    out = tmp_path / "sweep.json"
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "sweep_embedded.py"),
            "--seeds",
            "0",
            "1",
            "--iterations",
            "2",
            "--set",
            "train.model.preset=micro",
            "--set",
            "train.batch_size=2",
            "--set",
            "train.crop=8",
            "--set",
            "degrade.qualities_per_image=1",
            "--init-scale",
            "1",
            "--threads",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert [ln.split(":")[0].strip() for ln in lines[-3:]] == ["QF 10", "QF 20", "QF 40"]
    assert sum(ln.startswith("seed ") for ln in lines) == 2
    data = json.loads(out.read_text())
    assert [r["seed"] for r in data["runs"]] == [0, 1]
    for q in ("10", "20", "40"):
        gains = [r["gain"][q] for r in data["runs"]]
        assert data["summary"][q]["min"] == min(gains) and abs(data["summary"][q]["mean"] - sum(gains) / 2) < 1e-12
