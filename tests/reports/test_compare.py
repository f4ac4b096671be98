"""reports/compare.html (cajnn/reports/compare.py) from small synthetic arrays: self-contained,
escaped, the numbers on it; and the crops `run_protocol` keeps for it."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from cajnn.archs import build_model
from cajnn.config import EvaluateConfig
from cajnn.evaluation import Crop, EvalReport, Protocol, SetResult, run_protocol
from cajnn.reports.compare import _ticks, compare_page, write_compare_page

DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def textured(h: int, w: int, seed: int) -> np.ndarray:
    """Gradients, a sinusoid and noise: a picture with detail, different for every seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([60 + 120 * x / w, 200 - 120 * y / h, 128 + 60 * np.sin(x / 3.0 + seed) * np.cos(y / 5.0)], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def result(psnr: float, ssim: float) -> SetResult:
    return SetResult(psnr, ssim, images=2, seconds=0.1)


def synthetic_protocol(set_name: str = "<b>tiny & co</b>", side: int = 48) -> Protocol:
    report = EvalReport()
    report.results[set_name] = {
        10: {"bicubic": result(25.7247, 0.6526), "cajnn": result(25.9757, 0.6687), "cajnn_x8": result(25.99, 0.6695)},
        40: {"bicubic": result(27.7161, 0.7104), "cajnn": result(27.9847, 0.7225), "cajnn_x8": result(28.02, 0.7239)},
    }
    sweep = EvalReport()
    sweep.results[set_name] = {
        qf: {"bicubic": result(25 + qf / 30, 0.6), "cajnn": result(25.3 + qf / 31, 0.61)}
        for qf in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    }
    gt = textured(side, side, 0)
    crops = [
        Crop(
            set_name,
            qf,
            'cat"<img>',
            (4, 8, side),
            {"gt": gt, "bicubic": textured(side, side, qf), "cajnn": textured(side, side, qf + 1)},
        )
        for qf in (10, 40)
    ]
    return Protocol(report, sweep, params=417_000, missing_sets=["Set14"], seconds=1.0, crop_border=4, crops=crops)


def outside_data_uris(page: str) -> str:
    return DATA_URI.sub("data:", page)


def test_page_is_self_contained_and_escaped(tmp_path):
    out = tmp_path / "reports" / "compare.html"
    size = write_compare_page(synthetic_protocol(), out)
    page = out.read_text(encoding="ascii")  # non-ASCII is written as character references
    assert size == out.stat().st_size and not list(out.parent.glob(".*tmp"))
    rest = outside_data_uris(page)
    for ref in ("http://", "https://", 'src="/', "src='/", "url(", "@import", "//cdn"):
        assert ref not in rest, ref
    # every src and href is a data URI or an in-page anchor
    assert set(re.findall(r'\b(?:src|href)="([a-z]*[:#]?)', rest)) <= {"data:", "#"}
    assert "default-src 'none'" in page  # the browser enforces it too
    # a set name and file name from the configuration are text, never markup
    assert "<b>tiny" not in page and "&lt;b&gt;tiny &amp; co&lt;/b&gt;" in page
    assert "<img>" not in page and "cat&quot;&lt;img&gt;" in page


def test_page_has_the_numbers_the_curve_and_the_sliders():
    page = compare_page(synthetic_protocol())
    # Table I: every method's mean scores per QF, and CAJNN's gain over bicubic
    for text in (
        "25.72",
        "0.6526",
        "25.98",
        "0.6687",
        "25.99",
        "0.6695",
        "27.72",
        "28.02",
        "0.7239",
        "+0.25",
        "+0.27",
        "0.417 M parameters",
        "Set14",
    ):
        assert text in page, text
    # Fig. 3 curve: an inline SVG with axes labels and one marker per method and sweep QF
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert "JPEG quality factor (QF)" in svg and "PSNR-Y (dB)" in svg
    assert svg.count("<circle") == 20 and svg.count("<polyline") == 2
    # one slider per crop, each with its three pictures, a labelled range input and the toggle
    assert page.count('<figure class="cmp"') == 2
    assert page.count('type="range"') == 2 and page.count('aria-label="Split between') == 2
    assert page.count('value="gt"') == 2 and page.count("<img") == 6
    assert "<script>" in page and "<script src" not in page


def test_embedded_images_are_the_crops_losslessly():
    protocol = synthetic_protocol()
    uris = DATA_URI.findall(compare_page(protocol))
    decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(u)))) for u in uris]
    crop = protocol.crops[0]
    # per slider: CAJNN underneath, then the left views (bicubic input, ground truth)
    for got, key in zip(decoded[:3], ("cajnn", "bicubic", "gt")):
        np.testing.assert_array_equal(got, crop.images[key])


def test_crop_numbers_are_in_the_caption():
    from cajnn.metrics import psnr_y

    protocol = synthetic_protocol()
    crop = protocol.crops[0]
    page = compare_page(protocol)
    assert f"{psnr_y(crop.images['cajnn'], crop.images['gt'], crop=0):.2f}" in page
    assert "x 8, y 4" in page


def test_page_without_sweep_or_crops():
    protocol = synthetic_protocol()
    protocol.sweep, protocol.crops = None, []
    page = compare_page(protocol)
    assert "<svg" not in page and "No QF sweep" in page and "No crops" in page


@pytest.mark.parametrize(("lo", "hi"), [(25.72, 29.37), (31.0, 31.04), (18.2, 42.9), (27.0, 27.0)])
def test_ticks_cover_the_range_with_round_steps(lo, hi):
    ticks = _ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and len(ticks) <= 8
    steps = {round(b - a, 6) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) <= 1


@pytest.mark.usefixtures("one_torch_thread")
def test_run_protocol_keeps_the_centre_crops(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(textured(72, 100, 1)).save(folder / "a.png")
    Image.fromarray(textured(64, 64, 2)).save(folder / "b.png")
    cfg = EvaluateConfig(
        sets={"tiny": "set"},
        qualities=[10, 40],
        self_ensemble=False,
        sweep_set="tiny",
        sweep_qualities=[10, 40],
        samples=1,
    )
    torch.manual_seed(0)
    samples = tmp_path / "samples"
    samples.mkdir()
    protocol = run_protocol(build_model("micro").eval(), cfg, tmp_path, sample_dir=samples)
    assert [(c.set_name, c.qf, c.stem) for c in protocol.crops] == [("tiny", 10, "a"), ("tiny", 40, "a")]
    for crop in protocol.crops:
        assert crop.box == (0, 12, 72)  # the largest centred square of 72x100, on the LR grid (x 14 -> 12)
        assert {k: v.shape for k, v in crop.images.items()} == {k: (72, 72, 3) for k in ("bicubic", "cajnn", "gt")}
        gt = np.asarray(Image.open(folder / "a.png"))
        np.testing.assert_array_equal(crop.images["gt"], gt[0:72, 12:84])
    # the side-by-side PNGs are written as before
    assert sorted(p.name for p in samples.iterdir()) == ["tiny_qf10_a.png", "tiny_qf40_a.png"]
    assert "<svg" in compare_page(protocol)
