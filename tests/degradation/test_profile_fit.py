"""Fitting a degradation profile to served JPEGs (cajnn/degradation/{quality,double_jpeg,
jpeg_facts,profile_fit}.py, `cajnn profile fit|show`)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cajnn.cli import app
from cajnn.config import DegradeConfig, from_dict
from cajnn.data.sample import load_sample
from cajnn.degradation import jpeg_encode, matlab_imresize
from cajnn.degradation.double_jpeg import double_compression
from cajnn.degradation.jpeg_facts import NotAJpegError, read_jpeg_facts
from cajnn.degradation.profile_fit import fit_profile, read_folder_facts
from cajnn.degradation.quality import STANDARD_LUMA, estimate_quality, ijg_table

SUBSAMPLING_PIL = {"444": 0, "422": 1, "420": 2}


def _photo(name: str = "astronaut", half: bool = True) -> np.ndarray:
    """A sample photo, halved (MATLAB bicubic) so that no JPEG grid of its source survives."""
    img = load_sample(name)
    img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
    return matlab_imresize(img, 0.5) if half else img


def _pillow_jpeg(img: np.ndarray, quality: int, subsampling: str = "420", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=SUBSAMPLING_PIL[subsampling], **kw)
    return buf.getvalue()


# --- quality factor from the tables -----------------------------------------------------------------


def test_ijg_tables_follow_the_standard_scaling():
    assert np.array_equal(ijg_table(50), STANDARD_LUMA)  # scale 100 %
    assert ijg_table(100).max() == 1 and ijg_table(1).min() == 255  # clamped to 1..255 (baseline)
    assert ijg_table(75)[0] == (16 * 50 + 50) // 100  # 8
    assert ijg_table(10, chroma=True)[0] == (17 * 500 + 50) // 100  # 85
    # every quality has its own luma table: the inversion has no ties
    tables = {tuple(ijg_table(q)) for q in range(1, 101)}
    assert len(tables) == 100


@pytest.mark.parametrize("subsampling", ["444", "422", "420"])
def test_every_quality_is_read_exactly_from_libjpeg_turbo_and_pillow_files(subsampling):
    img = _photo("chelsea")[:64, :64]
    for q in range(10, 101):
        for encoder, data in (
            ("turbojpeg", jpeg_encode(img, q, subsampling)),
            ("pillow", _pillow_jpeg(img, q, subsampling)),
        ):
            facts = read_jpeg_facts(data)
            assert (facts.quality.quality, facts.quality.ijg, facts.subsampling) == (q, True, subsampling), (encoder, q)


def test_tables_that_are_not_ijg_scalings_are_flagged_with_the_nearest_quality():
    img = _photo()[:64, :64]
    # 13 % coarser than QF 60 everywhere: close to IJG 55 (scale 90 % against 80 %), not equal to it
    coarser = [[min(255, round(v * 1.13)) for v in ijg_table(60, chroma=c)] for c in (False, True)]
    facts = read_jpeg_facts(_pillow_jpeg_tables(img, coarser))
    assert not facts.quality.ijg
    assert facts.quality.quality == 55 and 0 < facts.quality.residual < 0.02
    flat = read_jpeg_facts(_pillow_jpeg_tables(img, [[8] * 64, [8] * 64]))
    assert not flat.quality.ijg
    est = estimate_quality(ijg_table(80), ijg_table(80, chroma=True))
    assert (est.quality, est.ijg, est.residual) == (80, True, 0.0)


def _pillow_jpeg_tables(img: np.ndarray, tables: list[list[int]]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", qtables=tables, subsampling=2)
    return buf.getvalue()


# --- a second compression -------------------------------------------------------------------------


def test_single_compressed_photos_are_not_read_as_double():
    verdicts = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        img = _photo(name)
        for q in (20, 40, 60, 80):
            verdicts.append(read_jpeg_facts(_pillow_jpeg(img, q)).double.verdict)
    assert verdicts.count("double") == 0 and verdicts.count("single") >= 14, verdicts


def test_a_coarser_first_compression_on_the_same_grid_is_seen():
    for name in ("astronaut", "chelsea", "coffee"):
        img = _photo(name)
        for q1, q2 in ((30, 75), (50, 90), (40, 60)):
            once = np.asarray(Image.open(io.BytesIO(_pillow_jpeg(img, q1))).convert("RGB"))
            facts = read_jpeg_facts(_pillow_jpeg(once, q2))
            assert facts.quality.quality == q2 and facts.double.verdict == "double", (name, q1, q2, facts.double)


def test_what_cannot_be_read_is_unknown_not_single():
    tiny = _photo()[:64, :64]  # 64 blocks
    assert read_jpeg_facts(_pillow_jpeg(tiny, 50)).double.verdict == "unknown"
    assert double_compression(np.zeros((256, 256), np.uint8), ijg_table(99)).verdict == "unknown"  # steps of 1


# --- broken input ---------------------------------------------------------------------------------


def test_files_that_are_not_usable_jpegs_say_why(tmp_path):
    img = _photo()[:128, :128]
    good = _pillow_jpeg(img, 50)
    png = io.BytesIO()
    Image.fromarray(img).save(png, "PNG")
    cmyk = io.BytesIO()
    Image.fromarray(img).convert("CMYK").save(cmyk, "JPEG")
    cases = {
        b"": "not an image",
        b"hello": "not an image",
        good[:400]: "cannot decode",
        png.getvalue(): "not a JPEG (PNG",
        cmyk.getvalue(): "CMYK",
    }
    for data, reason in cases.items():
        with pytest.raises(NotAJpegError, match=reason.replace("(", r"\(")):
            read_jpeg_facts(data)


def test_a_corpus_of_broken_files_is_reported_without_a_crash(tmp_path):
    img = _photo()[:128, :128]
    (tmp_path / "sub").mkdir()
    (tmp_path / "ok.jpg").write_bytes(_pillow_jpeg(img, 50))
    (tmp_path / "sub" / "ok2.jpeg").write_bytes(_pillow_jpeg(img, 70))
    (tmp_path / "cut.jpg").write_bytes(_pillow_jpeg(img, 50)[:300])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("served by the CDN")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    files, skipped = read_folder_facts(tmp_path)
    assert sorted(name for name, _ in files) == ["ok.jpg", "sub/ok2.jpeg"]
    assert {s["file"] for s in skipped} == {"cut.jpg", "empty.jpg", "notes.txt", ".DS_Store"}
    assert all(s["reason"] for s in skipped)
    fit = fit_profile(files, skipped)
    assert fit.evidence["skipped"] == 4 and fit.profile.qf_values == [50, 70]
    with pytest.raises(ValueError, match="no readable JPEG"):
        fit_profile([], skipped)


# --- the fit --------------------------------------------------------------------------------------


def _served_corpus(folder, plan: list[tuple[int, str]], cap: int | None = None) -> None:
    """One file per (quality, subsampling), cycling over sample photos and crops of them, shrunk
    (Pillow, as a platform does) to `cap` on the longest side."""
    sources = [_photo(n, half=False) for n in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")]
    for i, (q, sub) in enumerate(plan):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        img = img[: h - (i % 7) * 9, : w - (i % 5) * 13]  # other shapes, as served images have
        pil = Image.fromarray(img)
        if cap:
            pil.thumbnail((cap, cap), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=q, subsampling=SUBSAMPLING_PIL[sub])
        (folder / f"served-{i:03d}.jpg").write_bytes(buf.getvalue())


def test_fit_recovers_a_mixture_the_subsampling_and_the_cap(tmp_path):
    plan = [(30, "420")] * 20 + [(60, "420")] * 12 + [(85, "422")] * 8  # weights 0.5 / 0.3 / 0.2
    _served_corpus(tmp_path, plan, cap=320)
    files, skipped = read_folder_facts(tmp_path)
    fit = fit_profile(files, skipped)
    p = fit.profile
    assert p.qf_values == [30, 60, 85] and p.qf_weights == pytest.approx([0.5, 0.3, 0.2], abs=0.02)
    assert p.subsampling == "420" and fit.evidence["subsampling"] == {"420": 32, "422": 8}
    assert (p.max_side, p.cap) == (320, "after")
    assert p.compressions == 1 and fit.evidence["quality"]["non_ijg_tables"] == 0


def test_no_cap_is_read_from_uncapped_files_of_many_sizes(tmp_path):
    _served_corpus(tmp_path, [(75, "444")] * 10)
    fit = fit_profile(*read_folder_facts(tmp_path))
    assert fit.profile.max_side is None and fit.profile.subsampling == "444"
    assert fit.profile.qf_values == [75]


def test_cli_fit_writes_a_profile_that_drops_into_degrade_profiles(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    _served_corpus(served, [(40, "420")] * 6 + [(70, "420")] * 4, cap=256)
    (served / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    out = tmp_path / "platform.yaml"
    res = CliRunner().invoke(app, ["profile", "fit", str(served), "-o", str(out), "--name", "myplatform", "-q"])
    assert res.exit_code == 0, res.output
    assert "10 JPEGs read, 1 skipped" in res.output and "40 (60%), 70 (40%)" in res.output
    assert "skipped broken.jpg" in res.output
    doc = yaml.safe_load(out.read_text())
    cfg = from_dict(DegradeConfig, {"profiles": doc["profiles"], "profile": "myplatform"})
    prof = cfg.selected_profile()
    assert (prof.qf_values, prof.max_side, prof.cap) == ([40, 70], 256, "after")
    assert doc["fit"]["skipped_files"][0]["file"] == "broken.jpg" and doc["fit"]["files"] == 10


def test_cli_fit_on_nothing_usable_fails_clearly_and_writes_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    out = tmp_path / "p.yaml"
    res = CliRunner().invoke(app, ["profile", "fit", str(tmp_path), "-o", str(out), "-q"])
    assert res.exit_code == 1 and "no readable JPEG" in res.output and not out.exists()
    res = CliRunner().invoke(app, ["profile", "fit", str(tmp_path / "missing"), "-o", str(out)])
    assert res.exit_code == 1 and "no such folder" in res.output


def test_cli_show(tmp_path):
    f = tmp_path / "x.jpg"
    f.write_bytes(jpeg_encode(_photo()[:200, :240], 42, "422"))
    res = CliRunner().invoke(app, ["profile", "show", str(f), "--tables"])
    assert res.exit_code == 0, res.output
    assert (
        "240x200" in res.output
        and "subsampling 422" in res.output
        and "quality factor: 42 (IJG tables, exact)" in res.output
    )
    assert "luma table:" in res.output
    res = CliRunner().invoke(app, ["profile", "show", str(f), "--json"])
    facts = json.loads(res.output)
    assert facts["quality"]["quality"] == 42 and len(facts["luma_table"]) == 64
    png = tmp_path / "y.jpg"
    Image.fromarray(_photo()[:32, :32]).save(png, "PNG")
    res = CliRunner().invoke(app, ["profile", "show", str(png)])
    assert res.exit_code == 1 and "not a JPEG (PNG image)" in res.output
