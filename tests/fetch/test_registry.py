"""The data registry file: the repository's own entries and the strict loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cajnn.config import ConfigError, Params, from_dict, load_params
from cajnn.config.compose import compose_params
from cajnn.fetch.registry import load_registry

REPO = Path(__file__).resolve().parents[2]


def test_repo_registry_has_the_spec_archives():
    reg = load_registry(REPO / "data_registry.yaml")
    train, valid = reg.archives["DIV2K_train_HR.zip"], reg.archives["DIV2K_valid_HR.zip"]
    assert train.url == "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip"
    assert (train.bytes, train.md5) == (3_530_603_713, "bdc2d9338d4e574fe81bf7d158758658")
    assert (valid.bytes, valid.md5) == (448_993_893, "9fcdda83005c5e5997799b69f955ff88")
    assert reg.archives["Flickr2K.tar"].md5 == "5d3f39443d5e9489bff8963f8f26cb03"
    assert reg.archives["benchmark.tar"].url == "https://cv.snu.ac.kr/research/EDSR/benchmark.tar"
    assert reg.archives["benchmark.tar"].md5 == "4ace41d33c2384b97e6b320cd0afd6ba"
    for entry in reg.sources.values():
        assert entry.licence.strip()


def test_repo_registry_paths_match_what_the_paper_preset_reads():
    params = load_params(REPO / "params.yaml")
    paper = from_dict(Params, compose_params(REPO, ["preset=paper"]))
    assert params.fetch.sources == ["sample"]
    reg = load_registry(REPO / paper.fetch.registry)
    targets = set()
    for source in paper.fetch.sources:
        chosen, _ = reg.select(source)
        targets |= {f"{paper.fetch.dest}/{sel.spec.to}" for sel in chosen}
    assert set(paper.degrade.inputs) <= targets
    assert set(paper.evaluate.sets.values()) - {"data/raw/sample-holdout"} <= targets
    assert set(paper.train.val_sets) <= targets


def test_select_defaults_named_parts_and_manga109():
    reg = load_registry(REPO / "data_registry.yaml")
    chosen, notes = reg.select("div2k")
    assert [s.part for s in chosen] == ["train", "valid"] and notes == []
    chosen, _ = reg.select("div2k:train")
    assert [s.spec.to for s in chosen] == ["DIV2K_train_HR"]
    chosen, notes = reg.select("benchmark")
    assert [s.part for s in chosen] == ["Set5", "Set14", "B100", "Urban100"]
    assert "Manga109" in notes[0] and "fetch.manga109" in notes[0]
    chosen, _ = reg.select("benchmark", manga109_configured=True)
    assert chosen[-1].part == "Manga109" and chosen[-1].archive is None
    with pytest.raises(ConfigError, match="fetch.manga109"):
        reg.select("benchmark:Manga109")
    with pytest.raises(ConfigError, match="known parts of div2k: train, valid"):
        reg.select("div2k:test")
    with pytest.raises(ConfigError, match="div2k, flickr2k"):
        reg.select("div2x")


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "reg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


GOOD_ARCHIVE = {"url": "http://x/a.zip", "md5": "0" * 32}
GOOD_SOURCE = {"parts": {"p": {"archive": "a.zip", "member": "a", "to": "A"}}}


@pytest.mark.parametrize(
    "archives, sources, match",
    [
        ({"a.zip": {"url": "http://x/a.zip"}}, {}, "needs an md5 or sha256"),
        ({"a.zip": {**GOOD_ARCHIVE, "md5": "xyz"}}, {}, "not a hex md5"),
        ({"a.zip": {**GOOD_ARCHIVE, "size": 3}}, {}, "unknown key.*size"),
        ({"a.zip": {**GOOD_ARCHIVE, "bytes": "big"}}, {}, "bytes"),
        ({"a.zip": GOOD_ARCHIVE}, {"s": {"parts": {"p": {"archive": "b.zip", "member": "a", "to": "A"}}}}, "b.zip"),
        ({"a.zip": GOOD_ARCHIVE}, {"s": {"parts": {"p": {"archive": "a.zip", "to": "A"}}}}, "member"),
        (
            {"a.zip": GOOD_ARCHIVE},
            {"s": {"parts": {"p": {"archive": "a.zip", "member": "a", "to": "../A"}}}},
            r"'\.\.'",
        ),
        ({"a.zip": GOOD_ARCHIVE}, {"s": {"parts": {"p": {"user": "other", "to": "A"}}}}, "manga109"),
        ({"a.zip": GOOD_ARCHIVE}, {"s": {**GOOD_SOURCE, "default": ["q"]}}, "default"),
    ],
)
def test_registry_is_loaded_strictly(tmp_path, archives, sources, match):
    with pytest.raises(ConfigError, match=match):
        load_registry(write(tmp_path, {"archives": archives, "sources": sources}))


def test_missing_registry_names_the_parameter(tmp_path):
    with pytest.raises(ConfigError, match="fetch.registry"):
        load_registry(tmp_path / "nope.yaml")
