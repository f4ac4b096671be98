"""End-to-end: a real `dvc repro` of the five stages (real Ray, real MLflow sqlite store) on
the micro preset, in a temporary copy of the repository."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers.project import REPO, make_project, project_env, ran, run
from tests.helpers.servers import DUMMY_AWS

REPO_VENV = REPO / ".venv"
STAGES = ["fetch", "degrade", "train", "baselines", "evaluate", "downstream", "register"]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("proj"))


@pytest.fixture(scope="module")
def first_repro(project) -> str:
    return run(["dvc", "repro"], project)


def test_repro_runs_all_six_stages_and_writes_outputs(project, first_repro):
    assert ran(first_repro) == STAGES

    from cajnn.weights import load_weights

    model = load_weights(project / "models" / "cajnn.safetensors")
    assert model.config["nf"] == 8  # the micro preset was used

    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    for qf in (10, 20, 40):
        for method in ("bicubic", "cajnn"):
            value = metrics[f"holdout/qf{qf}/{method}/psnr_y"]
            assert 10.0 < value < 60.0
    table = (project / "reports" / "table.md").read_text()
    assert table.count("| CAJNN |") == 3
    # the Table I baselines are off by default: the stage only says so, evaluate has no rows for them
    baselines = json.loads((project / "models" / "baselines" / "baselines.json").read_text())
    assert baselines["enabled"] is False and baselines["models"] == {} and "[baselines] off" in first_repro
    assert "RRDB" not in table and not any("rrdbnet" in k for k in metrics)
    curve = (project / "models" / "train_curve.csv").read_text().splitlines()
    assert curve[0] == "iteration,loss,lr,val_psnr_y,val_ssim_y" and curve[-1].startswith("12,")
    assert curve[-1].split(",")[3]  # validated at the last checkpoint
    sweep = (project / "reports" / "qf_sweep.csv").read_text().splitlines()
    assert sweep[0] == "qf,bicubic,cajnn" and len(sweep) == 11  # QF 10..100 (paper Fig. 3)
    assert "CAJNN (self-ensembled)" in table
    assert len(list((project / "reports" / "samples").glob("holdout_qf*.png"))) == 3
    manifest = json.loads((project / "data" / "patches" / "manifest.json").read_text())
    assert manifest["images"] == 7 and manifest["patches"] > 0 and manifest["skipped"] == []


def test_downstream_stage_writes_tables_and_logs_them_to_mlflow(project, first_repro):
    """The micro preset's downstream: 40 words and 4 face scenes at QF 10 (paper Tables II, III)."""
    from mlflow import MlflowClient

    down = json.loads((project / "reports" / "downstream.json").read_text())
    for cond in ("lr", "bicubic", "cajnn", "cajnn_down"):
        assert 0.0 <= down[f"text/qf10/{cond}/word_acc"] <= 100.0 and down[f"text/qf10/{cond}/ms_per_word"] > 0
    assert down["text/hr/word_acc"] >= 80.0  # the ceiling: the HR words are readable
    for cond in ("hr", "qf10/lr", "qf10/bicubic", "qf10/cajnn"):
        assert 0.0 <= down[f"faces/{cond}/ap_all"] <= 1.0
    assert down["faces/hr/ap_all"] > 0.7
    table = (project / "reports" / "downstream.md").read_text()
    assert "Table II" in table and "Table III" in table and "| Ours + Baseline (CAJNN x4) |" in table
    assert "85.75 %" in table  # the paper's number beside ours
    run_id = json.loads((project / "models" / "run.json").read_text())["run_id"]
    client = MlflowClient(f"sqlite:///{project}/mlflow/mlflow.db")
    run = client.get_run(run_id)
    assert run.data.metrics["downstream/text.qf10.cajnn.word_acc"] == down["text/qf10/cajnn/word_acc"]
    assert {a.path for a in client.list_artifacts(run_id, "downstream")} == {
        "downstream/downstream.json",
        "downstream/downstream.md",
    }


RAY_NOISE = (
    "split(1, equal=True)",
    "TrainingReport",
    "Reporting training result",
    "RayTrainWorker",
    "TrainController",
    "SplitCoordinator",
    "Token authentication",
    "Started a local Ray instance",
    "Progress bars disabled",
    "logging_progress",
    "streaming_executor",
    "INFO mlflow",
)


