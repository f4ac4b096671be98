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
