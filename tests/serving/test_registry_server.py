"""The model registry against a real `mlflow server` (sqlite backend, artifacts in a moto S3
bucket): register -> challenger, the first model becomes champion, a better model is promoted, a
worse one is not, a tie keeps the champion -- each decided on real evaluations of both models on
a frozen set (the champion's weights loaded back from the registry), or on the champion's recorded
numbers when it is not rescored -- and `models:/cajnn@champion` loads and enhances images (pyfunc
and `cajnn enhance`)."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.servers import frozen_set, make_weights, mlflow_stack, register_weights, tracking

pytestmark = pytest.mark.integration
NAME = "cajnn"
EXPERIMENT = "registry-test"


@pytest.fixture(scope="module")
def stack(moto_endpoint, request):
    return mlflow_stack(moto_endpoint, request.config)


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory, one_torch_thread):
    """Client pointed at the server; a tiny frozen evaluation set; the two kinds of weights."""
    from cajnn.config import EvaluateConfig

    root = tmp_path_factory.mktemp("registry")
    frozen_set(root)
    cfg = EvaluateConfig(sets={"tiny": "frozen/tiny"}, qualities=[10, 40], self_ensemble=False, sweep_set="")
    weights = {k: make_weights(k, root / k / "cajnn.safetensors") for k in ("bilinear", "noisy")}
    with tracking(stack.mlflow_url):
        yield {"root": root, "cfg": cfg, "weights": weights, "records": {}}


def _register(env, kind):
    return register_weights(env["weights"][kind], NAME, EXPERIMENT, env["cfg"], env["root"])


def _aliases(version: int) -> set[str]:
    from mlflow import MlflowClient

    return set(MlflowClient().get_model_version(NAME, str(version)).aliases)


def test_first_model_becomes_champion(env):
    rec = _register(env, "noisy")
    env["records"][1] = rec
    assert rec["version"] == 1 and rec["champion"] == 1 and rec["previous_champion"] is None
    assert rec["decision"]["promote"] is True and "first model" in rec["decision"]["reason"]
    assert set(rec["challenger_psnr_y"]) == {"tiny/qf10", "tiny/qf40"}
    assert _aliases(1) == {"champion", "challenger"}


def test_better_model_is_promoted_on_a_fresh_evaluation_not_on_stale_numbers(env):
    from mlflow import MlflowClient

    from cajnn.serving.registry import log_model_metrics, logged_model_id, recorded_psnr_y

    # Stale/forged recorded numbers claiming the champion is excellent must not matter: it is rescored.
    client = MlflowClient()
    v1 = client.get_model_version(NAME, "1")
    forged = {"tiny/qf10/cajnn/psnr_y": 99.0, "tiny/qf40/cajnn/psnr_y": 99.0}
    log_model_metrics(client, v1.run_id, logged_model_id(v1), forged)
    assert recorded_psnr_y(client, v1) == {"tiny/qf10": 99.0, "tiny/qf40": 99.0}
    rec = _register(env, "bilinear")
    env["records"][2] = rec
    assert rec["version"] == 2 and rec["decision"]["promote"] is True, rec["decision"]
    assert rec["champion_psnr_y_source"] == "rescored on the frozen evaluation sets"
    # the rescored champion numbers are the real ones of version 1, not the forged 99 dB
    assert rec["champion_psnr_y"] == pytest.approx(env["records"][1]["challenger_psnr_y"], abs=1e-3)
    assert rec["decision"]["challenger_mean"] > rec["decision"]["champion_mean"] + 1.0
    assert _aliases(2) == {"champion", "challenger"} and _aliases(1) == set()

    mv = client.get_model_version(NAME, "2")
    tags = mv.tags
    assert tags["promotion"] == "promoted" and tags["compared_with"] == "1"
    assert recorded_psnr_y(client, mv) == pytest.approx(rec["challenger_psnr_y"])
    assert tags["promotion_policy"] == "min_gain 0.0 dB, tolerance 0.1 dB"
    assert float(tags["challenger_mean_psnr_y"]) == pytest.approx(rec["decision"]["challenger_mean"], abs=1e-3)
    # the description gives the decision and both models' numbers, key by key
    text = mv.description
    assert text.startswith("# cajnn version 2\n\n**Champion** (promoted: mean PSNR-Y") and "## Promotion" in text
    assert "whose numbers were rescored on the frozen evaluation sets" in text
    a, b = rec["challenger_psnr_y"]["tiny/qf10"], rec["champion_psnr_y"]["tiny/qf10"]
    assert f"| tiny/qf10 | {a:.3f} | {b:.3f} | {a - b:+.3f} |" in text


def test_recorded_numbers_decide_when_the_champion_is_not_rescored(env):
    from mlflow import MlflowClient

    from cajnn.config import RegisterConfig
    from cajnn.serving.registry import log_pyfunc, register, score_weights

    # version 2 (bilinear) is champion; the same weights, judged on version 2's recorded numbers
    client = MlflowClient()
    run = client.create_run(client.get_experiment_by_name(EXPERIMENT).experiment_id)
    metrics = score_weights(env["weights"]["bilinear"], env["cfg"], env["root"])
    name = NAME + "-recorded"
    for version in (1, 2):  # a model of its own, so that the other tests' versions stay as they are
        rec = register(
            log_pyfunc(env["weights"]["bilinear"], run.info.run_id),
            run.info.run_id,
            metrics,
            RegisterConfig(model_name=name, rescore_champion=False),
        )
        assert rec["version"] == version
    assert rec["champion_psnr_y_source"] == "recorded at its registration"
    assert rec["champion_psnr_y"] == pytest.approx(metrics) and rec["decision"]["promote"] is False
    client.set_terminated(run.info.run_id)


def test_worse_model_is_registered_as_challenger_but_not_promoted(env):
    rec = _register(env, "noisy")
    assert rec["version"] == 3 and rec["decision"]["promote"] is False
    assert rec["champion"] == 2 and rec["previous_champion"] == 2
    assert "worse" in rec["decision"]["reason"] and rec["decision"]["worst_drop"] > 0.1
    assert _aliases(3) == {"challenger"} and _aliases(2) == {"champion"}
    from mlflow import MlflowClient

    assert MlflowClient().get_model_version(NAME, "3").tags["promotion"] == "kept champion"


def test_a_tie_keeps_the_champion(env):
    rec = _register(env, "bilinear")  # the same weights as the champion
    assert rec["version"] == 4 and rec["decision"]["promote"] is False
    assert rec["decision"]["challenger_mean"] == pytest.approx(rec["decision"]["champion_mean"], abs=1e-6)
    assert "does not beat" in rec["decision"]["reason"]
    assert _aliases(4) == {"challenger"} and _aliases(2) == {"champion"}


def test_logged_model_is_pinned_safetensors_with_signature_and_example(env, tmp_path):
    import mlflow
    import yaml

    from cajnn.serving.registry import requirements

    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}@champion", dst_path=str(tmp_path))
    files = {p.relative_to(local).as_posix() for p in __import__("pathlib").Path(local).rglob("*") if p.is_file()}
    assert "artifacts/cajnn.safetensors" in files and "artifacts/cajnn.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth", ".cloudpickle"))], files
    assert not [f for f in files if "__pycache__" in f]
    meta = yaml.safe_load(open(f"{local}/MLmodel"))
    assert meta["signature"]["inputs"] and meta["signature"]["params"]
    assert "serving_input_example.json" in files or meta.get("saved_input_example_info")
    reqs = open(f"{local}/requirements.txt").read().split()
    assert set(requirements()) <= set(reqs) and "torch==2.13.0" in reqs


def test_champion_loads_and_enhances_images_of_any_size(env):
    import mlflow
    import pandas as pd
    from PIL import Image

    from cajnn.inference import enhance
    from cajnn.weights import load_weights

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    expected = enhance(img, load_weights(env["weights"]["bilinear"]))  # version 2 is the champion

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    out = model.predict(pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode()]}))
    assert (int(out["width"][0]), int(out["height"][0])) == (68, 52)
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["image"][0]))))
    assert png.shape == (52, 68, 3) and np.array_equal(png, expected)

    # uint8 arrays in -> arrays out; grey and RGBA arrays; a JPEG; several rows at once
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (9, 30, 3), dtype=np.uint8)).save(jpeg, "JPEG", quality=30)
    rows = [img, img[:, :, 0], np.dstack([img, np.full((13, 17), 255, np.uint8)]), jpeg.getvalue()]
    out = model.predict(pd.DataFrame({"image": rows}))
    assert out["image"][0].dtype == np.uint8 and np.array_equal(out["image"][0], expected)
    assert out["image"][1].shape == (52, 68)  # a grey image stays grey
    assert out["image"][2].shape == (52, 68, 4) and np.array_equal(out["image"][2][:, :, :3], expected)
    assert (out["image"][2][:, :, 3] == 255).all()  # the opaque alpha, upscaled on its own
    assert isinstance(out["image"][3], str) and (out["width"][3], out["height"][3]) == (120, 36)
    out = model.predict({"image": [img]}, params={"output": "png", "tile": 8})
    assert isinstance(out["image"][0], str)

    with pytest.raises(Exception, match="row 0"):
        model.predict(pd.DataFrame({"image": ["bm90IGFuIGltYWdl"]}))  # base64 of "not an image"


def test_cli_enhance_with_the_registry_champion(env, stack, tmp_path):
    from PIL import Image

    src = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (21, 11, 3), dtype=np.uint8)).save(src)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cajnn.cli",
            "enhance",
            str(src),
            "-o",
            str(tmp_path / "out"),
            "--model",
            f"models:/{NAME}@champion",
        ],
        capture_output=True,
        text=True,
        env=stack.env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Image.open(tmp_path / "out" / "photo.png").size == (44, 84)


def test_experiment_is_marked_as_model_training_for_the_ui(env, stack):
    """Each stage's tracking set-up tags the experiment as model training (the kind MLflow 3's
    UI shows for it); a kind the user picked in the UI is kept."""
    from mlflow import MlflowClient

    from cajnn.tracking import EXPERIMENT_KIND_TAG

    def stage_setup() -> str:
        # in a process of its own, as a stage runs it: setup_tracking sets MLflow's global
        # active experiment, which would leak into the other tests of this process
        code = (
            "import sys; from pathlib import Path; from cajnn.config import TrackingConfig; "
            "from cajnn.tracking import setup_tracking; "
            "print(setup_tracking(TrackingConfig(tracking_uri=sys.argv[1], experiment='kind-test'), Path('.'))[1])"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, stack.mlflow_url], capture_output=True, text=True, timeout=120, cwd=env["root"]
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.strip().splitlines()[-1]

    exp_id = stage_setup()
    client = MlflowClient(stack.mlflow_url)
    key, kind = EXPERIMENT_KIND_TAG
    assert client.get_experiment(exp_id).tags[key] == kind == "custom_model_development"
    client.set_experiment_tag(exp_id, key, "finetuning")
    assert stage_setup() == exp_id
    assert client.get_experiment(exp_id).tags[key] == "finetuning"


def test_downstream_gate_keeps_a_better_model_from_promotion(env):
    """A model that makes words less readable than its input is registered, never promoted,
    whatever its PSNR-Y (register.max_word_acc_drop; the gate's reason from the downstream metrics)."""
    from mlflow import MlflowClient

    from cajnn.serving.registry import downstream_gate

    name = NAME + "-gated"
    first = register_weights(env["weights"]["noisy"], name, EXPERIMENT, env["cfg"], env["root"])
    assert first["champion"] == 1
    downstream = {
        "text/qf10/lr/word_acc": 30.0,
        "text/qf10/cajnn/word_acc": 25.0,
        "text/qf40/lr/word_acc": 60.0,
        "text/qf40/cajnn/word_acc": 61.0,
    }
    gate = downstream_gate(downstream, 2.0)
    rec = register_weights(env["weights"]["bilinear"], name, EXPERIMENT, env["cfg"], env["root"], gate=gate)
    assert rec["decision"]["promote"] is False and rec["champion"] == 1
    assert rec["decision"]["challenger_mean"] > rec["decision"]["champion_mean"]  # better PSNR-Y all the same
    mv = MlflowClient().get_model_version(name, str(rec["version"]))
    assert "QF10 by 5.0 points" in mv.tags["promotion_reason"] and set(mv.aliases) == {"challenger"}
    # the same model without the gate would have been promoted
    rec = register_weights(
        env["weights"]["bilinear"], name, EXPERIMENT, env["cfg"], env["root"], gate=downstream_gate(downstream, 6.0)
    )
    assert rec["decision"]["promote"] is True and rec["champion"] == rec["version"]
