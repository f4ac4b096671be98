"""Ray Train on CPU is reproducible: the same seed, data and parameters give the same weights,
and they are the weights of the Ray-free `Trainer` loop on the same data."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import ray
import torch

from cajnn.config import DegradeConfig, ModelConfig, RayConfig, TrainConfig
from cajnn.data.image_io import save_rgb
from cajnn.data.sample import load_sample
from cajnn.data.shards import degrade_to_shard, load_patch_set
from cajnn.training.checkpoint import STATE_FILE
from cajnn.training.trainer import Trainer, in_memory_batches, run


def _final_weights(result) -> dict[str, torch.Tensor]:
    with result.checkpoint.as_directory() as d:
        state = torch.load(f"{d}/{STATE_FILE}", map_location="cpu", weights_only=True)
    return state["model"]


def _plain_weights(cfg: TrainConfig, shards) -> dict[str, torch.Tensor]:
    """The same recipe without Ray: the `Trainer` fed from memory, as a Ray worker feeds it."""
    torch.set_num_threads(os.cpu_count() or 1)  # what fit() gives its single CPU worker
    patches = load_patch_set(shards)
    trainer = Trainer(cfg)
    trainer.prepare()
    run(trainer, in_memory_batches(trainer, patches))
    return trainer.net.state_dict()


@pytest.mark.integration
def test_same_seed_same_weights_through_ray_train_and_without_ray(tmp_path):
    from cajnn.training.ray_trainer import fit
    from pipelines._common import init_ray

    src, shards = tmp_path / "hr", tmp_path / "shards"
    src.mkdir()
    shards.mkdir()
    for name in ("astronaut", "rocket", "immunohistochemistry"):  # several shards = several blocks
        save_rgb(load_sample(name)[:200, :200], src / f"{name}.png")
        degrade_to_shard(
            str(src / f"{name}.png"), name, str(shards), DegradeConfig(qualities_per_image=1, patch_size=16, stride=16)
        )
    cfg = TrainConfig(
        model=ModelConfig(preset="micro"),
        iterations=8,
        batch_size=4,
        crop=8,
        log_every=4,
        checkpoint_every=8,
        storage_path=str(tmp_path / "runs"),
        use_gpu="false",
        val_sets=[],
    )
    init_ray(RayConfig(num_cpus=2))
    try:
        first = _final_weights(fit(cfg, "repro-a", str(shards), progress=False))
        second = _final_weights(fit(cfg, "repro-b", str(shards)))  # with the progress actor
        # what a set too large to hold does: a Ray Data stream instead of the object store
        streamed = fit(replace(cfg, feed="stream"), "repro-d", str(shards), progress=False)
        streamed_again = fit(replace(cfg, feed="stream"), "repro-e", str(shards), progress=False)
    finally:
        ray.shutdown()
    plain = _plain_weights(cfg, shards)
    other_seed = _plain_weights(replace(cfg, seed=1), shards)  # equal to Ray's, as `plain` shows
    assert first.keys() == second.keys() == plain.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert all(torch.equal(first[k], plain[k]) for k in first), "Ray path and plain Trainer loop differ"
    # the check has teeth: another seed gives other weights
    assert not all(torch.equal(first[k], other_seed[k]) for k in first)
    assert np.isfinite(sum(float(v.float().abs().sum()) for v in first.values()))
    assert streamed.iterations == cfg.iterations
    streamed_w, streamed_again_w = _final_weights(streamed), _final_weights(streamed_again)
    assert np.isfinite(sum(float(v.float().abs().sum()) for v in streamed_w.values()))
    # the stream keeps its block order and seeds its shuffle: reproducible too
    assert all(torch.equal(streamed_w[k], streamed_again_w[k]) for k in streamed_w)
