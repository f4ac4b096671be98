"""Tests of the typed `params.yaml` loader (cajnn/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cajnn.config import (
    ConfigError,
    DegradeConfig,
    Params,
    ProfileConfig,
    TrainConfig,
    deep_merge,
    flatten,
    from_dict,
    load_params,
    to_dict,
)

REPO = Path(__file__).resolve().parents[2]
REPO_PARAMS = REPO / "params.yaml"


def write_params(root: Path, data: dict) -> Path:
    """A params.yaml in `root`."""
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- the repository's real params.yaml -------------------------------------------------------


def test_repo_params_load_with_typed_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the loader must not depend on the working directory
    p = load_params(REPO_PARAMS)
    assert isinstance(p, Params)
    assert p.preset == "embedded"
    assert p.mlflow.tracking_uri == "sqlite:///mlflow/mlflow.db"
    assert p.ray.address == "local" and p.ray.num_cpus is None
    assert p.fetch.sources == ["sample"] and p.fetch.holdout == ["chelsea", "coffee"]

    # the embedded default: the paper's degradation with low QFs drawn more often (issue 12)
    assert p.degrade.profile == "paper_lowqf"
    prof = p.degrade.selected_profile()
    assert isinstance(prof, ProfileConfig)
    assert (prof.resize, prof.scale, prof.subsampling) == ("matlab_bicubic", 4, "420")
    assert min(prof.qf_values) == 10 and max(prof.qf_values) == 100
    assert (p.degrade.qualities_per_image, p.degrade.patch_size, p.degrade.stride) == (4, 48, 24)
    assert p.degrade.min_patch_std == 8

    t = p.train
    assert t.model.preset == "cpu-small" and t.model.overrides == {}
    assert (t.iterations, t.batch_size, t.crop, t.restart_every) == (1800, 8, 24, 1800)
    assert t.balance == "image" and t.channels_last == "auto"
    assert isinstance(t.lr, float) and t.lr == pytest.approx(1e-3)
    assert isinstance(t.lr_min, float) and t.lr_min == pytest.approx(1e-7)
    assert t.loss == "l1" and t.use_gpu == "auto" and t.aux_lr_weight == 0.0

    assert p.evaluate.qualities == [10, 20, 40]
    assert p.evaluate.sets == {"holdout": "data/raw/sample-holdout"}
    assert p.evaluate.self_ensemble is True
    assert p.register.model_name == "cajnn" and p.register.tolerance == pytest.approx(0.1)


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="no such parameters file"):
        load_params(tmp_path / "params.yaml")


def test_unknown_key_in_section_is_named(tmp_path):
    path = write_params(tmp_path, {"train": {"iteratons": 5}})
    with pytest.raises(ConfigError, match="iteratons") as exc:
        load_params(path)
    assert "train" in str(exc.value)
    assert "iterations" in str(exc.value)  # the known keys are listed


def test_unknown_top_level_section(tmp_path):
    path = write_params(tmp_path, {"trian": {}})
    with pytest.raises(ConfigError, match="trian"):
        load_params(path)


def test_unknown_key_in_nested_section(tmp_path):
    path = write_params(tmp_path, {"train": {"model": {"preset": "micro", "widht": 3}}})
    with pytest.raises(ConfigError, match="widht"):
        load_params(path)


@pytest.mark.parametrize(
    "section, body, where",
    [
        ("train", {"iterations": "many"}, "train.iterations"),
        ("train", {"batch_size": True}, "train.batch_size"),  # bool is not an int here
        ("train", {"lr": "fast"}, "train.lr"),
        ("train", {"lr": False}, "train.lr"),
        ("evaluate", {"qualities": 10}, "evaluate.qualities"),
        ("evaluate", {"qualities": [10, "x"]}, "evaluate.qualities[1]"),
        ("evaluate", {"sets": ["a"]}, "evaluate.sets"),
        ("ray", {"num_cpus": "two"}, "ray.num_cpus"),
        ("train", {"model": "paper"}, "train.model"),
        ("degrade", {"profiles": {"p": {"qf_min": "low"}}}, "degrade.profiles.p.qf_min"),
    ],
)
def test_wrong_type_is_rejected(tmp_path, section, body, where):
    path = write_params(tmp_path, {section: body})
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    assert where in str(exc.value)


def test_int_accepted_for_float_and_optional_fields(tmp_path):
    path = write_params(
        tmp_path, {"train": {"lr": 1, "grad_clip": 2}, "ray": {"num_cpus": 3}, "register": {"tolerance": 0}}
    )
    p = load_params(path)
    assert p.train.lr == 1.0 and type(p.train.lr) is float
    assert p.train.grad_clip == 2.0 and type(p.train.grad_clip) is float
    assert p.register.tolerance == 0.0 and type(p.register.tolerance) is float
    assert p.ray.num_cpus == 3


def test_yaml_booleans_kept_as_text_for_string_options(tmp_path):
    # `use_gpu: true` is read by YAML as a boolean; the option is a string
    path = write_params(tmp_path, {"train": {"use_gpu": True}})
    assert load_params(path).train.use_gpu == "true"


def test_exponent_float_without_dot(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  lr: 2e-4\n  lr_min: 1e-7\n")
    p = load_params(tmp_path / "params.yaml")
    assert p.train.lr == pytest.approx(2e-4) and p.train.lr_min == pytest.approx(1e-7)


def test_section_level_validation_runs(tmp_path):
    path = write_params(tmp_path, {"train": {"loss": "huber"}})
    with pytest.raises(ConfigError, match="huber"):
        load_params(path)
    path = write_params(tmp_path, {"train": {"use_gpu": "maybe"}})
    with pytest.raises(ConfigError, match="maybe"):
        load_params(path)
    path = write_params(tmp_path, {"train": {"iterations": 0}})
    with pytest.raises(ConfigError, match="iterations"):
        load_params(path)


def test_empty_sections_give_defaults(tmp_path):
    path = write_params(tmp_path, {"train": None, "degrade": {}})
    p = load_params(path)
    assert p.train == TrainConfig()
    assert p.degrade == DegradeConfig()


# --- deep_merge (retrain overlays) -----------------------------------------------------------------------------


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    over = {"a": {"c": [3]}, "e": 2}
    out = deep_merge(base, over)
    assert out == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert over == {"a": {"c": [3]}, "e": 2}


def test_deep_merge_mapping_replaces_scalar_and_vice_versa():
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": 3}) == {"a": 3}


# --- profiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resize": "lanczos"}, "lanczos"),
        ({"qf_min": 0}, "QF range"),
        ({"qf_max": 101}, "QF range"),
        ({"qf_min": 60, "qf_max": 50}, "QF range"),
        ({"subsampling": "411"}, "411"),
    ],
)
def test_profile_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ProfileConfig(**kwargs)


def test_profile_edge_values_accepted():
    assert ProfileConfig(qf_min=1, qf_max=1).qf_max == 1
    assert ProfileConfig(qf_min=100, qf_max=100, subsampling="444").subsampling == "444"


def test_profile_validation_through_yaml(tmp_path):
    path = write_params(tmp_path, {"degrade": {"profiles": {"paper": {"qf_min": 90, "qf_max": 20}}}})
    with pytest.raises(ConfigError, match="QF range"):
        load_params(path)


def test_selected_profile():
    web = ProfileConfig(qf_min=50, qf_max=90, subsampling="444")
    cfg = DegradeConfig(profile="web", profiles={"paper": ProfileConfig(), "web": web})
    assert cfg.selected_profile() is web


def test_selected_profile_unknown():
    cfg = DegradeConfig(profile="instagram", profiles={"paper": ProfileConfig(), "web": ProfileConfig()})
    with pytest.raises(ConfigError) as exc:
        cfg.selected_profile()
    msg = str(exc.value)
    assert "instagram" in msg and "paper" in msg and "web" in msg


def test_profiles_built_as_dataclasses_from_yaml(tmp_path):
    path = write_params(
        tmp_path,
        {"degrade": {"profile": "web", "profiles": {"web": {"qf_min": 70, "qf_max": 95, "subsampling": "422"}}}},
    )
    p = load_params(path)
    prof = p.degrade.selected_profile()
    assert isinstance(prof, ProfileConfig)
    assert (prof.qf_min, prof.qf_max, prof.subsampling, prof.scale) == (70, 95, "422", 4)


# --- from_dict / flatten ----------------------------------------------------------------------


def test_from_dict_rejects_non_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        from_dict(TrainConfig, [1, 2], "train")


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}
    assert flatten({}) == {}
    assert flatten({"x": 1}, prefix="p") == {"p.x": 1}


def test_flatten_of_params():
    flat = flatten(to_dict(load_params(REPO_PARAMS)))
    assert flat["train.model.preset"] == "cpu-small"
    assert flat["degrade.profiles.paper.qf_min"] == 10
    assert flat["evaluate.qualities"] == [10, 20, 40]
    assert flat["train.iterations"] == 1800
    assert all(not isinstance(v, dict) for v in flat.values())
