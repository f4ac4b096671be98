"""Tests of the champion/challenger promotion policy (`decide_promotion` in
cajnn/serving/registry.py); a pure function, no MLflow needed."""

from __future__ import annotations

import pytest

from cajnn.config import RegisterConfig
from cajnn.serving.registry import Decision, decide_promotion

CFG = RegisterConfig(min_gain=0.0, tolerance=0.1)
CHAMP = {"Set5/qf10": 25.0, "Set5/qf20": 26.5, "Set14/qf10": 24.0}


def test_first_model_is_promoted():
    d = decide_promotion({"Set5/qf10": 20.0, "Set5/qf20": 22.0}, None, CFG)
    assert isinstance(d, Decision)
    assert d.promote is True
    assert d.challenger_mean == pytest.approx(21.0)
    assert d.champion_mean is None and d.worst_drop is None
    assert "first" in d.reason


def test_better_mean_is_promoted():
    chal = {k: v + 0.2 for k, v in CHAMP.items()}
    d = decide_promotion(chal, CHAMP, CFG)
    assert d.promote is True
    assert d.challenger_mean == pytest.approx(sum(CHAMP.values()) / 3 + 0.2)
    assert d.champion_mean == pytest.approx(sum(CHAMP.values()) / 3)
    assert d.worst_drop == pytest.approx(-0.2)


def test_one_key_worse_than_tolerance_blocks_promotion():
    chal = {"Set5/qf10": 26.0, "Set5/qf20": 27.5, "Set14/qf10": 23.85}  # mean much better
    d = decide_promotion(chal, CHAMP, CFG)
    assert d.challenger_mean > d.champion_mean
    assert d.promote is False
    assert d.worst_drop == pytest.approx(0.15)
    assert "Set14/qf10" in d.reason


def test_drop_within_tolerance_is_allowed():
    chal = {"Set5/qf10": 25.5, "Set5/qf20": 26.8, "Set14/qf10": 23.95}
    d = decide_promotion(chal, CHAMP, CFG)
    assert d.promote is True
    assert d.worst_drop == pytest.approx(0.05)


def test_tolerance_is_configurable():
    chal = {"Set5/qf10": 26.0, "Set5/qf20": 27.5, "Set14/qf10": 23.85}
    assert decide_promotion(chal, CHAMP, RegisterConfig(tolerance=0.2)).promote is True
    assert decide_promotion(chal, CHAMP, RegisterConfig(tolerance=0.1)).promote is False


def test_tie_keeps_champion():
    d = decide_promotion(dict(CHAMP), CHAMP, CFG)
    assert d.promote is False
    assert d.worst_drop == pytest.approx(0.0)
    assert d.challenger_mean == pytest.approx(d.champion_mean)


def test_gain_must_exceed_min_gain():
    chal = {k: v + 0.05 for k, v in CHAMP.items()}
    assert decide_promotion(chal, CHAMP, RegisterConfig(min_gain=0.1)).promote is False
    assert decide_promotion(chal, CHAMP, RegisterConfig(min_gain=0.01)).promote is True


def test_worse_mean_kept():
    chal = {k: v - 0.05 for k, v in CHAMP.items()}
    d = decide_promotion(chal, CHAMP, CFG)
    assert d.promote is False and "does not beat" in d.reason


def test_no_common_keys_keeps_champion():
    d = decide_promotion({"Urban100/qf10": 30.0}, CHAMP, CFG)
    assert d.promote is False
    assert "common" in d.reason
    assert d.challenger_mean == pytest.approx(30.0)


def test_only_common_keys_are_compared():
    # an extra (low) key in the challenger and a missing one do not enter the comparison
    chal = {"Set5/qf10": 25.3, "Set5/qf20": 26.8, "Manga109/qf10": 5.0}
    d = decide_promotion(chal, CHAMP, CFG)
    assert d.promote is True
    assert d.challenger_mean == pytest.approx((25.3 + 26.8) / 2)
    assert d.champion_mean == pytest.approx((25.0 + 26.5) / 2)


