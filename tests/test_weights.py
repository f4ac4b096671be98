"""safetensors + JSON weight files: round trip, no pickle, clear errors."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cajnn.archs import CAJNN, PRESETS, build_model
from cajnn.weights import FORMAT_VERSION, load_weights, save_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _perturbed(model: CAJNN) -> CAJNN:
    """Make every parameter non-trivial (zero-initialised ones too)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"context": "nonlocal", "upsampler": "upconv", "scale": 3, "aux_lr_head": True},
        {"context": "sequential_atrous", "upsampler": "pixelshuffle_single", "scale": 2, "global_skip": False},
    ],
)
def test_round_trip_identical_outputs(tmp_path, overrides):
    torch.manual_seed(0)
    model = _perturbed(build_model("micro", **overrides)).eval()
    path = save_weights(model, tmp_path / "run" / "model.safetensors")
    assert path == tmp_path / "run" / "model.safetensors"
    assert json.loads((tmp_path / "run" / "model.json").read_text()) == model.config

    loaded = load_weights(path)
    assert isinstance(loaded, CAJNN)
    assert loaded.config == model.config
    assert not loaded.training
    x = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)


def test_file_is_safetensors_not_pickle(tmp_path):
    torch.manual_seed(0)
    path = save_weights(build_model("micro"), tmp_path / "m.safetensors")
    head = path.read_bytes()[:16]
    assert not head.startswith(b"\x80")  # pickle protocol >= 2
    assert not head.startswith(b"PK\x03\x04")  # zip (torch.save)
    (header_len,) = struct.unpack("<Q", head[:8])
    assert head[8:9] == b"{" and 0 < header_len < path.stat().st_size
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["cajnn_format_version"] == FORMAT_VERSION
    assert json.loads(meta["cajnn_config"]) == PRESETS["micro"]


def test_load_never_unpickles(tmp_path, monkeypatch):
    path = save_weights(build_model("micro"), tmp_path / "m.safetensors")

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", forbidden)
    load_weights(path)


def test_atomic_write_leaves_no_temp_files_and_overwrites(tmp_path):
    torch.manual_seed(0)
    save_weights(build_model("micro"), tmp_path / "m.safetensors")
    model2 = build_model("micro", scale=2)
    save_weights(model2, tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    assert load_weights(tmp_path / "m.safetensors").config["scale"] == 2


def test_missing_json_is_clear(tmp_path):
    path = save_weights(build_model("micro"), tmp_path / "m.safetensors")
    (tmp_path / "m.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"m\.json not found"):
        load_weights(path)


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"weights file .*nope\.safetensors not found"):
        load_weights(tmp_path / "nope.safetensors")


def test_mismatched_keys_are_reported(tmp_path):
    model = build_model("micro")
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("enhance.")}
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "m.safetensors"))
    (tmp_path / "m.json").write_text(json.dumps(model.config))
    with pytest.raises(ValueError, match=r"missing keys \[enhance\.0\.bias.*unexpected keys \[extra\.weight\]"):
        load_weights(tmp_path / "m.safetensors")


def test_config_mismatch_and_bad_config(tmp_path):
    path = save_weights(build_model("micro"), tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps({**PRESETS["micro"], "num_blocks": 2}))
    with pytest.raises(ValueError, match="config mismatch"):
        load_weights(path)
    (tmp_path / "m.json").write_text(json.dumps({**PRESETS["micro"], "blocks": 2}))
    with pytest.raises(ValueError, match="does not describe a valid network"):
        load_weights(path)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_weights(path)


def test_not_a_safetensors_file(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"\x80\x04garbage")
    (tmp_path / "m.json").write_text(json.dumps(PRESETS["micro"]))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights(tmp_path / "m.safetensors")


def test_save_rejects_model_without_config(tmp_path):
    with pytest.raises(ValueError, match="config"):
        save_weights(torch.nn.Conv2d(3, 3, 3), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"must not end in \.json"):
        save_weights(build_model("micro"), tmp_path / "m.json")
