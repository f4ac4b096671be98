"""The two-stage baselines of paper Table I: ARCNN, DnCNN (artifact removal at LR) and RRDBNet
(x4 SR) against their papers' layer definitions, and how they train, save and load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cajnn.archs import ARCNN, DnCNN, build_model
from cajnn.config import BaselineModel, BaselinesConfig, ConfigError, ModelConfig, TrainConfig
from cajnn.weights import load_weights, save_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_arcnn_parameter_count_matches_the_iccv_2015_layers():
    # 9x9 -> 64, 7x7 -> 32, 1x1 -> 16, 5x5 -> 1 on Y, with biases
    y = 9 * 9 * 1 * 64 + 64 + 7 * 7 * 64 * 32 + 32 + 1 * 1 * 32 * 16 + 16 + 5 * 5 * 16 * 1 + 1
    assert n_params(ARCNN(in_ch=1)) == y == 106_561
    assert n_params(build_model("arcnn")) == 117_731  # the RGB version used here


def test_dncnn_parameter_count_matches_the_tip_2017_layers():
    # DnCNN-3: depth 20, 64 channels; conv+ReLU, 18 x (conv (no bias) + BN + ReLU), conv
    one = (3 * 3 * 1 * 64 + 64) + 18 * (3 * 3 * 64 * 64 + 2 * 64) + (3 * 3 * 64 * 1 + 1)
    assert n_params(DnCNN(in_ch=1)) == one == 667_073
    assert n_params(build_model("dncnn")) == 669_379
    assert n_params(DnCNN(in_ch=1, depth=17)) == 556_097  # DnCNN-S's depth


def test_rrdbnet_parameter_count_is_esrgans():
    assert n_params(build_model("rrdbnet")) == 16_697_987  # nf 64, 23 RRDBs, growth 32


@pytest.mark.parametrize("preset, scale", [("arcnn-micro", 1), ("dncnn-micro", 1), ("rrdbnet-micro", 4)])
def test_shapes_and_save_load(tmp_path, preset, scale):
    net = build_model(preset).eval()
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, 12 * scale, 16 * scale) and net.config["scale"] == scale
    path = save_weights(net, tmp_path / f"{preset}.safetensors")
    back = load_weights(path)
    assert type(back) is type(net)
    with torch.no_grad():
        assert torch.equal(back(x), y)


def test_dncnn_learns_the_residual():
    net = DnCNN(depth=3, nf=4)
    torch.nn.init.zeros_(net.body[-1].weight)
    torch.nn.init.zeros_(net.body[-1].bias)
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(net.eval()(x), x)  # a zero residual returns the input


def test_unknown_override_names_the_class():
    with pytest.raises(ValueError, match="unknown ARCNN argument"):
        build_model("arcnn", nf=3)


@pytest.mark.parametrize("preset, task", [("arcnn-micro", "car"), ("dncnn-micro", "car"), ("rrdbnet-micro", "sr")])
def test_trainer_steps_each_task(preset, task):
    from cajnn.training.trainer import Trainer

    rng = np.random.default_rng(0)
    hr = (rng.random((4, 64, 64, 3)) * 255).astype(np.uint8)
    lr = (rng.random((4, 16, 16, 3)) * 255).astype(np.uint8)
    t = Trainer(TrainConfig(model=ModelConfig(preset), task=task, batch_size=4, crop=12))
    t.prepare()
    before = {k: v.clone() for k, v in t.net.state_dict().items()}
    assert np.isfinite(t.step(hr, lr))
    assert any(not torch.equal(before[k], v) for k, v in t.net.state_dict().items())
    with pytest.raises(ValueError, match="needs a network of scale"):
        Trainer(TrainConfig(model=ModelConfig(preset), task="sr" if task == "car" else "car"))


def test_baselines_config_checks_chains():
    cfg = BaselinesConfig()
    assert cfg.chains["arcnn_rrdbnet"] == ["arcnn", "rrdbnet"] and cfg.sr_only == "rrdbnet"
    models = {"a": BaselineModel("arcnn", "car"), "s": BaselineModel("rrdbnet", "sr")}
    with pytest.raises(ConfigError, match="car model and"):
        BaselinesConfig(models=models, chains={"x": ["s", "a"]}, sr_only="s")
    with pytest.raises(ConfigError, match="expected \\[car model, sr model\\]"):
        BaselinesConfig(models=models, chains={"x": ["a", "zzz"]}, sr_only="s")
    with pytest.raises(ConfigError, match="sr_only"):
        BaselinesConfig(models=models, chains={}, sr_only="a")
    with pytest.raises(ConfigError, match="task"):
        BaselineModel("arcnn", "denoise")
