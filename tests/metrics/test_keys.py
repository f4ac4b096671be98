"""cajnn.metrics.keys: the score names the evaluate stage writes and the registry reads back."""

from __future__ import annotations

import pytest

from cajnn.metrics.keys import DOWNSTREAM_PREFIX, MetricKey, model_metric_name, parse_point, point_key

KEYS = [
    MetricKey("holdout", 10, "cajnn", "psnr_y"),
    MetricKey("Set5", 40, "cajnn_x8", "ssim_y"),
    MetricKey("B100", 100, "bicubic", "psnr_y"),
    MetricKey("my.set-v2", 5, "arcnn", "psnr_y"),  # dots in a set name survive the MLflow form
    MetricKey("text", 20, "cajnn_down", "word_acc"),  # the downstream stage's keys have the same shape
]


@pytest.mark.parametrize("key", KEYS, ids=str)
def test_round_trips(key):
    assert MetricKey.parse(key.format()) == key
    assert MetricKey.parse_model(key.model_name()) == key
    assert parse_point(key.point) == (key.set, key.qf)


def test_the_formats():
    key = MetricKey("holdout", 10, "cajnn", "psnr_y")
    assert key.format() == "holdout/qf10/cajnn/psnr_y"
    assert key.model_name() == "eval/holdout.qf10.cajnn.psnr_y"
    assert key.point == point_key("holdout", 10) == "holdout/qf10"
    assert model_metric_name("params/arcnn") == "eval/params.arcnn"  # any metrics.json key
    assert model_metric_name("text/qf10/lr/cer", DOWNSTREAM_PREFIX) == "downstream/text.qf10.lr.cer"


@pytest.mark.parametrize(
    "text",
    ["params", "eval_seconds", "params/arcnn", "set/10/cajnn/psnr_y", "set/qfx/cajnn/psnr_y", "set/qf10/cajnn"],
)
def test_other_keys_are_not_scores(text):
    assert MetricKey.parse(text) is None
    assert MetricKey.parse_model(model_metric_name(text)) is None


def test_a_set_name_has_no_slash():
    assert MetricKey.parse("a/b/qf10/cajnn/psnr_y") is None


def test_points():
    assert parse_point("Set14/qf30") == ("Set14", 30)
    assert parse_point("Set14/qf30/cajnn/psnr_y") is None and parse_point("Set14") is None
