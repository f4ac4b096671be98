"""params.yaml composed from conf/ by Hydra (cajnn/config/compose.py), as `dvc exp run` does."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from cajnn.config import ConfigError, Params, from_dict, load_params
from cajnn.config.compose import compose_params, known_presets, render, write_params

REPO = Path(__file__).resolve().parents[2]


def test_committed_params_yaml_is_the_composition_dvc_writes(tmp_path):
    """`dvc exp run` rewrites params.yaml from conf/: the committed file must already be that,
    or every experiment would show changes nobody made (and `dvc repro` would run other values)."""
    from dvc.utils.hydra import compose_and_dump

    ours = render(REPO)
    assert (REPO / "params.yaml").read_text() == ours, "params.yaml is stale: run `make params`"
    compose_and_dump(tmp_path / "params.yaml", str(REPO / "conf"), None, "config", str(REPO), [])
    assert (tmp_path / "params.yaml").read_text() == ours


def test_dvc_has_hydra_composition_enabled():
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        hydra = repo.config["hydra"]
    assert hydra["enabled"] is True
    assert hydra.get("config_dir", "conf") == "conf" and hydra.get("config_name", "config") == "config"


@pytest.mark.parametrize("preset", ["embedded", "micro", "paper", "finetune"])
def test_every_shipped_preset_composes_into_valid_params(preset):
    assert preset in known_presets(REPO)
    params = from_dict(Params, compose_params(REPO, [f"preset={preset}"]))
    assert params.preset == preset


def test_paper_preset_values_are_in_the_composed_params():
    p = from_dict(Params, compose_params(REPO, ["preset=paper"]))
    assert p.train.model.preset == "paper"
    assert (p.train.iterations, p.train.batch_size, p.train.crop) == (1_000_000, 36, 32)
    assert p.train.lr == pytest.approx(2e-4) and p.train.restart_every == 250_000
    # keys the preset does not mention keep conf/config.yaml's values (mappings merged)
    assert p.train.loss == "l1" and p.train.storage_path == "runs" and p.mlflow.experiment == "cajnn"
    assert p.degrade.profile == "paper" and p.degrade.selected_profile().qf_max == 100
    assert p.degrade.min_patch_std == 0 and p.train.balance == "patch"  # the paper's data, as it is
    assert p.degrade.stride == 40  # the disk estimate of README holds for the paper preset
    # lists are replaced, not concatenated
    assert p.fetch.holdout == []
    assert p.degrade.inputs == ["data/raw/DIV2K_train_HR", "data/raw/Flickr2K_HR"]


def test_overrides_after_the_preset_win_and_floats_keep_their_value():
    p = from_dict(Params, compose_params(REPO, ["preset=micro", "train.lr=2e-4", "train.iterations=30"]))
    assert p.preset == "micro" and p.train.iterations == 30 and p.train.lr == pytest.approx(2e-4)
    assert p.train.model.preset == "micro"


def _conf(root: Path, config: str, presets: dict[str, str]) -> Path:
    (root / "conf" / "preset").mkdir(parents=True)
    (root / "conf" / "config.yaml").write_text(textwrap.dedent(config))
    for name, body in presets.items():
        (root / "conf" / "preset" / f"{name}.yaml").write_text("# @package _global_\n" + textwrap.dedent(body))
    return root


BASE = """\
    defaults:
      - _self_
      - preset: plain
    preset: plain
    train:
      iterations: 10
      batch_size: 4
      model: {preset: micro, overrides: {nf: 4}}
    fetch: {sources: [sample], holdout: [chelsea, coffee]}
    evaluate: {sets: {a: data/a}, qualities: [10, 20, 40]}
"""


def test_merge_semantics_mappings_merged_lists_replaced(tmp_path):
    root = _conf(
        tmp_path,
        BASE,
        {
            "plain": "preset: plain\n",
            "custom": """\
        preset: custom
        train: {iterations: 99, model: {overrides: {num_blocks: 2}}}
        fetch: {holdout: [coffee]}
        evaluate: {sets: {b: data/b}, qualities: [40]}
    """,
        },
    )
    p = load_params(write_params(root, ["preset=custom"]))
    assert p.preset == "custom"
    assert p.train.iterations == 99 and p.train.batch_size == 4
    assert p.train.model.preset == "micro" and p.train.model.overrides == {"nf": 4, "num_blocks": 2}
    assert p.fetch.holdout == ["coffee"] and p.fetch.sources == ["sample"]
    assert p.evaluate.sets == {"a": "data/a", "b": "data/b"} and p.evaluate.qualities == [40]


def test_an_invalid_preset_value_is_named_and_params_yaml_is_left_alone(tmp_path):
    root = _conf(tmp_path, BASE, {"plain": "preset: plain\n", "bad": "train: {batch_size: big}\n"})
    (root / "params.yaml").write_text("before\n")
    with pytest.raises(ConfigError, match="train.batch_size"):
        write_params(root, ["preset=bad"])
    assert (root / "params.yaml").read_text() == "before\n"
    assert not [p for p in os.listdir(root) if p.endswith(".tmp")]


def test_unknown_preset_lists_the_known_ones(tmp_path):
    root = _conf(tmp_path, BASE, {"plain": "preset: plain\n", "paper": "preset: paper\n"})
    with pytest.raises(ConfigError) as exc:
        render(root, ["preset=papr"])
    msg = str(exc.value)
    assert "papr" in msg and "plain" in msg and "paper" in msg


def test_missing_conf_dir_says_where_params_come_from(tmp_path):
    with pytest.raises(ConfigError, match="conf/"):
        render(tmp_path)