def test_console_is_short_and_free_of_library_internals(first_repro):
    lines = [line for line in first_repro.splitlines() if line.strip()]
    noisy = [line for line in lines if any(n in line for n in RAY_NOISE)]
    assert not noisy, "\n".join(noisy[:20])
    ours = [line for line in lines if line.startswith("[")]
    assert len(ours) == len(set(ours)), "duplicated lines:\n" + "\n".join(ours)
    for stage_name in STAGES:
        assert f"[{stage_name}] done in" in first_repro
    # a few lines per stage: DVC's own (3-4 per stage), ours, and one bar each for degrade/train
    assert len(lines) <= 12 * len(STAGES), first_repro
    assert "train: 100%" in first_repro and "degrade: 100%" in first_repro


def test_registry_starts_with_the_shipped_champion_and_the_trained_model_challenges_it(project, first_repro):
    """An empty registry gets the shipped cpu-base as version 1 (champion, scored on the same
    sets); the micro model trained here is version 2 and loses to it under the policy."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from cajnn.serving.registry import recorded_psnr_y

    record = json.loads((project / "reports" / "registry.json").read_text())
    assert record["seeded"]["version"] == 1 and record["seeded"]["shipped_model"] == "cpu-base"
    assert "[register] empty registry: shipped model cpu-base registered as cajnn version 1, champion" in first_repro
    assert record["version"] == 2 and record["previous_champion"] == 1
    assert record["champion_psnr_y"] == pytest.approx(record["seeded"]["challenger_psnr_y"], abs=1e-6)  # rescored
    assert record["champion"] == 1 and record["decision"]["promote"] is False  # a few micro iterations lose
    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version_by_alias("cajnn", "champion")
    assert str(mv.version) == "1" and mv.tags["shipped_model"] == "cpu-base"
    assert "# Shipped model" not in mv.description and "Gains over bicubic" in mv.description
    assert recorded_psnr_y(client, mv).keys() == {"holdout/qf10", "holdout/qf20", "holdout/qf40"}
    assert set(client.get_model_version("cajnn", "2").aliases) == {"challenger"}
    run = client.get_run(record["run_id"])
    assert "eval/holdout.qf10.cajnn.psnr_y" in run.data.metrics
    assert run.data.tags["data_manifest_sha256"]

    import base64
    import io

    from PIL import Image

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        pyfunc = mlflow.pyfunc.load_model("models:/cajnn@champion")
    finally:  # MLflow's global URIs would send later tests' clients to this project's store
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)).save(buf, "PNG")
    out = pyfunc.predict(pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode()]}))
    assert (int(out["width"][0]), int(out["height"][0])) == (68, 52)
    img = Image.open(io.BytesIO(base64.b64decode(out["image"][0])))
    assert img.size == (68, 52)


def test_second_repro_is_a_no_op_and_dvc_reports(project, first_repro):
    out = run(["dvc", "repro"], project)
    assert ran(out) == []
    dag = run(["dvc", "dag"], project)
    assert all(s in dag for s in STAGES)
    shown = run(["dvc", "metrics", "show"], project)
    assert "holdout/qf10/cajnn/psnr_y" in shown
    run(["dvc", "plots", "show", "-o", "plots_html"], project)
    html = (project / "plots_html" / "index.html").read_text()
    assert "PSNR-Y vs JPEG quality" in html and "Training loss" in html


def test_changing_a_train_param_reruns_train_and_after_only(project, first_repro):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["seed"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], project)
    assert ran(out) == ["train", "baselines", "evaluate", "downstream", "register"]
    record = json.loads((project / "reports" / "registry.json").read_text())
    assert record["version"] == 3 and "seeded" not in record  # the registry has a champion now
    assert record["decision"]["champion_mean"] is not None  # compared with the champion


def test_cli_enhance_folder_with_a_corrupt_file(project, first_repro, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(project / "data" / "raw" / "sample-holdout" / "chelsea.png", src / "a.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cajnn.cli",
            "enhance",
            str(src),
            "-o",
            str(tmp_path / "out"),
            "--weights",
            str(project / "models" / "cajnn.safetensors"),
            "--tile",
            "64",
        ],
        capture_output=True,
        text=True,
        env=project_env(),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "broken.jpg" in proc.stderr
    from PIL import Image

    assert Image.open(tmp_path / "out" / "a.png").size == (451 * 4, 300 * 4)


def test_cli_enhance_without_a_model_option_uses_the_local_champion(project, first_repro, tmp_path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(2).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    proc = subprocess.run(
        [sys.executable, "-m", "cajnn.cli", "enhance", str(tmp_path / "s.png"), "-o", str(tmp_path / "out")],
        cwd=project,
        capture_output=True,
        text=True,
        env=project_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    champion = json.loads((project / "reports" / "registry.json").read_text())["champion"]
    assert f"the local registry's champion, cajnn version {champion} (sqlite:///mlflow/mlflow.db)" in proc.stderr
    assert Image.open(tmp_path / "out" / "s.png").size == (40, 48)


def test_dvc_push_to_s3_then_pull_into_a_fresh_clone_restores_patches_and_model(
    project, first_repro, moto_endpoint, tmp_path
):
    """Two machines share data and models through a DVC remote: the real S3 protocol (moto)."""
    import boto3

    def dvc(*args: str, cwd: Path) -> str:
        return run(["dvc", *args], cwd, env=DUMMY_AWS)

    boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        **{k.lower(): v for k, v in DUMMY_AWS.items() if k != "AWS_DEFAULT_REGION"},
        region_name="us-east-1",
    ).create_bucket(Bucket="dvc-e2e")

    def use_bucket(cwd: Path) -> None:
        dvc("remote", "add", "-f", "--local", "e2e", "s3://dvc-e2e", cwd=cwd)
        dvc("remote", "modify", "--local", "e2e", "endpointurl", moto_endpoint, cwd=cwd)

    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "after repro", "--allow-empty"], project)
    use_bucket(project)
    dvc("push", "-r", "e2e", cwd=project)
    assert "in sync" in dvc("status", "-c", "-r", "e2e", cwd=project)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "data" / "patches").exists() and not (clone / "models" / "cajnn.safetensors").exists()
    use_bucket(clone)
    dvc("pull", "-r", "e2e", cwd=clone)
    for rel in ("models/cajnn.safetensors", "models/cajnn.json", "data/patches/manifest.json"):
        assert (clone / rel).read_bytes() == (project / rel).read_bytes(), rel
    shards = sorted(p.name for p in (project / "data" / "patches").glob("*.parquet"))
    assert shards and sorted(p.name for p in (clone / "data" / "patches").glob("*.parquet")) == shards
    # the clone has nothing the remote lacks
    assert "in sync" in dvc("status", "-c", "-r", "e2e", cwd=clone)


def test_make_serve_from_a_clean_shell_answers_and_names_bad_requests(project, first_repro):
    """README's serving command (`make serve`) from a shell without the venv on PATH: the
    champion answers a request; a non-image, an empty string and a decompression bomb get 400
    with a message that names the problem, and the server stays up."""
    import base64
    import io
    import os
    import time
    import urllib.error
    import urllib.request

    from PIL import Image

    from tests.helpers.servers import free_port

    (project / ".venv").symlink_to(REPO_VENV)  # the same pinned install: setup finds its stamp
    port = free_port()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    log = (project / "serve.log").open("w")
    proc = subprocess.Popen(
        ["make", "serve", f"SERVE_PORT={port}"],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def post(value) -> tuple[int, dict]:
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[value]]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (project / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, (project / "serve.log").read_text()[-3000:]
                time.sleep(1)
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(buf, "JPEG")
        status, answer = post(base64.b64encode(buf.getvalue()).decode())
        assert status == 200, answer
        pred = answer["predictions"][0]
        assert (pred["width"], pred["height"]) == (120, 80)
        assert Image.open(io.BytesIO(base64.b64decode(pred["image"]))).size == (120, 80)

        bomb = io.BytesIO()
        Image.new("L", (16000, 16000)).save(bomb, "PNG")  # 256 Mpx: over twice Pillow's limit
        for value, expected in (
            (base64.b64encode(b"not an image").decode(), "cannot decode image"),
            ("", "image string is empty"),
            (base64.b64encode(bomb.getvalue()).decode(), "image too large"),
        ):
            status, answer = post(value)
            assert status == 400 and expected in answer["message"] and "row 0" in answer["message"], answer
        assert post(base64.b64encode(buf.getvalue()).decode())[0] == 200  # still serving
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()
