"""What MLflow says about a training run and a registered version, read back through
`MlflowClient` from a real `mlflow server` (sqlite, artifacts in moto S3).

A project copy (micro preset, a git repository) goes through the train stage's run start
(`pipelines.train.start_run`, twice: created, then resumed inside `dvc exp run`), the system
metrics sampler the Ray worker runs, then the real `evaluate` and `register` stages on a known
model. Training itself is left out (minutes); the run file it would write is written here.

The first tests need no server: the run key and the run name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from pipelines.train import code_digest, run_key, run_name

NAME = "cajnn-metadata"
EXPERIMENT = "run-metadata-test"
DVC_EXP = "lucid-gale"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# --------------------------------------------------------------------------- fast parts


def test_run_key_changes_with_the_training_code_only(tmp_path):
    from pipelines.train import CODE_ROOT, TRAIN_CODE

    for rel in TRAIN_CODE:  # a copy of the real training code
        src = CODE_ROOT / rel
        if src.is_dir():
            shutil.copytree(src, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, tmp_path / rel)
    code = code_digest(tmp_path)
    assert code == code_digest(CODE_ROOT)  # the same files, wherever they are
    key = run_key({"iterations": 10}, "m" * 64, code)
    assert key == run_key({"iterations": 10}, "m" * 64, code_digest(tmp_path))

    (tmp_path / "cajnn" / "training" / "notes.txt").write_text("not code")  # no effect
    (tmp_path / "cajnn" / "training" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "cajnn" / "training" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "cajnn" / "serving.py").write_text("# not training code\n")
    assert code_digest(tmp_path) == code

    loss = tmp_path / "cajnn" / "training" / "losses.py"
    loss.write_text(loss.read_text() + "\n# a changed line\n")
    changed = code_digest(tmp_path)
    assert changed != code and run_key({"iterations": 10}, "m" * 64, changed) != key
    (tmp_path / "cajnn" / "archs" / "new_block.py").write_text("X = 1\n")  # a new module counts too
    assert code_digest(tmp_path) not in (code, changed)
    # parameters and data still count
    assert run_key({"iterations": 11}, "m" * 64, code) != key != run_key({"iterations": 10}, "d" * 64, code)


def test_run_name_is_the_dvc_experiment_or_what_was_trained(monkeypatch):
    from cajnn.config import TrainConfig

    cfg = TrainConfig(iterations=1800)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert run_name("embedded", cfg, "7d289b5f0575") == f"embedded-{cfg.model.preset}-1800it-7d289b"
    monkeypatch.setenv("DVC_EXP_NAME", DVC_EXP)
    assert run_name("embedded", cfg, "7d289b5f0575") == DVC_EXP


def test_source_tags_say_commit_entry_point_and_dirty_tree(tmp_path):
    from mlflow.utils import mlflow_tags as mt

    from cajnn.tracking import source_tags

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.email=t@localhost", "-c", "user.name=t", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    assert set(source_tags(tmp_path, tmp_path / "pipelines" / "train.py")) <= {
        mt.MLFLOW_SOURCE_NAME,
        mt.MLFLOW_SOURCE_TYPE,
        mt.MLFLOW_USER,
    }  # not a git repository: no git tags
    git("init", "-q", "-b", "main")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "train.py").write_text("# stage\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python -m pipelines.train\n"
        "    outs:\n      - models/run.json:\n          cache: false\n"
        "    metrics:\n      - reports/metrics.json:\n          cache: false\n"
    )
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "run.json").write_text("{}\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text("{}\n")
    git("add", "-A")
    git("commit", "-qm", "first")
    # what `dvc repro` does to the tree before a stage runs is not a change to the code
    (tmp_path / "data.bin").write_bytes(b"untracked output")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # rewritten after each stage
    (tmp_path / "models" / "run.json").unlink()  # a stage's outputs are deleted before it runs
    (tmp_path / "reports" / "metrics.json").write_text('{"psnr": 1}\n')
    tags = source_tags(tmp_path, tmp_path / "pipelines" / "train.py")
    assert tags[mt.MLFLOW_SOURCE_NAME] == "pipelines/train.py" and tags[mt.MLFLOW_SOURCE_TYPE] == "LOCAL"
    assert tags[mt.MLFLOW_GIT_COMMIT] == git("rev-parse", "HEAD") and tags[mt.MLFLOW_GIT_BRANCH] == "main"
    assert tags["git_dirty"] == tags[mt.MLFLOW_GIT_DIRTY] == "false" and mt.MLFLOW_GIT_REPO_URL not in tags
    (tmp_path / "pipelines" / "train.py").write_text("# stage, changed\n")
    git("remote", "add", "origin", "https://example.org/cajnn.git")
    tags = source_tags(tmp_path, "pipelines/train.py")
    assert tags["git_dirty"] == "true" and tags[mt.MLFLOW_GIT_REPO_URL] == "https://example.org/cajnn.git"
    git("checkout", "-q", "--detach")  # as in a `dvc exp run --temp` checkout: no branch to name
    assert mt.MLFLOW_GIT_BRANCH not in source_tags(tmp_path, "pipelines/train.py")


# --------------------------------------------------------------------------- against the server


def _fake_manifest() -> dict:
    """A patch manifest as the degrade stage writes it (the fields the run start reads)."""
    return {
        "format": "parquet",
        "images": 2,
        "lr_images": 8,
        "patches": 96,
        "patch_size_lr": 24,
        "profile": "paper",
        "qualities_per_image": 4,
        "bytes": 123456,
        "shards": [
            {"source": "sample-train/astronaut.png", "rows": 48},
            {"source": "sample-train/rocket.png", "rows": 48},
        ],
    }


@pytest.fixture(scope="module")
def world(moto_endpoint, request, tmp_path_factory, one_torch_thread):
    """A project copy whose MLflow is the shared server, taken through the train stage's run
    start (created, failed, resumed under a DVC experiment), system metrics, evaluate and
    register."""
    from mlflow import MlflowClient

    from cajnn.tracking import system_metrics, write_run_file
    from tests.helpers.project import make_project
    from tests.helpers.servers import frozen_set, make_weights, mlflow_stack

    stack = mlflow_stack(moto_endpoint, request.config)
    tmp = tmp_path_factory.mktemp("metadata")
    project = make_project(
        tmp,
        preset="micro",
        mlflow={"experiment": EXPERIMENT},
        train={"val_sets": ["frozen/tiny"]},
        evaluate={"sets": {"holdout": "frozen/tiny"}, "qualities": [10, 40], "sweep_set": "", "self_ensemble": True},
        # what the trained model's version says; the shipped seed champion has its own test
        register={"model_name": NAME, "seed_champion": None},
    )
    frozen_set(project)
    (project / "data" / "patches").mkdir(parents=True)
    (project / "data" / "patches" / "manifest.json").write_text(json.dumps(_fake_manifest(), indent=2))
    timings: dict[str, float] = {}

    def python(*args: str, what: str, **env: str) -> str:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, *args], cwd=project, env=stack.env(**env), capture_output=True, text=True, timeout=600
        )
        timings[what] = time.perf_counter() - t0
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
        return proc.stdout

    # The train stage's run start, in a process of its own as the stage runs it (setup_tracking
    # sets MLflow's global active experiment, which would leak into other tests here).
    start = (
        "from pathlib import Path; from cajnn.config import load_params; from pipelines.train import start_run; "
        "r = start_run(load_params('params.yaml'), Path.cwd()); print(r.run_id, r.name)"
    )
    first_id, first_name = python("-c", start, what="run start").split()[-2:]
    client = MlflowClient(
        tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url
    )  # not a registry URI an earlier test set
    client.set_terminated(first_id, "FAILED")  # as a crashed stage leaves it
    run_id, name = python("-c", start, what="resumed run start", DVC_EXP_NAME=DVC_EXP).split()[-2:]

    t0 = time.perf_counter()
    with system_metrics(run_id, stack.mlflow_url, interval=0.5):  # what the Ray worker of rank 0 runs
        # at least 2 s, and until 2 samples are logged (a busy machine delays MLflow's sampler)
        deadline = time.monotonic() + 30
        time.sleep(2.0)
        while time.monotonic() < deadline and (
            len(client.get_metric_history(run_id, "system/system_memory_usage_megabytes")) < 2
        ):
            time.sleep(0.5)
    timings["system metrics"] = time.perf_counter() - t0

    # what training leaves behind: weights (a known model), the run file, a finished run
    weights = make_weights("bilinear", project / "models" / "cajnn.safetensors")
    from cajnn.weights import load_weights

    params = sum(p.numel() for p in load_weights(weights).parameters())
    manifest = _fake_manifest()
    write_run_file(
        project / "models" / "run.json",
        run_id,
        iterations=8,
        optimizer_steps=8,
        params=params,
        exported="last",
        train_key="k",
        resumed_from=[],
        val_psnr_y=24.5,
        run_name=name,
        preset="micro",
        model_preset="micro",
        batch_size=4,
        crop=24,
        data={
            "path": "data/patches",
            "manifest_sha256": "f" * 64,
            "patches": manifest["patches"],
            "images": 2,
            "profile": "paper",
            "patch_size_lr": 24,
            "sources": {"sample-train": 2},
        },
    )
    client.set_terminated(run_id, "FINISHED")
    python("-m", "pipelines.evaluate", what="evaluate stage")
    python("-m", "pipelines.register", what="register stage")
    record = json.loads((project / "reports" / "registry.json").read_text())
    print("\n[metadata] " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    yield {
        "project": project,
        "stack": stack,
        "client": client,
        "run_id": run_id,
        "name": name,
        "first": (first_id, first_name),
        "record": record,
    }


@pytest.mark.integration
def test_run_is_resumed_named_and_tagged_with_its_source(world):
    from mlflow.utils import mlflow_tags as mt

    client, run_id = world["client"], world["run_id"]
    first_id, first_name = world["first"]
    assert run_id == first_id  # the failed run of the same key was resumed, not duplicated
    assert first_name.startswith("micro-micro-") and "it-" in first_name  # outside `dvc exp run`
    run = client.get_run(run_id)
    assert run.info.run_name == world["name"] == DVC_EXP  # renamed after the DVC experiment that resumed it
    tags = run.data.tags
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=world["project"], capture_output=True, text=True
    ).stdout.strip()
    assert tags[mt.MLFLOW_GIT_COMMIT] == head and len(head) == 40
    assert tags[mt.MLFLOW_SOURCE_NAME] == "pipelines/train.py"
    assert tags[mt.MLFLOW_SOURCE_TYPE] == "LOCAL"
    assert tags[mt.MLFLOW_GIT_BRANCH]
    # the copy's tracked files are as committed (data, models and reports are untracked)
    assert tags["git_dirty"] == tags[mt.MLFLOW_GIT_DIRTY] == "false"
    assert tags["dvc_exp"] == DVC_EXP and tags["preset"] == "micro"
    assert tags["stage"] == "train" and len(tags["code_sha256"]) == 64 and len(tags["data_manifest_sha256"]) == 64
    assert run.data.params["train.model.preset"] == "micro"
    assert tags["registry.version"] == f"{NAME}/1"


@pytest.mark.integration
def test_run_inputs_are_the_patch_set_and_the_validation_and_evaluation_sets(world):
    import hashlib

    inputs = world["client"].get_run(world["run_id"]).inputs.dataset_inputs
    by_context = {}
    for di in inputs:
        context = {t.key: t.value for t in di.tags}["mlflow.data.context"]
        by_context.setdefault(context, []).append(di.dataset)
    # logged by both run starts and by register, each dataset once (MLflow keeps one context per
    # dataset and run: the same name and digest logged again is the same input)
    assert sorted((c, d.name) for c, ds in by_context.items() for d in ds) == [
        ("evaluation", "holdout"),
        ("training", "patches"),
        ("validation", "tiny"),
    ]
    patches = by_context["training"][0]
    manifest_sha = hashlib.sha256((world["project"] / "data" / "patches" / "manifest.json").read_bytes()).hexdigest()
    assert patches.digest == manifest_sha[:16]
    assert json.loads(patches.source)["uri"] == str((world["project"] / "data" / "patches").resolve())
    profile = json.loads(patches.profile)
    assert profile["patches"] == 96 and profile["images"] == 2 and profile["sources"] == "sample-train (2 images)"
    val, ev = by_context["validation"][0], by_context["evaluation"][0]
    # the same folder, as in params.yaml's default (validation: its folder's name; evaluation: the set's)
    assert val.digest == ev.digest == world["record"]["eval_sets"]["sets"]["holdout"]["sha256"]
    assert json.loads(ev.profile) == {"images": 2, "qualities": "10, 40"}


@pytest.mark.integration
def test_run_has_system_metrics(world):
    client, run_id = world["client"], world["run_id"]
    metrics = client.get_run(run_id).data.metrics
    system = {k for k in metrics if k.startswith("system/")}
    assert {
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
        "system/system_memory_usage_percentage",
    } <= system, sorted(metrics)
    history = client.get_metric_history(run_id, "system/system_memory_usage_megabytes")
    assert len(history) >= 2 and all(m.value > 0 for m in history)  # sampled every 0.5 s for 2 s


@pytest.mark.integration
def test_version_description_is_a_model_card(world):
    client = world["client"]
    mv = client.get_model_version(NAME, "1")
    text = mv.description
    for section in (
        "# cajnn-metadata version 1",
        "## Architecture",
        "## Training data",
        "## Training",
        "## Evaluation",
        "## Promotion",
    ):
        assert section in text, text
    assert "**Champion** (promoted: first model" in text
    run_file = json.loads((world["project"] / "models" / "run.json").read_text())
    assert "CAJNN (model preset `micro`), x4 super-resolution" in text and f"{run_file['params']:,} parameters" in text
    assert "96 LR/HR patch pairs (24 px LR) from 2 images of sample-train (2 images)" in text
    assert "8 iterations of batch 4 x 24 px LR crops, preset `micro`" in text
    assert f"MLflow run `{DVC_EXP}` ({world['run_id']}), DVC experiment `{DVC_EXP}`, commit `" in text
    assert "| Set | QF | Bicubic | CAJNN | CAJNN (self-ensembled) |" in text
    metrics = json.loads((world["project"] / "reports" / "metrics.json").read_text())
    psnr, ssim = metrics["holdout/qf10/cajnn/psnr_y"], metrics["holdout/qf10/cajnn/ssim_y"]
    assert f"| {psnr:.2f} / {ssim:.4f} |" in text
    assert len(text) <= 5000
    # readable tags, no JSON blobs
    assert mv.tags["promotion"] == "promoted" and mv.tags["promotion_policy"] == "min_gain 0.0 dB, tolerance 0.1 dB"
    assert mv.tags["eval_sets"].startswith("holdout: 2 images, sha256 ") and mv.tags["eval_qualities"] == "10, 40"
    assert not [v for v in mv.tags.values() if v.startswith(("{", "["))], mv.tags


@pytest.mark.integration
def test_logged_model_carries_the_evaluation_metrics(world):
    from cajnn.serving.registry import logged_model_id, recorded_psnr_y

    client = world["client"]
    mv = client.get_model_version(NAME, "1")
    model = client.get_logged_model(logged_model_id(mv))
    assert model.source_run_id == world["run_id"] and world["record"]["model_id"] == model.model_id
    got = {m.key: m for m in model.metrics}
    metrics = json.loads((world["project"] / "reports" / "metrics.json").read_text())
    digest = world["record"]["eval_sets"]["sets"]["holdout"]["sha256"]
    for qf in (10, 40):
        for method in ("cajnn", "cajnn_x8"):
            for metric in ("psnr_y", "ssim_y"):
                m = got[f"eval/holdout.qf{qf}.{method}.{metric}"]
                assert m.value == pytest.approx(metrics[f"holdout/qf{qf}/{method}/{metric}"])
                assert (m.dataset_name, m.dataset_digest) == ("holdout", digest)
    assert not [k for k in got if "bicubic" in k or k.startswith("system/")], sorted(got)
    # what the policy reads back when it does not rescore the champion
    assert recorded_psnr_y(client, mv) == pytest.approx(world["record"]["challenger_psnr_y"])


@pytest.mark.integration
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (headless)")
def test_experiment_page_opens_on_the_training_runs(world, tmp_path):
    """MLflow's UI in headless Chromium: the experiment's page lists the run by its name."""
    exp = world["client"].get_experiment_by_name(EXPERIMENT)
    url = f"{world['stack'].mlflow_url}/#/experiments/{exp.experiment_id}?workflowType=machine_learning"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,900",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert EXPERIMENT in proc.stdout and DVC_EXP in proc.stdout, proc.stdout[-3000:]


def test_version_description_fits_mlflows_limit():
    from types import SimpleNamespace

    from cajnn.config import RegisterConfig
    from cajnn.serving.registry import DESCRIPTION_LIMIT, decide_promotion, model_card, version_description

    def describe(sets: list[str]) -> str:
        rows = [
            (s, q, m, k)
            for s in sets
            for q in (10, 20, 40)
            for m in ("bicubic", "cajnn", "cajnn_x8")
            for k in ("psnr_y", "ssim_y")
        ]
        metrics = {f"{s}/qf{q}/{m}/{k}": 30.0 + i * 0.01 for i, (s, q, m, k) in enumerate(rows)}
        psnr = {f"{s}/qf{q}": metrics[f"{s}/qf{q}/cajnn/psnr_y"] for s in sets for q in (10, 20, 40)}
        champ = {k: v - 0.05 for k, v in psnr.items()}
        cfg = RegisterConfig()
        card = model_card({"nf": 64, "scale": 4}, {"params": 14_900_000, "model_preset": "paper"}, metrics)
        assert card.count("\n| ") == 2 + 3 * len(sets) - 1  # header, separator, one row per set and QF
        return version_description(
            "cajnn",
            "7",
            decide_promotion(psnr, champ, cfg),
            card,
            SimpleNamespace(version="6"),
            champ,
            "rescored on the frozen evaluation sets",
            psnr,
            cfg,
        )

    # the paper's five test sets at three QFs: all of it
    text = describe(["Set5", "Set14", "BSD100", "Urban100", "Manga109"])
    assert len(text) <= DESCRIPTION_LIMIT and "cut to" not in text and "| Urban100 | 40 |" in text
    # far more: the end of the evaluation table is cut, never the verdict or the promotion table
    text = describe([f"set{i:02d}" for i in range(14)])
    assert len(text) <= DESCRIPTION_LIMIT
    assert text.startswith("# cajnn version 7\n\n**Champion** (promoted: mean PSNR-Y")
    assert "cut to MLflow's description limit" in text and "| set13/qf40 |" in text and "| set13 | 40 |" not in text
