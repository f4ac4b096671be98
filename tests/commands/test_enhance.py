"""`cajnn enhance` end to end on small images with a micro model saved by save_weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cajnn.archs import build_model
from cajnn.cli import app
from cajnn.inference import enhance
from cajnn.weights import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_weights(build_model("micro"), tmp_path_factory.mktemp("w") / "micro.safetensors")


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def cli(*args: str | os.PathLike):
    return CliRunner().invoke(app, ["enhance", *map(str, args)])


def size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def test_folder_with_one_corrupt_file_enhances_the_rest_and_reports_it(tmp_path, weights):
    src = tmp_path / "in"
    write(src / "a.png", rgb(10, 12, 1))
    write(src / "b.jpg", rgb(9, 7, 2), quality=90)
    write(src / "sub" / "c.webp", rgb(8, 11, 3))
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    res = cli(src, "-o", tmp_path / "out", "--weights", weights)
    assert res.exit_code == 1, res.output
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "a.png",
        "b.png",
        "sub/c.png",
    ]  # subfolders kept, no temp files left behind
    assert size(out / "a.png") == (48, 40) and size(out / "b.png") == (28, 36)
    assert size(out / "sub" / "c.png") == (44, 32)
    assert res.output.count("broken.jpg") == 2  # once while running, once in the summary
    assert "3 enhanced" in res.output and "1 failed" in res.output
    assert "notes.txt" not in res.output


def test_output_equals_the_library_call(tmp_path, weights):
    arr = rgb(13, 17, 4)
    write(tmp_path / "x.png", arr)
    res = cli(
        tmp_path / "x.png",
        "-o",
        tmp_path / "o",
        "--weights",
        weights,
        "--tile",
        "8",
        "--overlap",
        "4",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    expected = enhance(arr, load_weights(weights), tile=8, overlap=4, device="cpu")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o" / "x.png")), expected)
    assert "1 enhanced" in res.output and "0 failed" in res.output


def test_exif_orientation_is_applied(tmp_path, weights):
    img = Image.fromarray(rgb(10, 16, 5))  # stored 16 wide x 10 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": shown 10 wide x 16 high
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    res = cli(tmp_path / "rot.jpg", "-o", tmp_path / "o", "--weights", weights)
    assert res.exit_code == 0, res.output
    assert size(tmp_path / "o" / "rot.png") == (40, 64)


def test_name_clashes_get_distinct_outputs(tmp_path, weights):
    write(tmp_path / "d1" / "a.jpg", rgb(6, 6, 1))
    write(tmp_path / "d1" / "a.png", rgb(6, 6, 2))
    write(tmp_path / "d2" / "a.png", rgb(6, 6, 3))
    res = cli(tmp_path / "d1", tmp_path / "d2", "-o", tmp_path / "o", "--weights", weights)
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["a_jpg.png", "a_png.png", "a_png_2.png"]
    assert "name clash" in res.output
    outs = [np.asarray(Image.open(tmp_path / "o" / n)) for n in names]
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[1], outs[2])


def test_refuses_to_overwrite_an_input(tmp_path, weights):
    src = write(tmp_path / "photo.png", rgb(7, 9, 6))
    other = write(tmp_path / "other.jpg", rgb(7, 9, 7))
    before = src.read_bytes()
    res = cli(src, other, "-o", tmp_path, "--weights", weights)
    assert res.exit_code == 1, res.output
    assert "would overwrite an input" in res.output
    assert src.read_bytes() == before
    assert size(tmp_path / "other.png") == (36, 28)  # the other one was still done


def test_outdir_inside_the_input_folder_is_not_rescanned(tmp_path, weights):
    write(tmp_path / "pics" / "p.png", rgb(5, 6, 8))
    for _ in range(2):  # the second run must not enhance the first run's output
        res = cli(tmp_path / "pics", "-o", tmp_path / "pics" / "big", "--weights", weights)
        assert res.exit_code == 0, res.output
        assert "1 enhanced" in res.output
    assert sorted(p.name for p in (tmp_path / "pics" / "big").iterdir()) == ["p.png"]


@pytest.mark.parametrize("fmt, suffix, pil", [("jpeg", ".jpg", "JPEG"), ("webp", ".webp", "WEBP")])
def test_lossy_formats_and_quality(tmp_path, weights, fmt, suffix, pil):
    write(tmp_path / "x.png", rgb(8, 8, 9))
    res = cli(tmp_path / "x.png", "-o", tmp_path / "o", "--weights", weights, "--format", fmt, "--quality", "80")
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "o" / f"x{suffix}") as im:
        assert im.format == pil and im.size == (32, 32)


def test_missing_input_is_reported_while_others_are_done(tmp_path, weights):
    write(tmp_path / "ok.png", rgb(5, 5, 1))
    res = cli(tmp_path / "ok.png", tmp_path / "nope.png", "-o", tmp_path / "o", "--weights", weights)
    assert res.exit_code == 1
    assert "nope.png" in res.output and "no such file" in res.output
    assert (tmp_path / "o" / "ok.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "--model nope: no shipped model 'nope'; shipped models: cpu-base"),
        (["--weights", "{w}", "--model", "models:/cajnn@champion"], "not both"),
        (["--weights", "{tmp}/missing.safetensors"], "cannot load weights"),
        (["--weights", "{w}", "--format", "gif"], "--format 'gif'"),
        (["--weights", "{w}", "--quality", "80"], "--quality applies to --format jpeg or webp"),
        (["--weights", "{w}", "--device", "tpu"], "device 'tpu'"),
        (
            ["--weights", "{w}", "--dtype", "fp16", "--device", "cpu"],
            "fp16 needs a CUDA device; use bf16 or fp32 on CPU",
        ),
        (["--weights", "{w}", "--dtype", "fp8"], "use fp32, bf16 or fp16"),
        (["--weights", "{w}", "--outscale", "0"], "--outscale 0.0: must be a number above 0"),
        (["--weights", "{w}", "--suffix", "a/b"], "must not contain a path separator"),
    ],
)
def test_usage_errors_exit_2_with_a_message(tmp_path, weights, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no mlflow/mlflow.db here: no local champion to fall back on
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write(tmp_path / "x.png", rgb(4, 4))
    args = [a.format(w=weights, tmp=tmp_path) for a in args]
    res = cli(tmp_path / "x.png", "-o", tmp_path / "o", *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not (tmp_path / "o").exists()


@pytest.fixture()
def no_registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no mlflow/mlflow.db here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_no_model_option_and_no_registry_uses_the_shipped_model_and_says_so(tmp_path, no_registry):
    from cajnn import shipped

    write(tmp_path / "x.png", rgb(6, 5))
    res = cli(tmp_path / "x.png", "-o", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert "model: shipped cpu-base (no registry champion here; `make run` makes one)" in res.output
    by_name = cli(tmp_path / "x.png", "-o", tmp_path / "n", "--model", "cpu-base")
    assert by_name.exit_code == 0 and "model: shipped cpu-base" in by_name.output
    expected = enhance(rgb(6, 5), load_weights(shipped.weights_path("cpu-base")), device="cpu")
    for folder in ("o", "n"):
        with Image.open(tmp_path / folder / "x.png") as im:
            np.testing.assert_array_equal(np.asarray(im), expected)


def test_without_shipped_weights_or_registry_it_says_how_to_get_a_model(tmp_path, no_registry, monkeypatch):
    from cajnn import shipped

    monkeypatch.setattr(shipped, "HERE", tmp_path / "nothing-shipped")
    write(tmp_path / "x.png", rgb(4, 4))
    res = cli(tmp_path / "x.png", "-o", tmp_path / "o")
    assert res.exit_code == 2 and "no model: give --weights FILE or --model URI, or run `make run` first" in res.output
    res = cli(tmp_path / "x.png", "-o", tmp_path / "o", "--model", "cpu-base")
    assert res.exit_code == 2 and "shipped models: none (this installation has no shipped weights)" in res.output
    assert not (tmp_path / "o").exists()


def _mlflow_model_dir(root: Path, weights: Path, config_name: str = "micro.json") -> Path:
    """The layout that cajnn.serving.registry.log_pyfunc produces (MLmodel + artifacts/)."""
    (root / "artifacts").mkdir(parents=True)
    (root / "artifacts" / "micro.safetensors").write_bytes(weights.read_bytes())
    (root / "artifacts" / config_name).write_bytes(weights.with_suffix(".json").read_bytes())
    (root / "MLmodel").write_text(
        "flavors:\n  python_function:\n    artifacts:\n"
        f"      config:\n        path: artifacts/{config_name}\n"
        "      weights:\n        path: artifacts/micro.safetensors\n"
    )
    return root


@pytest.mark.parametrize("config_name", ["micro.json", "config.json"])
def test_model_from_a_local_mlflow_model_dir(tmp_path, weights, config_name):
    model_dir = _mlflow_model_dir(tmp_path / "model", weights, config_name)
    arr = rgb(6, 7, 3)
    write(tmp_path / "x.png", arr)
    res = cli(tmp_path / "x.png", "-o", tmp_path / "o", "--model", model_dir)
    assert res.exit_code == 0, res.output
    expected = enhance(arr, load_weights(weights), device="cpu")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o" / "x.png")), expected)


@pytest.fixture
def tracking_store(tmp_path, monkeypatch):
    """A fresh sqlite MLflow store in tmp_path, named by MLFLOW_TRACKING_URI as users do."""
    import mlflow

    monkeypatch.chdir(tmp_path)  # the default artifact root (./mlruns) lands here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(None)  # re-read the environment
    yield
    mlflow.set_tracking_uri(None)


@pytest.mark.usefixtures("tracking_store")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy, inside MLflow
def test_model_from_the_mlflow_registry(tmp_path, weights):
    import mlflow
    from mlflow import MlflowClient

    model_dir = _mlflow_model_dir(tmp_path / "model", weights)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model_dir), "model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "cajnn").version
    MlflowClient().set_registered_model_alias("cajnn", "champion", version)

    write(tmp_path / "x.png", rgb(6, 5, 2))
    res = cli(tmp_path / "x.png", "-o", tmp_path / "o", "--model", "models:/cajnn@champion")
    assert res.exit_code == 0, res.output
    assert size(tmp_path / "o" / "x.png") == (20, 24)

    res = cli(tmp_path / "x.png", "-o", tmp_path / "o2", "--model", "models:/nope@champion")
    assert res.exit_code == 2
    assert "cannot load model 'models:/nope@champion' from MLflow" in res.output
    assert "mlflow.db" in res.output and "nope" in res.output  # names the store and the model


def test_a_file_given_twice_is_enhanced_once(tmp_path, weights):
    write(tmp_path / "in" / "a.png", rgb(5, 5, 1))
    res = cli(tmp_path / "in", tmp_path / "in" / "a.png", "-o", tmp_path / "o", "--weights", weights)
    assert res.exit_code == 0, res.output
    assert "1 enhanced" in res.output and "name clash" not in res.output
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a.png"]


@pytest.mark.parametrize("outscale, expected", [("2", (34, 26)), ("3.5", (60, 46)), ("4", (68, 52)), ("0.5", (9, 7))])
def test_outscale_sizes(tmp_path, weights, outscale, expected):
    write(tmp_path / "x.png", rgb(13, 17, 4))  # 17 wide x 13 high
    res = cli(tmp_path / "x.png", "-o", tmp_path / "o", "--weights", weights, "--outscale", outscale)
    assert res.exit_code == 0, res.output
    assert size(tmp_path / "o" / "x.png") == expected  # round(F * size), halves up: 3.5 * 13 = 45.5 -> 46


def test_outscale_4_is_the_model_output_unchanged(tmp_path, weights):
    arr = rgb(7, 9, 5)
    write(tmp_path / "x.png", arr)
    res = cli(tmp_path / "x.png", "-o", tmp_path / "o", "--weights", weights, "--outscale", "4", "--device", "cpu")
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "o" / "x.png")), enhance(arr, load_weights(weights), device="cpu")
    )


def test_skip_existing_does_no_work_twice(tmp_path, weights, monkeypatch):
    import cajnn.inference

    write(tmp_path / "in" / "a.png", rgb(5, 6, 1))
    write(tmp_path / "in" / "b.jpg", rgb(6, 5, 2))
    calls = []
    real = cajnn.inference.enhance
    monkeypatch.setattr(cajnn.inference, "enhance", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = (tmp_path / "in", "-o", tmp_path / "o", "--weights", weights, "--skip-existing")
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert "2 enhanced" in res.output and "0 skipped" in res.output and len(calls) == 2
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "o").iterdir()}
    write(tmp_path / "in" / "c.png", rgb(4, 4, 3))  # a new input is still done
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert "1 enhanced" in res.output and "2 skipped (output exists)" in res.output and len(calls) == 3
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "o").iterdir() if p.name in stamps} == stamps


def test_files_that_are_not_read_are_counted_in_one_line(tmp_path, weights):
    write(tmp_path / "in" / "a.png", rgb(4, 4, 1))
    write(tmp_path / "in" / "anim.gif", rgb(4, 4, 2))  # GIF is read
    for name in ("notes.txt", "sub/more.txt", "clip.mp4", "README", ".DS_Store"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text("x")
    res = cli(tmp_path / "in", "-o", tmp_path / "o", "--weights", weights)
    assert res.exit_code == 0, res.output
    assert "skipped 4 files that are not images: .txt (2), (no suffix) (1), .mp4 (1)" in res.output
    assert "skipped 1 hidden file" in res.output
    assert "2 enhanced" in res.output and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "anim.png"]


def test_format_auto_keeps_the_input_format(tmp_path, weights):
    write(tmp_path / "in" / "a.png", rgb(4, 5, 1))
    write(tmp_path / "in" / "b.jpg", rgb(4, 5, 2), quality=90)
    write(tmp_path / "in" / "c.jpeg", rgb(4, 5, 3), quality=90)
    write(tmp_path / "in" / "d.webp", rgb(4, 5, 4))
    write(tmp_path / "in" / "e.bmp", rgb(4, 5, 5))
    res = cli(tmp_path / "in", "-o", tmp_path / "o", "--weights", weights, "--format", "auto", "--quality", "90")
    assert res.exit_code == 0, res.output
    formats = {p.name: Image.open(p).format for p in (tmp_path / "o").iterdir()}
    assert formats == {"a.png": "PNG", "b.jpg": "JPEG", "c.jpeg": "JPEG", "d.webp": "WEBP", "e.png": "PNG"}


def test_suffix_is_appended_to_stems_after_any_clash_tag(tmp_path, weights):
    write(tmp_path / "a.jpg", rgb(4, 4, 1))
    write(tmp_path / "a.png", rgb(4, 4, 2))
    write(tmp_path / "b.png", rgb(4, 4, 3))
    res = cli(
        tmp_path / "a.jpg",
        tmp_path / "a.png",
        tmp_path / "b.png",
        "-o",
        tmp_path,
        "--weights",
        weights,
        "--suffix",
        "_x4",
    )
    assert res.exit_code == 0, res.output  # with a suffix, outputs can sit beside their inputs
    assert sorted(p.name for p in tmp_path.glob("*_x4.png")) == ["a_jpg_x4.png", "a_png_x4.png", "b_x4.png"]


def test_quiet_prints_errors_only(tmp_path, weights):
    write(tmp_path / "in" / "ok.png", rgb(4, 4, 1))
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    (tmp_path / "in" / "notes.txt").write_text("x")
    res = cli(tmp_path / "in", "-o", tmp_path / "o", "--weights", weights, "--quiet")
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("failed ") and "bad.png" in lines[0], res.output
    assert (tmp_path / "o" / "ok.png").is_file()
