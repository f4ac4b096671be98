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
        "Set5/qf10/cajnn/psnr_y": 25.0, "Set5/qf10/cajnn/ssim_y": 0.7, "Set5/qf10/bicubic/psnr_y": 23.0,
        "Set5/qf10/cajnn_x8/psnr_y": 25.2, "B100/qf40/cajnn/psnr_y": 27.5, "params": 14884419, "eval_seconds": 3.0,
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
        out, encoded = decode_image(value)
        assert encoded and np.array_equal(out, img)
    out, encoded = decode_image(img.tolist())  # a JSON request's nested lists
    assert not encoded and out.dtype == np.uint8 and np.array_equal(out, img)
    assert decode_image(img[:, :, 0])[0].shape == (5, 7, 3)
    assert np.array_equal(decode_image(np.dstack([img, img[:, :, :1]]))[0], img)
    buf = io.BytesIO()
    Image.fromarray(img).convert("L").save(buf, "JPEG")
    assert decode_image(buf.getvalue())[0].shape == (5, 7, 3)
    for bad, match in ((b"not an image", "cannot decode"), (np.full((4, 4, 3), 300), "uint8"),
                       (np.zeros((4, 4, 2), np.uint8), "channels"), (np.zeros(5, np.uint8), "image array")):
        with pytest.raises(ValueError, match=match):
            decode_image(bad)


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

    m = {"text/qf10/lr/word_acc": 30.0, "text/qf10/cajnn/word_acc": 27.5,
         "text/qf20/lr/word_acc": 50.0, "text/qf20/cajnn/word_acc": 49.0, "text/hr/word_acc": 95.0}
    assert downstream_gate(m, None) is None  # off
    assert downstream_gate(m, 3.0) is None
    reason = downstream_gate(m, 2.0)
    assert reason and "QF10 by 2.5 points" in reason and "max_word_acc_drop 2.0" in reason
    with pytest.raises(ValueError, match="downstream stage"):
        downstream_gate({"faces/hr/ap_all": 0.9}, 1.0)
