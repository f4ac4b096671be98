"""`cajnn retrain` end to end: new web-platform data lands in a (moto) S3 bucket; the retrain
checks it, adds it to the data, fine-tunes the registry's champion with the real DVC pipeline
(micro preset, a few iterations; MLflow = a real `mlflow server`), and the register stage
promotes the new version or not per the policy. Nothing new -> nothing runs (timed). A second
retrain while one holds the lock exits at once with a clear message.

The first tests need no server: they cover the parts (folder sources, ETag changes, profile
files, the generated preset, the lock) in milliseconds."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cajnn.config import ConfigError
from cajnn.config.register import RetrainConfig
from cajnn.retrain import (
    EXIT_BUSY,
    RetrainBusy,
    RetrainError,
    build_preset,
    check_source,
    experiment_file,
    load_state,
    parse_profiles,
    retrain_lock,
    write_preset,
)

REPO = Path(__file__).resolve().parents[1]
NAME = "cajnn-retrain"
BUCKET = "cajnn-retrain-web-data"
PREFIX = "incoming/"
TIMINGS = {}


# --------------------------------------------------------------------------- fast parts


def test_folder_source_new_changed_and_ignored_objects(tmp_path):
    src = tmp_path / "src"
    (src / "batch1").mkdir(parents=True)
    (src / "batch1" / "a.png").write_bytes(b"x")
    (src / "notes.txt").write_text("not data")
    (src / ".hidden.png").write_bytes(b"x")
    for rel in ("samples/2026/s1.jpg", "pairs/originals/p.png", "pairs/copies/p.jpg"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    cfg = RetrainConfig(source=str(src))
    state = load_state(tmp_path / "none.json")
    chk = check_source(cfg, state)
    assert chk.new_images == {"batch1/a.png": chk.new_images["batch1/a.png"]} and chk.ignored == ["notes.txt"]
    assert list(chk.new_samples) == ["samples/2026/s1.jpg"]
    assert sorted(chk.new_pairs) == ["pairs/copies/p.jpg", "pairs/originals/p.png"]
    assert chk.summary("profiles.yaml") == "1 new image(s), 1 new served sample(s), 2 new pair file(s)"
    state["seen"][str(src)] = {**chk.new_images, **chk.new_samples, **chk.new_pairs}
    assert not check_source(cfg, state).anything_new
    (src / "profiles.yaml").write_text("profiles: {}\n")
    assert check_source(cfg, state).profiles[0] == "profiles.yaml"
    (src / "batch1" / "a.png").write_bytes(b"changed content")  # new size -> new ETag
    assert "batch1/a.png" in check_source(cfg, state).new_images
    with pytest.raises(RetrainError, match="neither s3"):
        check_source(RetrainConfig(source=str(tmp_path / "missing")), state)


def test_profiles_file_is_validated():
    profiles, use = parse_profiles("profiles:\n  a: {qf_min: 30, qf_max: 60}\n  b: {resize: pillow_lanczos}\n", "p")
    assert set(profiles) == {"a", "b"} and use == "b"
    assert parse_profiles("profiles: {a: {}, b: {}}\ntrain_with: a\n", "p")[1] == "a"
    with pytest.raises(RetrainError, match="qf_min"):
        parse_profiles("profiles: {a: {qf_min: 0}}\n", "p")
    with pytest.raises(RetrainError, match="unknown key"):
        parse_profiles("profile: {a: {}}\n", "p")
    with pytest.raises(RetrainError, match="train_with"):
        parse_profiles("profiles: {a: {}}\ntrain_with: z\n", "p")
    with pytest.raises(ConfigError, match="dotted"):
        RetrainConfig(overrides={"iterations": 5})


def test_generated_preset_overlays_finetune_on_the_base(tmp_path):
    import shutil

    shutil.copytree(REPO / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("retrain.yaml"))
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data" / "web" / "x").mkdir(parents=True)
    (tmp_path / "data" / "web" / "x" / "new.png").write_bytes(b"png")
    for side in ("originals", "copies"):
        (tmp_path / "data" / "web-pairs" / side).mkdir(parents=True)
    cfg = RetrainConfig(overrides={"train.iterations": 7})
    state = {"profiles": {"forum": {"qf_min": 30, "qf_max": 60}}, "train_with": "forum"}
    champion = {
        "nf": 8,
        "num_blocks": 1,
        "growth": 4,
        "scale": 4,
        "context": "aspp",
        "upsampler": "pixelshuffle",
        "global_skip": True,
        "aux_lr_head": False,
        "in_ch": 3,
    }
    gen = build_preset(tmp_path, "micro", cfg, state, "data/retrain/champion-v3/cajnn.safetensors", champion)
    finetune = yaml.safe_load((REPO / "conf" / "preset" / "finetune.yaml").read_text())
    assert gen["preset"] == "retrain"
    assert gen["train"]["iterations"] == 7 and gen["train"]["lr"] == finetune["train"]["lr"]
    assert gen["train"]["init_weights"].endswith("champion-v3/cajnn.safetensors")
    assert gen["train"]["model"] == {"preset": "micro", "overrides": {}}  # the champion is a micro model
    assert gen["degrade"]["patch_size"] == 24  # the base preset's data settings are kept
    # absolute: the experiment runs in a temporary copy that has no downloads
    web, pairs = (tmp_path / "data" / "web").resolve(), (tmp_path / "data" / "web-pairs").resolve()
    assert gen["fetch"]["sources"] == ["sample", f"local:{web}", f"local:{pairs}"]
    assert gen["degrade"]["inputs"] == ["data/raw/sample-train", "data/raw/web"]
    assert gen["degrade"]["pairs"] == ["data/raw/web-pairs"]
    assert gen["degrade"]["profile"] == "forum" and gen["degrade"]["profiles"]["forum"]["qf_min"] == 30
    # a champion of another architecture than the base preset's is rebuilt through overrides
    gen = build_preset(tmp_path, "micro", cfg, state, "w.safetensors", {**champion, "nf": 16})
    assert gen["train"]["model"] == {"preset": "micro", "overrides": {"nf": 16}}
    with pytest.raises(RetrainError, match="new names"):  # a web profile may not redefine params.yaml's
        build_preset(tmp_path, "micro", cfg, {"profiles": {"paper": {"qf_values": [50]}}}, "", None)
    same = {"profiles": {"paper": {"resize": "matlab_bicubic", "qf_min": 10, "qf_max": 100}}}
    assert build_preset(tmp_path, "micro", cfg, same, "", None)["degrade"]["profiles"]["paper"]["qf_max"] == 100

    with pytest.raises(RetrainError, match="preset 'nope'.*known: cpu-base, embedded, finetune, micro, paper"):
        build_preset(tmp_path, "nope", cfg, state, "", None)

    # written: the parameters composed with it load; params.yaml is not touched; an invalid one
    # changes nothing
    params_before = (tmp_path / "params.yaml").read_text()
    params = write_preset(tmp_path, gen, "# test\n")
    assert params.preset == "retrain" and params.train.model.overrides == {"nf": 16}
    assert params.train.iterations == 7 and params.degrade.patch_size == 24 and params.degrade.profile == "forum"
    assert (tmp_path / "params.yaml").read_text() == params_before
    before = (tmp_path / "conf" / "preset" / "retrain.yaml").read_text()
    bad = build_preset(tmp_path, "micro", RetrainConfig(overrides={"train.loss": "l7"}), state, "", None)
    with pytest.raises(RetrainError, match="invalid.*train.loss"):
        write_preset(tmp_path, bad, "# test\n")
    assert (tmp_path / "conf" / "preset" / "retrain.yaml").read_text() == before


def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    with retrain_lock(tmp_path):
        with pytest.raises(RetrainBusy, match=r"another `cajnn retrain` is running \(pid \d+"):
            with retrain_lock(tmp_path, wait=0.2):
                pass
    with retrain_lock(tmp_path):  # released
        pass


# --------------------------------------------------------------------------- the real thing


@pytest.fixture(scope="module")
def world(moto_endpoint, request, tmp_path_factory):
    """A project copy (micro preset) whose retrain source is s3://web-data/incoming/ on moto and
    whose MLflow is the shared server, with a champion (version 1) already registered."""
    import boto3

    from cajnn.config import EvaluateConfig
    from tests.helpers.project import make_project
    from tests.helpers.servers import (
        DUMMY_AWS,
        ensure_bucket,
        frozen_set,
        make_weights,
        mlflow_stack,
        register_weights,
        tracking,
    )

    stack = mlflow_stack(moto_endpoint, request.config)
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    ensure_bucket(s3, BUCKET)
    tmp = tmp_path_factory.mktemp("retrain")
    project = make_project(
        tmp,
        preset="micro",
        mlflow={"experiment": "retrain-test"},
        evaluate={"qualities": [10, 40], "sweep_set": "", "self_ensemble": False},
        register={
            "model_name": NAME,
            "retrain": {
                "source": f"s3://{BUCKET}/{PREFIX}",
                "endpoint_url": moto_endpoint,
                "overrides": {
                    "train.iterations": 8,
                    "train.checkpoint_every": 4,
                    "train.restart_every": 8,
                    "train.log_every": 4,
                },
            },
        },
    )
    frozen_set(tmp)
    cfg = EvaluateConfig(sets={"tiny": "frozen/tiny"}, qualities=[10], self_ensemble=False, sweep_set="")
    with tracking(stack.mlflow_url):
        import mlflow

        mlflow.create_experiment("retrain-test")  # artifacts: the server's S3 store
        first = register_weights(
            make_weights("bilinear", tmp / "w" / "cajnn.safetensors"), NAME, "retrain-test", cfg, tmp
        )
        assert first["version"] == 1 and first["champion"] == 1
        yield {"project": project, "s3": s3, "stack": stack, "env": stack.env(**DUMMY_AWS)}


def _retrain(world, *args, timeout=900) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cajnn.cli", "retrain", *args],
        cwd=world["project"],
        env=world["env"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, time.perf_counter() - t0


def _log(world) -> list[dict]:
    path = world["project"] / "reports" / "retrain.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _png(seed: int, h: int, w: int) -> bytes:
    from PIL import Image

    from cajnn.data.sample import load_sample

    img = load_sample(["rocket", "astronaut"][seed])[40 : 40 + h, 60 : 60 + w]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.e2e
def test_nothing_new_means_nothing_runs_quickly(world):
    proc, wall = _retrain(world, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing new" in proc.stdout and "Running stage" not in proc.stdout
    entry = _log(world)[-1]
    assert entry["status"] == "nothing new" and entry["listed"] == 0
    TIMINGS["empty"] = (entry["check_seconds"], entry["seconds"], wall)
    print(
        f"\n[retrain] no new data: S3 check {entry['check_seconds']:.3f} s, whole retrain() {entry['seconds']:.3f} s, "
        f"`python -m cajnn.cli retrain` process {wall:.1f} s"
    )
    assert entry["check_seconds"] < 5 and wall < 90


@pytest.mark.e2e
def test_a_second_retrain_exits_while_the_first_holds_the_lock(world):
    world["s3"].put_object(Bucket=BUCKET, Key=PREFIX + "2025-06/forum_0001.png", Body=_png(0, 160, 200))
    world["s3"].put_object(Bucket=BUCKET, Key=PREFIX + "2025-06/forum_0002.png", Body=_png(1, 200, 176))
    world["s3"].put_object(
        Bucket=BUCKET,
        Key=PREFIX + "profiles.yaml",
        Body=yaml.safe_dump(
            {
                "profiles": {
                    "forum": {"resize": "pillow_bicubic", "scale": 4, "qf_min": 30, "qf_max": 60, "subsampling": "420"}
                },
                "train_with": "forum",
            }
        ).encode(),
    )
    # what the platform served (a profile is fitted to these) and two real pairs
    from cajnn.data.sample import load_sample
    from tests.helpers.served import png_bytes, served_jpeg

    for i, (name, q) in enumerate([("astronaut", 45), ("rocket", 45), ("coffee", 45), ("chelsea", 70)]):
        world["s3"].put_object(
            Bucket=BUCKET, Key=f"{PREFIX}samples/day1/{i}.jpg", Body=served_jpeg(load_sample(name)[..., :3], 200, q)
        )
    for name, q in (("motorcycle_left", 40), ("immunohistochemistry", 60)):
        world["s3"].put_object(
            Bucket=BUCKET, Key=f"{PREFIX}pairs/originals/{name}.png", Body=png_bytes(load_sample(name)[..., :3])
        )
        side = max(load_sample(name).shape[:2]) // 4
        world["s3"].put_object(
            Bucket=BUCKET, Key=f"{PREFIX}pairs/copies/{name}.jpg", Body=served_jpeg(load_sample(name)[..., :3], side, q)
        )
    with retrain_lock(world["project"] / "data" / "retrain"):
        proc, wall = _retrain(world, timeout=120)
    assert proc.returncode == EXIT_BUSY, proc.stdout + proc.stderr
    assert "another `cajnn retrain` is running" in proc.stderr and "nothing done" in proc.stderr
    assert not (world["project"] / "data" / "web").exists()


@pytest.mark.e2e
def test_new_data_fine_tunes_the_champion_and_registers_per_policy(world):
    from mlflow import MlflowClient

    from cajnn.config import RegisterConfig
    from cajnn.serving.registry import decide_promotion, recorded_psnr_y

    proc, wall = _retrain(world)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert re.findall(r"Running stage '(\w+)'", out) == [
        "fetch",
        "degrade",
        "train",
        "baselines",
        "evaluate",
        "downstream",
        "register",
    ]
    project = world["project"]

    entry = _log(world)[-1]
    assert entry["status"] == "retrained" and entry["version"] == 2 and entry["champion_before"] == 1
    assert entry["new_images"] == ["2025-06/forum_0001.png", "2025-06/forum_0002.png"]
    assert entry["new_samples"] == 4 and entry["new_pair_files"] == 4
    # the profile fitted to the served samples is the one trained with; forum is kept
    assert (
        entry["new_profiles"] == ["forum"] and entry["fitted_profile"] == "served" and entry["train_with"] == "served"
    )
    assert entry["profile"]["name"] == "served" and entry["profile"]["qf_values"] == [45, 70]
    assert entry["profile"]["qf_weights"] == [0.75, 0.25] and entry["profile"]["subsampling"] == "420"
    assert entry["warm_start"].endswith("data/retrain/champion-v1/cajnn.safetensors")
    print(
        f"\n[retrain] new data: pipeline {entry['pipeline_seconds']} s, whole retrain {wall:.0f} s; "
        f"version 2 {'promoted' if entry['promoted'] else 'not promoted'} ({entry['reason']})"
    )

    # a DVC experiment: listed by `dvc exp show`, the checkout's params.yaml and dvc.lock untouched
    name = entry["experiment"]
    status = subprocess.run(
        ["git", "status", "--porcelain", "params.yaml", "dvc.lock"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert status == "" and yaml.safe_load((project / "params.yaml").read_text())["preset"] == "micro"
    shown = json.loads(
        subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "show", "--json"],
            cwd=project,
            capture_output=True,
            text=True,
            check=True,
            env=world["env"],
        ).stdout
    )
    exps = [e for row in shown for e in (row.get("experiments") or []) if e.get("name") == name]
    assert exps, [e.get("name") for row in shown for e in (row.get("experiments") or [])]
    exp_params = exps[0]["revs"][0]["data"]["params"]["params.yaml"]["data"]
    assert exp_params["preset"] == "retrain" and exp_params["degrade"]["profile"] == "served"
    assert exp_params["degrade"]["pairs"] == ["data/raw/web-pairs"]

    # (2) the data: new images, the real pairs and the fitted profile in the experiment's patch set
    run = json.loads(experiment_file(project, name, "models/run.json"))
    assert run["data"]["profile"] == "served" and run["data"]["real_pairs"] == 2
    assert run["data"]["sources"] == {"sample-train": 7, "web": 2, "web-pairs": 2}

    # (3) trained from the champion's weights with the fine-tuning schedule
    record = json.loads(experiment_file(project, name, "reports/registry.json"))
    client = MlflowClient(world["stack"].mlflow_url)
    run_params = client.get_run(record["run_id"]).data.params
    assert run_params["train.init_weights"].endswith("data/retrain/champion-v1/cajnn.safetensors")
    finetune = yaml.safe_load((REPO / "conf" / "preset" / "finetune.yaml").read_text())["train"]
    assert run_params["train.iterations"] == "8" and float(run_params["train.lr"]) == finetune["lr"]
    assert run_params["degrade.profile"] == "served"
    assert "warm start from" in (project / entry["pipeline_log"]).read_text()

    # (4) evaluated and promoted or not exactly per the policy, the champion rescored
    mv = client.get_model_version(NAME, "2")
    chal, champ = recorded_psnr_y(client, mv), record["champion_psnr_y"]
    assert set(chal) == set(champ) == {"holdout/qf10", "holdout/qf40"}
    assert mv.tags["champion_psnr_y_source"] == "rescored on the frozen evaluation sets"
    expected = decide_promotion(chal, champ, RegisterConfig())
    assert expected.promote == entry["promoted"] == (mv.tags["promotion"] == "promoted")
    assert expected.reason == entry["reason"] == mv.tags["promotion_reason"]
    champion = client.get_model_version_by_alias(NAME, "champion").version
    assert champion == ("2" if expected.promote else "1")
    assert client.get_model_version_by_alias(NAME, "challenger").version == "2"

    # (5) recorded: version tags (the profile among them) and the state of what has been seen
    assert mv.tags["retrain.new_images"] == "2" and mv.tags["retrain.new_profiles"] == "forum"
    assert mv.tags["retrain.new_samples"] == "4" and mv.tags["retrain.new_pair_files"] == "4"
    assert mv.tags["retrain.profile"] == "served" and mv.tags["retrain.experiment"] == name
    assert json.loads(mv.tags["retrain.profile_config"])["qf_values"] == [45, 70]
    assert mv.tags["retrain.warm_start"] == "version 1"
    state = json.loads((project / "data" / "retrain" / "state.json").read_text())
    assert len(state["seen"][f"s3://{BUCKET}/{PREFIX}"]) == 11 and state["last_experiment"] == name


@pytest.mark.e2e
def test_after_the_retrain_nothing_is_new_and_a_changed_object_is(world):
    proc, wall = _retrain(world, timeout=120)
    assert proc.returncode == 0 and "nothing new" in proc.stdout, proc.stdout + proc.stderr
    entry = _log(world)[-1]
    assert entry["status"] == "nothing new" and entry["listed"] == 11
    TIMINGS["seen"] = (entry["check_seconds"], entry["seconds"], wall)
    print(
        f"\n[retrain] no new data (11 objects seen): S3 check {entry['check_seconds']:.3f} s, "
        f"whole retrain() {entry['seconds']:.3f} s, process {wall:.1f} s"
    )
    from mlflow import MlflowClient

    assert len(MlflowClient(world["stack"].mlflow_url).search_model_versions(f"name='{NAME}'")) == 2

    world["s3"].put_object(Bucket=BUCKET, Key=PREFIX + "2025-06/forum_0002.png", Body=_png(1, 120, 120))  # new ETag
    proc, _ = _retrain(world, "--check-only", timeout=120)
    assert proc.returncode == 0 and "1 new image(s)" in proc.stdout, proc.stdout + proc.stderr
    assert _log(world)[-1]["new_images"] == ["2025-06/forum_0002.png"]
