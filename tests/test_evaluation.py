"""Tests of the evaluation protocol driver (cajnn/evaluation.py) on tiny synthetic sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cajnn.archs import build_model
from cajnn.config import ProfileConfig
from cajnn.degradation import jpeg_compress, matlab_imresize
from cajnn.degradation.protocol import degrade_for_test
from cajnn.evaluation import (
    EvalReport,
    SetResult,
    bicubic_method,
    evaluate_sets,
    flat_metrics,
    markdown_table,
    model_method,
)
from cajnn.metrics import psnr_y

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth gradients + a sinusoid + mild noise: bicubic-friendly, JPEG-sensitive."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([40 + 160 * x / w, 60 + 120 * y / h, 128 + 70 * np.sin(x / 4.0 + seed) * np.cos(y / 6.0)], -1)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def image_set(tmp_path) -> Path:
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(photo(48, 64, 0)).save(folder / "a.png")
    Image.fromarray(photo(50, 66, 1)).save(folder / "b.png")  # not a multiple of 4: modcropped
    return folder


def test_evaluate_sets_structure_and_numbers(image_set):
    bic = bicubic_method(4)
    methods = {"bicubic": bic, "copy": lambda lr: bic(lr).copy()}
    seen = []
    report = evaluate_sets(methods, {"tiny": image_set}, [10, 40], on_image=lambda *a: seen.append(a))
    assert isinstance(report, EvalReport)
    assert report.skipped == []
    assert list(report.results) == ["tiny"]
    assert sorted(report.results["tiny"]) == [10, 40]
    for qf in (10, 40):
        per_method = report.results["tiny"][qf]
        assert sorted(per_method) == ["bicubic", "copy"]
        for r in per_method.values():
            assert isinstance(r, SetResult)
            assert r.images == 2 and r.seconds >= 0
            assert 10 < r.psnr_y < 60 and 0 < r.ssim_y <= 1
        # a method returning the same pixels scores exactly the same
        assert per_method["copy"].psnr_y == per_method["bicubic"].psnr_y
        assert per_method["copy"].ssim_y == per_method["bicubic"].ssim_y
    r10, r40 = report.results["tiny"][10]["bicubic"], report.results["tiny"][40]["bicubic"]
    assert r40.psnr_y > r10.psnr_y
    assert r40.ssim_y > r10.ssim_y

    # on_image: once per image and QF, with the LR input and the modcropped ground truth
    assert len(seen) == 4
    shapes = {(s[1], s[2]): (s[3].shape, s[4]["gt"].shape) for s in seen}
    assert shapes[(10, "a")] == ((12, 16, 3), (48, 64, 3))
    assert shapes[(40, "b")] == ((12, 16, 3), (48, 64, 3))
    assert all(set(s[4]) == {"gt", "bicubic", "copy"} for s in seen)


def test_scores_follow_the_protocol(image_set):
    """Recompute one image's bicubic PSNR-Y by hand: modcrop, shrink, JPEG 4:2:0, upscale."""
    report = evaluate_sets({"bicubic": bicubic_method(4)}, {"s": image_set}, [20])
    expected = []
    for name in ("a.png", "b.png"):
        hr = np.asarray(Image.open(image_set / name).convert("RGB"))
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        lr = jpeg_compress(matlab_imresize(hr, 0.25), 20, "420")
        expected.append(psnr_y(matlab_imresize(lr, 4.0), hr, crop=4))
    assert report.results["s"][20]["bicubic"].psnr_y == pytest.approx(np.mean(expected), abs=1e-9)


def test_better_method_scores_higher(image_set):
    bic = bicubic_method(4)
    methods = {"bicubic": bic, "gray": lambda lr: np.full_like(bic(lr), 128)}
    report = evaluate_sets(methods, {"s": image_set}, [40])
    r = report.results["s"][40]
    assert r["bicubic"].psnr_y > r["gray"].psnr_y + 3


def test_profile_subsampling_used(image_set):
    bic = bicubic_method(4)
    r420 = evaluate_sets({"b": bic}, {"s": image_set}, [30])
    r444 = evaluate_sets({"b": bic}, {"s": image_set}, [30], profile=ProfileConfig(subsampling="444"))
    assert r420.results["s"][30]["b"].psnr_y != r444.results["s"][30]["b"].psnr_y


def test_degrade_for_test_shape():
    hr = photo(48, 64, 0)
    lr = degrade_for_test(hr, 4, 10)
    assert lr.shape == (12, 16, 3) and lr.dtype == np.uint8


