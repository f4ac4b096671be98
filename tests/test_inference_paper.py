"""The paper network (14.9M parameters) through cajnn.enhance: odd sizes, automatic tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cajnn.archs import build_model
from cajnn.inference import enhance, plan_tiles

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_paper_network_odd_size_whole_and_auto_tiled():
    torch.manual_seed(0)
    model = build_model("paper").eval()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:37, 0:53]
    img = np.clip(
        np.stack([xx * 4.0, yy * 6.0, 128 + 80 * np.sin(xx / 3 + yy / 5)], -1) + rng.normal(0, 15, (37, 53, 3)), 0, 255
    ).astype(np.uint8)
    whole = enhance(img, model, device="cpu", tile=0)
    assert whole.shape == (148, 212, 3)
    budget = plan_tiles(37, 53, model, tile=0).estimated_bytes // 2  # forces automatic tiles
    plan = plan_tiles(37, 53, model, memory_budget=budget)
    assert plan.n_tiles > 1
    tiled = enhance(img, model, device="cpu", memory_budget=budget)
    mse = np.mean((tiled.astype(np.float64) - whole) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= 50.0
