"""`cajnn degrade INPUT... OUTDIR` (cajnn/commands/degrade.py): LR test inputs per profile,
every good file done, broken ones reported with reasons, exit code 1 if any was skipped."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, JpegImagePlugin
from typer.testing import CliRunner

from cajnn.cli import app
from cajnn.data.image_io import load_rgb
from cajnn.degradation import jpeg_encode, matlab_imresize, modcrop
from cajnn.degradation.protocol import degrade_for_test
from tests.helpers.image_corpus import BROKEN, build_corpus, photo_like

REPO = Path(__file__).resolve().parents[2]
PARAMS = ["--params", str(REPO / "params.yaml")]


def run(*args: str):
    return CliRunner().invoke(app, ["degrade", *map(str, args)], env={"COLUMNS": "400", "TERMINAL_WIDTH": "400"})


def flat(text: str) -> str:
    """CLI output without rich's box drawing and line wrapping."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "in"
    return folder, build_corpus(folder)


@pytest.fixture()
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo_like(101, 134, 0)).save(folder / "a.png")
    Image.fromarray(photo_like(120, 96, 1)).save(folder / "sub" / "b.png")
    return folder


def report(outdir: Path) -> dict:
    return json.loads((outdir / "degrade_report.json").read_text())


def test_paper_profile_fixed_quality_is_the_test_protocol(photos, tmp_path):
    out = tmp_path / "out"
    res = run(photos, out, "--profile", "paper", "--quality", 20, *PARAMS)
    assert res.exit_code == 0, res.output
    assert "2 degraded" in res.stdout and "0 skipped" in res.stdout
    for rel in ("a", "sub/b"):
        hr = load_rgb(photos / f"{rel}.png")
        expected = degrade_for_test(modcrop(hr, 4), 4, 20, "420")
        np.testing.assert_array_equal(load_rgb(out / f"{rel}.png"), expected)
    rep = report(out)
    assert rep["profile"] == "paper" and rep["quality"] == 20 and rep["skipped"] == []
    entry = next(d for d in rep["done"] if d["file"].endswith("a.png"))
    assert entry["draw"] == "20" and entry["lr_size"] == [33, 25] and entry["hr_size"] == [134, 101]


def test_jpg_format_writes_the_jpeg_bytes(photos, tmp_path):
    out = tmp_path / "out"
    res = run(photos / "a.png", out, "--quality", 35, "--format", "jpg", *PARAMS)
    assert res.exit_code == 0, res.output
    data = (out / "a.jpg").read_bytes()
    lr = matlab_imresize(modcrop(load_rgb(photos / "a.png"), 4), 0.25)
    assert data == jpeg_encode(lr, 35, "420")
    with Image.open(io.BytesIO(data)) as im:
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "degrade_report.json"]


def test_robustness_corpus(corpus, tmp_path):
    folder, names = corpus
    out = tmp_path / "out"
    missing = tmp_path / "nope.png"
    tiny = tmp_path / "tiny.png"
    Image.fromarray(photo_like(3, 30)).save(tiny)  # 3 rows: smaller than the x4 scale
    res = run(folder, missing, tiny, out, "--profile", "messenger", *PARAMS)
    assert res.exit_code == 1  # like cp: the good files are done, the failure is reported
    rep = report(out)
    done = {Path(d["file"]).name for d in rep["done"]}
    assert done == set(names["good"])
    for d in rep["done"]:
        lr = load_rgb(d["output"])
        assert [lr.shape[1], lr.shape[0]] == d["lr_size"]
        assert d["lr_size"][0] <= 144 // 4 and len(d["draw"].split(">")) == 2  # two passes
    reasons = {Path(s["file"]).name: s["reason"] for s in rep["skipped"]}
    assert set(reasons) == set(BROKEN) | {"nope.png", "tiny.png"}
    for name, expected in BROKEN.items():
        assert expected in reasons[name]
        assert f"{name}: " in res.stderr
    assert reasons["nope.png"] == "no such file or folder"
    assert "smaller than the x4 scale" in reasons["tiny.png"]
    assert f"{len(names['good'])} degraded" in res.stdout and f"{len(BROKEN) + 2} skipped" in res.stdout
    # awkward inputs come out as RGB of the right (EXIF-rotated) geometry
    rot = next(d for d in rep["done"] if d["file"].endswith("rotated.jpg"))
    assert rot["hr_size"] == [144, 112]


