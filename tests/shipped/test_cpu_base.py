"""The shipped model (cajnn/shipped/cpu-base): present, small, trained on the allowed data only,
and scoring on the held-out photos what its model card says (re-measured here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
from PIL import Image

from cajnn import shipped
from cajnn.data.sample import load_sample
from cajnn.evaluation import bicubic_method, evaluate_sets, model_method
from cajnn.shipped.export import export, gains
from cajnn.weights import load_weights, save_weights

REPO = Path(__file__).resolve().parents[2]
ALLOWED_TRAINING_SOURCES = {"sample", "mate-backgrounds:nature"}  # scikit-image photos + Debian's mate-backgrounds

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cpu_base_is_installed_with_the_package_and_small():
    assert shipped.available() == ["cpu-base"] and shipped.DEFAULT == "cpu-base"
    folder = shipped.weights_path().parent
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert set(files) == {"model.safetensors", "model.json", "card.json", "MODEL_CARD.md"}
    assert sum(files.values()) <= shipped.MAX_BYTES
    pattern = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "cajnn.shipped"
    ]
    assert sorted(p.split("/")[-1] for p in pattern) == sorted(files)  # every file goes into a wheel
    net = load_weights(shipped.weights_path())
    assert sum(p.numel() for p in net.parameters()) == shipped.card()["model"]["params"]


def test_card_says_where_it_came_from_and_it_used_only_the_allowed_data():
    card = shipped.card()
    assert card["preset"] == "cpu-base" and card["retrain"] == "make shipped-model"
    assert card["mlflow_run"]["run_id"] and card["commit"]
    assert card["training"]["iterations"] == card["train_params"]["iterations"] >= 1000
    assert len(card["data"]["manifest_sha256"]) == 64
    folders = card["data"]["folders"]
    assert {f["source"] for f in folders} == ALLOWED_TRAINING_SOURCES
    assert all(len(f["manifest_sha256"]) == 64 and f["images"] > 0 for f in folders)
    md = (shipped.weights_path().parent / shipped.CARD_MD).read_text()
    assert "| holdout | 10 |" in md and card["mlflow_run"]["run_id"] in md and "make shipped-model" in md


def test_held_out_gains_are_what_the_card_says_and_clearly_above_the_embedded_model(tmp_path):
    """chelsea + coffee (never trained on), MATLAB bicubic x1/4 + JPEG 4:2:0, PSNR-Y border 4."""
    for name in ("chelsea", "coffee"):
        Image.fromarray(load_sample(name)).save(tmp_path / f"{name}.png")
    net = load_weights(shipped.weights_path())
    report = evaluate_sets(
        {"bicubic": bicubic_method(4), "cajnn": model_method(net)}, {"holdout": tmp_path}, [10, 20, 40]
    )
    card = shipped.card()["evaluation"]["gain_over_bicubic_db"]
    for qf in (10, 20, 40):
        r = report.results["holdout"][qf]
        measured = r["cajnn"].psnr_y - r["bicubic"].psnr_y
        assert measured == pytest.approx(card[f"holdout/qf{qf}"], abs=0.01), qf
    # the embedded default's 1800 CPU iterations give +0.25 dB at QF 10; cpu-base's hour +0.37
    # (the +0.4 aimed for is not reached: docs/shipped-model.md)
    assert card["holdout/qf10"] >= 0.35


def test_export_writes_the_folder_from_a_pipeline_run_and_refuses_what_is_too_big(tmp_path, monkeypatch):
    from cajnn.archs import build_model

    root = tmp_path / "checkout"
    for rel in ("params.yaml", "models/run.json", "reports/metrics.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((REPO / rel).read_bytes())
    save_weights(build_model("micro"), root / "models" / "cajnn.safetensors")
    out = export(root, "trial", dest=tmp_path / "pkg")
    card = json.loads((out / "card.json").read_text())
    metrics = json.loads((REPO / "reports" / "metrics.json").read_text())
    assert card["evaluation"]["gain_over_bicubic_db"] == gains(metrics)
    assert gains(metrics)["holdout/qf10"] == pytest.approx(
        metrics["holdout/qf10/cajnn/psnr_y"] - metrics["holdout/qf10/bicubic/psnr_y"], abs=1e-4
    )
    assert card["retrain"] == "dvc exp run -S preset=embedded"  # not the shipped preset's own command
    assert load_weights(out / "model.safetensors").config == build_model("micro").config
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import cajnn.shipped.export as ex

    monkeypatch.setattr(ex, "MAX_BYTES", 10)
    with pytest.raises(ValueError, match="a shipped model may add at most"):
        export(root, "trial", dest=tmp_path / "pkg")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the refused export changed nothing