def test_empty_challenger_raises():
    with pytest.raises(ValueError, match="no evaluation metrics"):
        decide_promotion({}, CHAMP, CFG)
    with pytest.raises(ValueError):
        decide_promotion({}, None, CFG)


def test_champion_without_metrics_is_not_first_model():
    d = decide_promotion({"Set5/qf10": 20.0}, {}, CFG)
    assert d.promote is False
    assert "first model" not in d.reason


# --------------------------------------------------------------------------- helpers around the policy


def test_challenger_numbers_are_the_plain_cajnn_psnr_rows():
    from cajnn.serving.registry import psnr_from_metrics

    metrics = {
        "Set5/qf10/cajnn/psnr_y": 25.0,
        "Set5/qf10/cajnn/ssim_y": 0.7,
        "Set5/qf10/bicubic/psnr_y": 23.0,
        "Set5/qf10/cajnn_x8/psnr_y": 25.2,
        "B100/qf40/cajnn/psnr_y": 27.5,
        "params": 14884419,
        "eval_seconds": 3.0,
    }
    assert psnr_from_metrics(metrics) == {"Set5/qf10": 25.0, "B100/qf40": 27.5}


def test_negative_policy_numbers_are_refused():
    from cajnn.config import ConfigError

    with pytest.raises(ConfigError, match="tolerance"):
        RegisterConfig(tolerance=-0.1)
    with pytest.raises(ConfigError, match="min_gain"):
        RegisterConfig(min_gain=-1.0)


def test_served_model_requirements_are_pinned_to_the_lock_file():
    from pathlib import Path

    from cajnn.serving.registry import SERVING_PACKAGES, requirements

    lock = {}
    for line in (Path(__file__).resolve().parents[2] / "requirements.lock").read_text().splitlines():
        name, _, ver = line.partition("==")
        lock[name.lower()] = ver.split("+")[0]
    reqs = dict(r.split("==") for r in requirements())
    assert list(reqs) == SERVING_PACKAGES
    assert reqs == {n: lock[n] for n in SERVING_PACKAGES}
    assert reqs["torch"] == "2.13.0" and reqs["mlflow"] == "3.17.2"


def test_signature_accepts_any_image_value_and_documents_params():
    from mlflow.types.schema import AnyType

    from cajnn.serving.registry import signature

    sig = signature()
    (col,) = sig.inputs.inputs
    assert col.name == "image" and isinstance(col.type, AnyType)
    assert {p.name for p in sig.params.params} == {"tile", "self_ensemble", "output"}


def test_decode_image_accepts_encoded_images_and_uint8_arrays():
    import base64
    import io

    import numpy as np
    from PIL import Image

    from cajnn.serving.pyfunc_model import decode_image, encode_png

    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    png = base64.b64decode(encode_png(img))
    for value in (base64.b64encode(png).decode(), png, bytearray(png)):
        kept, encoded = decode_image(value)
        assert encoded and kept.alpha is None and np.array_equal(kept.colour, img)
    kept, encoded = decode_image(img.tolist())  # a JSON request's nested lists
    assert not encoded and kept.colour.dtype == np.uint8 and np.array_equal(kept.colour, img)
    for grey in (img[:, :, 0], img[:, :, :1]):
        kept = decode_image(grey)[0]
        assert kept.gray and kept.alpha is None and kept.network_input().shape == (5, 7, 3)
    kept = decode_image(np.dstack([img, img[:, :, :1]]))[0]  # RGBA: the alpha is kept
    assert np.array_equal(kept.colour, img) and np.array_equal(kept.alpha, img[:, :, 0])
    kept = decode_image(img[:, :, :2])[0]  # grey + alpha
    assert kept.gray and np.array_equal(kept.colour[:, :, 0], img[:, :, 0]) and np.array_equal(kept.alpha, img[:, :, 1])
    buf = io.BytesIO()
    Image.fromarray(img).convert("L").save(buf, "JPEG")
    kept = decode_image(buf.getvalue())[0]
    assert kept.gray and kept.network_input().shape == (5, 7, 3)
    for bad, match in (
        (b"not an image", "cannot decode"),
        (np.full((4, 4, 3), 300), "uint8"),
        (np.zeros((4, 4, 5), np.uint8), "channels"),
        (np.zeros(5, np.uint8), "image array"),
    ):
        with pytest.raises(ValueError, match=match):
            decode_image(bad)


