"""Ray Train on CPU is reproducible: the same seed, data and parameters give the same weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from cajnn.config import DegradeConfig, ModelConfig, TrainConfig
from cajnn.data.image_io import save_rgb
from cajnn.data.sample import load_sample
from cajnn.data.shards import degrade_to_shard
from cajnn.training.checkpoint import STATE_FILE


def _final_weights(result) -> dict[str, torch.Tensor]:
    with result.checkpoint.as_directory() as d:
        state = torch.load(f"{d}/{STATE_FILE}", map_location="cpu", weights_only=True)
    return state["model"]


@pytest.mark.slow
def test_same_seed_same_weights_through_ray_train(tmp_path):
    import ray

    from cajnn.training.ray_trainer import fit

    src, shards = tmp_path / "hr", tmp_path / "shards"
    src.mkdir()
    shards.mkdir()
    for name in ("astronaut", "rocket", "immunohistochemistry"):  # several shards = several blocks
        save_rgb(load_sample(name)[:200, :200], src / f"{name}.png")
        degrade_to_shard(str(src / f"{name}.png"), name, str(shards), DegradeConfig(qualities_per_image=1, patch_size=16, stride=16))
    cfg = TrainConfig(model=ModelConfig(preset="micro"), iterations=8, batch_size=4, crop=8, log_every=4,
                      checkpoint_every=8, storage_path=str(tmp_path / "runs"), use_gpu="false", val_sets=[])
    ray.init(num_cpus=2, log_to_driver=False)
    try:
        first = _final_weights(fit(cfg, "repro-a", str(shards)))
        second = _final_weights(fit(cfg, "repro-b", str(shards)))
        other_seed = _final_weights(fit(replace(cfg, seed=1), "repro-c", str(shards)))
    finally:
        ray.shutdown()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    # the check has teeth: another seed gives other weights
    assert not all(torch.equal(first[k], other_seed[k]) for k in first)
    assert np.isfinite(sum(float(v.float().abs().sum()) for v in first.values()))