def test_seed_fixes_the_draws(photos, tmp_path):
    outs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        res = run(photos, tmp_path / name, "--profile", "messenger", "--seed", seed, "--format", "jpg", *PARAMS)
        assert res.exit_code == 0, res.output
        outs[name] = ((tmp_path / name / "a.jpg").read_bytes(), [d["draw"] for d in report(tmp_path / name)["done"]])
    assert outs["a"] == outs["b"]
    assert outs["a"][1] != outs["c"][1]
    assert report(tmp_path / "a")["seed"] == 1


def test_default_seed_and_profile_come_from_params(photos, tmp_path):
    res = run(photos / "a.png", tmp_path / "out", *PARAMS)
    assert res.exit_code == 0, res.output
    rep = report(tmp_path / "out")
    assert rep["profile"] == "paper_lowqf" and rep["seed"] == 0 and rep["quality"] is None
    assert 10 <= rep["done"][0]["quality"] <= 100


def test_without_params_file_uses_builtin_paper(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    res = run(photos / "a.png", "out", "--quality", 50)
    assert res.exit_code == 0, res.output
    assert report(tmp_path / "out")["profile_config"]["resize"] == "matlab_bicubic"
    res = run(photos / "a.png", "out", "--profile", "messenger")
    assert res.exit_code == 2 and "'messenger' is not in degrade.profiles (paper)" in flat(res.output)


def test_custom_params_profile(photos, tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["degrade"]["profiles"]["mine"] = {"scale": 2, "qf_values": [15], "subsampling": "444", "grid_offset": 3}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    res = run(
        photos / "a.png", tmp_path / "out", "--profile", "mine", "--params", tmp_path / "params.yaml", "--save-hr"
    )
    assert res.exit_code == 0, res.output
    d = report(tmp_path / "out")["done"][0]
    assert d["quality"] == 15
    lr, hr = load_rgb(tmp_path / "out" / "LR" / "a.png"), load_rgb(tmp_path / "out" / "HR" / "a.png")
    oy, ox = d["offset"]
    assert lr.shape == (50 - oy, 67 - ox, 3) and hr.shape == (2 * lr.shape[0], 2 * lr.shape[1], 3)
    src = load_rgb(photos / "a.png")
    np.testing.assert_array_equal(hr, src[2 * oy : 100, 2 * ox : 134])


@pytest.mark.parametrize(
    "args, match",
    [
        (["--profile", "nope"], "nope"),
        (["--quality", "0"], "--quality"),
        (["--quality", "101"], "--quality"),
        (["--format", "gif"], "--format"),
    ],
)
def test_bad_options_exit_2(photos, tmp_path, args, match):
    res = run(photos, tmp_path / "out", *args, *PARAMS)
    assert res.exit_code == 2
    assert match in flat(res.output)
    assert not (tmp_path / "out").exists()


def test_bad_params_file_exit_2(photos, tmp_path):
    res = run(photos, tmp_path / "out", "--params", tmp_path / "missing.yaml")
    assert res.exit_code == 2 and "no such parameters file" in flat(res.output)


def test_outdir_inside_input_is_not_read_back(photos):
    out = photos / "lr"
    for _ in range(2):
        res = run(photos, out, "--quality", 30, *PARAMS)
        assert res.exit_code == 0, res.output
        assert len(report(out)["done"]) == 2


def test_same_output_name_is_reported(photos, tmp_path):
    Image.fromarray(photo_like(64, 64, 3)).save(photos / "a.bmp")  # a.png and a.bmp -> a.png
    res = run(photos, tmp_path / "out", "--quality", 30, *PARAMS)
    assert res.exit_code == 1
    rep = report(tmp_path / "out")
    assert len(rep["done"]) == 2
    (skip,) = rep["skipped"]
    assert skip["file"].endswith("a.png") and "same output name as" in skip["reason"]


def test_listed_in_cli_help():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0 and "degrade" in res.output


def test_folder_files_that_are_not_read_are_counted_and_reported(photos, tmp_path):
    (photos / "notes.txt").write_text("x")
    (photos / "sub" / "anim.gif").write_bytes(b"GIF89a")
    (photos / ".DS_Store").write_bytes(b"\0")
    out = tmp_path / "out"
    res = run(photos, out, "--profile", "paper", "--quality", 20, *PARAMS)
    assert res.exit_code == 0, res.output
    assert "2 degraded" in res.stdout
    assert "skipped 2 files that are not images: .gif (1), .txt (1)" in res.stderr
    assert "skipped 1 hidden file" in res.stderr
    assert report(out)["not_read"] == {".gif": 1, ".txt": 1, "hidden": 1}