# --------------------------------------------------------------------------- the served model (pyfunc)


@pytest.fixture(scope="module")
def micro_pyfunc(tmp_path_factory, one_torch_thread):
    """The served model (`CAJNNPyfunc`) on a micro network, and its weights file for `cajnn enhance`."""
    from types import SimpleNamespace

    import torch

    from cajnn.archs import build_model
    from cajnn.serving.pyfunc_model import CAJNNPyfunc
    from cajnn.weights import save_weights

    torch.manual_seed(0)
    weights = save_weights(build_model("micro"), tmp_path_factory.mktemp("w") / "micro.safetensors")
    model = CAJNNPyfunc()
    model.load_context(SimpleNamespace(artifacts={"weights": str(weights)}))
    return model, weights


def _b64_png(path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def _served(model, value, **params):
    """(decoded PNG as an array, its mode, width, height) of one row through `predict`."""
    import base64
    import io

    import numpy as np
    import pandas as pd
    from PIL import Image

    out = model.predict(None, pd.DataFrame({"image": [value]}), params or None)
    with Image.open(io.BytesIO(base64.b64decode(out["image"][0]))) as img:
        assert img.format == "PNG"
        return np.asarray(img), img.mode, int(out["width"][0]), int(out["height"][0])


def _cli_output(path, weights, outdir):
    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from cajnn.cli import app

    res = CliRunner().invoke(app, ["enhance", str(path), "-o", str(outdir), "--weights", str(weights), "--quiet"])
    assert res.exit_code == 0, res.output
    with Image.open(outdir / f"{path.stem}.png") as img:
        return np.asarray(img), img.mode


def test_pyfunc_rgba_png_round_trip_keeps_alpha_as_cajnn_enhance_does(micro_pyfunc, tmp_path):
    import numpy as np
    from PIL import Image

    from cajnn.data.image_meta import finish, read_image

    model, weights = micro_pyfunc
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    rgba[:, :, 3] = np.where(np.arange(10) < 4, 0, np.linspace(40, 255, 10)).astype(np.uint8)  # an edge and a ramp
    path = tmp_path / "sticker.png"
    Image.fromarray(rgba, "RGBA").save(path)

    got, mode, width, height = _served(model, _b64_png(path))
    assert mode == "RGBA" and got.shape == (48, 40, 4) and (width, height) == (40, 48)
    # pixel for pixel what `cajnn enhance` writes for the same file and weights
    cli, cli_mode = _cli_output(path, weights, tmp_path / "cli")
    assert cli_mode == "RGBA" and np.array_equal(got, cli)
    # the alpha plane: the CLI helper's separate upscale of the input alpha (not the network's)
    helper_alpha = finish(read_image(path), np.zeros((48, 40, 3), np.uint8))[:, :, 3]
    assert np.array_equal(got[:, :, 3], helper_alpha)
    assert got[:, :8, 3].max() == 0 and got[:, 20:, 3].min() > 0
    # the colour: exactly the RGB path's output for the same colour planes
    rgb_path = tmp_path / "sticker_rgb.png"
    Image.fromarray(rgba[:, :, :3]).save(rgb_path)
    rgb, rgb_mode, _, _ = _served(model, _b64_png(rgb_path))
    assert rgb_mode == "RGB" and np.array_equal(got[:, :, :3], rgb)
    # the same image sent as a uint8 array (JSON lists) comes back as the same (h, w, 4) array
    out = model.predict(None, {"image": [rgba.tolist()]})
    assert np.array_equal(np.asarray(out["image"][0], dtype=np.uint8), got)
    assert _served(model, rgba, output="png")[0].shape == (48, 40, 4)


@pytest.mark.parametrize("mode", ["LA", "L"])
def test_pyfunc_keeps_grey_and_grey_alpha_as_cajnn_enhance_does(micro_pyfunc, tmp_path, mode):
    import numpy as np
    from PIL import Image

    model, weights = micro_pyfunc
    rng = np.random.default_rng(6)
    arr = rng.integers(0, 256, (9, 11, 2 if mode == "LA" else 1), dtype=np.uint8)
    path = tmp_path / f"grey_{mode}.png"
    Image.fromarray(arr if mode == "LA" else arr[:, :, 0], mode).save(path)

    got, got_mode, width, height = _served(model, _b64_png(path))
    assert got_mode == mode and (width, height) == (44, 36)
    cli, cli_mode = _cli_output(path, weights, tmp_path / "cli")
    assert cli_mode == mode and np.array_equal(got, cli)
    # grey: the mean of the RGB path's three channels for the grey image repeated in R, G and B
    rgb_path = tmp_path / f"grey_{mode}_rgb.png"
    Image.fromarray(np.repeat(arr[:, :, :1], 3, axis=2)).save(rgb_path)
    rgb = _served(model, _b64_png(rgb_path))[0]
    grey = got if mode == "L" else got[:, :, 0]
    assert np.array_equal(grey, np.rint(rgb.mean(axis=2)).astype(np.uint8))
    # as an array: (h, w) grey, (h, w, 2) grey + alpha
    out = model.predict(None, {"image": [arr[:, :, 0] if mode == "L" else arr]})
    assert np.array_equal(np.asarray(out["image"][0]), got)


def test_pyfunc_bad_requests_are_invalid_parameter_value_with_the_problem(micro_pyfunc):
    import base64
    import io

    import numpy as np
    from mlflow.exceptions import MlflowException
    from PIL import Image

    model, _ = micro_pyfunc
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, "PNG")  # 81 Mpx, over the 64 Mpx limit of cajnn enhance
    for value, expected in (
        (base64.b64encode(b"not an image").decode(), "row 1: cannot decode image bytes"),
        ("", "row 1: image string is empty"),
        (base64.b64encode(bomb.getvalue()).decode(), "row 1: image too large"),
        (np.zeros((4, 4, 5), np.uint8), "row 1: image array must have 1, 2, 3 or 4 channels"),
    ):
        with pytest.raises(MlflowException, match=expected) as info:
            model.predict(None, {"image": [np.zeros((4, 4, 3), np.uint8), value]})
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="param output 'jpeg'") as info:
        model.predict(None, {"image": [np.zeros((4, 4, 3), np.uint8)]}, {"output": "jpeg"})
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_sets_fingerprint_changes_with_the_images(tmp_path):
    import numpy as np

    from cajnn.config import EvaluateConfig
    from cajnn.data.image_io import save_rgb
    from cajnn.serving.registry import sets_fingerprint

    save_rgb(np.zeros((8, 8, 3), np.uint8), tmp_path / "a" / "x.png")
    cfg = EvaluateConfig(sets={"a": "a", "gone": "nowhere"}, sweep_set="")
    first = sets_fingerprint(cfg, tmp_path)
    assert first["sets"]["a"]["images"] == 1 and first["sets"]["gone"] == "missing"
    save_rgb(np.ones((8, 8, 3), np.uint8), tmp_path / "a" / "x.png")
    assert sets_fingerprint(cfg, tmp_path)["sets"]["a"]["sha256"] != first["sets"]["a"]["sha256"]


def test_downstream_gate():
    from cajnn.serving.registry import downstream_gate

    m = {
        "text/qf10/lr/word_acc": 30.0,
        "text/qf10/cajnn/word_acc": 27.5,
        "text/qf20/lr/word_acc": 50.0,
        "text/qf20/cajnn/word_acc": 49.0,
        "text/hr/word_acc": 95.0,
    }
    assert downstream_gate(m, None) is None  # off
    assert downstream_gate(m, 3.0) is None
    reason = downstream_gate(m, 2.0)
    assert reason and "QF10 by 2.5 points" in reason and "max_word_acc_drop 2.0" in reason
    with pytest.raises(ValueError, match="downstream stage"):
        downstream_gate({"faces/hr/ap_all": 0.9}, 1.0)
