"""The Ray-free training loop (`cajnn.training.trainer`): exact resume, events, data errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cajnn.config import ModelConfig, TrainConfig
from cajnn.data.shards import PatchSet
from cajnn.training.trainer import Trainer, in_memory_batches, run


def _cfg(**kw) -> TrainConfig:
    base = dict(
        model=ModelConfig(preset="micro"),
        iterations=6,
        batch_size=2,
        crop=8,
        log_every=2,
        checkpoint_every=3,
        restart_every=6,
        val_sets=[],
        lr=1e-3,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (12, 48, 48, 3), dtype=np.uint8)
    return PatchSet(hr, np.ascontiguousarray(hr[:, ::4, ::4]), np.array(["a"] * 9 + ["b"] * 3, dtype=object))


def _train(cfg, patches, trainer=None):
    trainer = trainer or Trainer(cfg)
    trainer.prepare()
    run(trainer, in_memory_batches(trainer, patches))
    return trainer


def test_resumed_run_equals_uninterrupted_run(patches, tmp_path):
    straight = _train(_cfg(), patches)
    half = _train(_cfg(iterations=3), patches)  # same seed: the first 3 steps of the same run
    half.save(tmp_path)
    resumed = Trainer(_cfg())
    resumed.restore(tmp_path)
    assert resumed.iteration == 3 and resumed.resumed_from == [3]
    _train(None, patches, resumed)
    a, b = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.optimizer_steps == straight.optimizer_steps == 6
    assert math.isclose(resumed.optimizer.param_groups[0]["lr"], straight.optimizer.param_groups[0]["lr"])


def test_other_seed_other_weights(patches):
    a = _train(_cfg(), patches).net.state_dict()
    b = _train(_cfg(seed=1), patches).net.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_events_at_log_and_checkpoint_points(patches):
    events = []
    trainer = Trainer(_cfg())
    trainer.prepare()
    run(
        trainer,
        in_memory_batches(trainer, patches),
        lambda t, m, ckpt: events.append((t.iteration, None if m is None else sorted(m), ckpt)),
    )
    its = [(it, m is not None, ckpt) for it, m, ckpt in events]
    assert its == [(2, True, False), (3, False, True), (4, True, False), (6, True, True)]
    keys = events[0][1]
    assert {"iteration", "loss", "lr", "samples_per_s", "data_wait_fraction", "step_time_s"} <= set(keys)


def test_no_data_is_a_clear_error():
    trainer = Trainer(_cfg())
    trainer.prepare()
    empty = PatchSet(np.zeros((0, 48, 48, 3), np.uint8), np.zeros((0, 12, 12, 3), np.uint8), np.zeros(0, object))
    with pytest.raises(RuntimeError, match="no batch"):
        run(trainer, in_memory_batches(trainer, empty))


def test_image_balance_draws_each_source_equally(patches):
    """train.balance: image -- a source with 3 patches is drawn as often as one with 9."""
    p = patches.sampling_weights("image")
    assert np.isclose(p[:9].sum(), 0.5) and np.isclose(p[9:].sum(), 0.5)
    assert patches.sampling_weights("patch") is None
    trainer = Trainer(_cfg(balance="image", batch_size=4000))
    hr, _ = trainer.sample(patches, p)
    from_b = sum(any(np.array_equal(h, patches.hr[i]) for i in range(9, 12)) for h in hr[:400])
    assert 150 < from_b < 250  # ~200 of 400 (uniform sampling would give ~100)


def test_channels_last_by_default_on_cpu():
    trainer = Trainer(_cfg())
    trainer.prepare()
    assert trainer.channels_last
    conv = next(m for m in trainer.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not Trainer(_cfg(channels_last="false")).channels_last


def test_dense_block_init_is_scaled_kaiming():
    """ESRGAN's init: Kaiming-normal x 0.1, zero bias, in every dense-block conv only."""
    from cajnn.archs import build_model
    from cajnn.archs.rrdb import ResidualDenseBlock

    torch.manual_seed(0)
    net = build_model("paper", num_blocks=2)
    blocks = [m for m in net.modules() if isinstance(m, ResidualDenseBlock)]
    assert blocks
    for conv in (c for b in blocks for c in b.convs):
        fan_in = conv.weight[0].numel()
        expected = 0.1 * math.sqrt(2.0 / fan_in)
        assert abs(float(conv.weight.detach().std()) / expected - 1) < 0.1
        assert torch.count_nonzero(conv.bias) == 0
    # the other convs keep PyTorch's default (uniform, non-zero biases)
    assert torch.count_nonzero(net.conv_first.bias) > 0