def test_flat_metrics_keys(image_set):
    bic = bicubic_method(4)
    report = evaluate_sets({"bicubic": bic, "copy": lambda lr: bic(lr).copy()}, {"set": image_set}, [10, 40])
    flat = flat_metrics(report)
    expected = {f"set/qf{qf}/{m}/{k}" for qf in (10, 40) for m in ("bicubic", "copy") for k in ("psnr_y", "ssim_y")}
    assert set(flat) == expected
    assert flat["set/qf10/bicubic/psnr_y"] == round(report.results["set"][10]["bicubic"].psnr_y, 4)
    assert flat["set/qf40/copy/ssim_y"] == round(report.results["set"][40]["copy"].ssim_y, 5)
    assert all(isinstance(v, float) for v in flat.values())


def test_markdown_table(image_set):
    bic = bicubic_method(4)
    report = evaluate_sets({"bicubic": bic, "copy": lambda lr: bic(lr).copy()}, {"tiny": image_set}, [10, 40])
    md = markdown_table(report, 1.2345, {"bicubic": "Bicubic", "copy": "Copy"})
    lines = md.strip().splitlines()
    assert lines[0].startswith("| QF | Method | Params (M) |") and "tiny PSNR / SSIM" in lines[0]
    assert lines[1].startswith("|---|")
    rows = lines[2:]
    assert len(rows) == 2 * 2  # one row per QF x method
    assert [r.split("|")[1:3] for r in rows] == [
        [" 10 ", " Bicubic "],
        [" 10 ", " Copy "],
        [" 40 ", " Bicubic "],
        [" 40 ", " Copy "],
    ]
    assert rows[0].split("|")[3].strip() == "-"  # bicubic has no parameters
    assert rows[1].split("|")[3].strip() == "1.234"
    r = report.results["tiny"][40]["bicubic"]
    assert f"{r.psnr_y:.2f} / {r.ssim_y:.4f}" in rows[2]
    # every row has as many cells as the header
    assert all(r.count("|") == lines[0].count("|") for r in rows)


def test_markdown_table_missing_method_shows_dash(image_set):
    report = evaluate_sets({"bicubic": bicubic_method(4)}, {"tiny": image_set}, [10])
    md = markdown_table(report, 0.5, {"bicubic": "Bicubic", "cajnn": "CAJNN"})
    row = [line for line in md.splitlines() if "CAJNN" in line][0]
    assert "- | -" in row


def test_corrupt_file_is_skipped(image_set):
    (image_set / "c_bad.png").write_text("garbage")
    (image_set / "d_empty.jpg").write_bytes(b"")
    (image_set / "notes.txt").write_text("ignored: not an image suffix")
    report = evaluate_sets({"bicubic": bicubic_method(4)}, {"s": image_set}, [10])
    skipped = {Path(s["file"]).name: s for s in report.skipped}
    assert set(skipped) == {"c_bad.png", "d_empty.jpg"}
    assert all(s["set"] == "s" and s["reason"] for s in skipped.values())
    assert skipped["d_empty.jpg"]["reason"] == "empty file"
    assert report.results["s"][10]["bicubic"].images == 2


def test_empty_folder_raises(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        evaluate_sets({"bicubic": bicubic_method(4)}, {"empty": tmp_path / "empty"}, [10])


def test_only_corrupt_files_raises(tmp_path):
    (tmp_path / "x.png").write_text("no")
    with pytest.raises(FileNotFoundError, match="no readable images"):
        evaluate_sets({"bicubic": bicubic_method(4)}, {"bad": tmp_path}, [10])


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        evaluate_sets({"bicubic": bicubic_method(4)}, {"gone": tmp_path / "gone"}, [10])


def test_wrong_output_shape_raises(image_set):
    with pytest.raises(RuntimeError, match="half"):
        evaluate_sets({"half": lambda lr: matlab_imresize(lr, 2.0)}, {"s": image_set}, [10])


def test_several_sets(image_set, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(photo(40, 40, 5)).save(other / "z.png")
    report = evaluate_sets({"bicubic": bicubic_method(4)}, {"one": image_set, "two": other}, [10])
    assert list(report.results) == ["one", "two"]
    assert report.results["two"][10]["bicubic"].images == 1
    assert set(flat_metrics(report)) == {
        "one/qf10/bicubic/psnr_y",
        "one/qf10/bicubic/ssim_y",
        "two/qf10/bicubic/psnr_y",
        "two/qf10/bicubic/ssim_y",
    }


def test_model_method(image_set):
    torch.manual_seed(0)
    model = build_model("micro").eval()
    methods = {"cajnn": model_method(model), "se": model_method(model, self_ensemble=True)}
    report = evaluate_sets(methods, {"s": image_set}, [40])
    r = report.results["s"][40]
    assert r["cajnn"].images == 2 and np.isfinite(r["cajnn"].psnr_y)
    assert r["se"].psnr_y != r["cajnn"].psnr_y
