"""Tests of inference (cajnn/inference.py): any size, tiling, self-ensemble, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from cajnn.archs import build_model
from cajnn.inference import enhance, resolve_device

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def micro() -> nn.Module:
    torch.manual_seed(0)
    return build_model("micro").eval()


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 200.0 / w, y * 200.0 / h, 120 + 80 * np.sin(x / 3.0 + y / 5.0)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


class CountingModel(nn.Module):
    """Nearest x4 upsampling plus a position-independent colour shift; counts forward calls and
    gives up after `limit` (so that a runaway tiling loop fails fast)."""

    def __init__(self, limit: int = 10_000):
        super().__init__()
        self.calls = 0
        self.limit = limit
        self.config = {"scale": 4}

    def forward(self, x):
        self.calls += 1
        if self.calls > self.limit:
            raise RuntimeError(f"more than {self.limit} forward passes")
        return F.interpolate(x, scale_factor=4, mode="nearest") * 0.9 + 0.05


def test_odd_size_output_is_exactly_4x(micro):
    x = image(37, 53)
    y = enhance(x, micro, device="cpu")
    assert y.shape == (148, 212, 3) and y.dtype == np.uint8


def test_output_follows_the_model_scale():
    torch.manual_seed(0)
    model = build_model("micro", scale=2).eval()
    x = image(11, 13)
    assert enhance(x, model, device="cpu").shape == (22, 26, 3)
    assert enhance(x, model, device="cpu", tile=8, overlap=2).shape == (22, 26, 3)


def test_output_is_the_rounded_clamped_model_output(micro):
    x = image(9, 10)
    y = enhance(x, micro, device="cpu")
    with torch.no_grad():
        ref = micro(torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255.0)
    ref = (ref.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("tile, overlap", [(32, 16), (48, 16), (32, 8), (40, 12)])
def test_tiled_matches_whole_image(micro, tile, overlap):
    x = image(70, 90, seed=1)
    whole = enhance(x, micro, device="cpu")
    calls = []
    hook = micro.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    try:
        tiled = enhance(x, micro, device="cpu", tile=tile, overlap=overlap)
    finally:
        hook.remove()
    assert len(calls) > 1  # it really ran in tiles
    assert all(max(s[-2:]) <= tile + 2 * overlap for s in calls)  # and no pass exceeds the bound
    assert tiled.shape == whole.shape
    assert psnr(tiled, whole) >= 50.0


def test_tiling_without_overlap_shows_seams(micro):
    """Sanity check that the PSNR bound above can fail: zero context gives visible seams."""
    x = image(70, 90, seed=1)
    whole = enhance(x, micro, device="cpu")
    tiled = enhance(x, micro, device="cpu", tile=16, overlap=0)
    assert tiled.shape == whole.shape
    assert not np.array_equal(tiled, whole)


def test_no_tiling_when_image_fits(micro):
    x = image(20, 30)
    calls = []
    hook = micro.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        enhance(x, micro, device="cpu", tile=30)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_tiled_covers_every_output_pixel():
    model = CountingModel()
    x = image(23, 31)
    out = enhance(x, model, device="cpu", tile=12, overlap=3)
    ref = np.clip(np.round((x.repeat(4, 0).repeat(4, 1) / 255.0 * 0.9 + 0.05) * 255), 0, 255)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_small_tile_at_default_overlap_is_not_degenerate():
    model = CountingModel(limit=100)
    x = image(70, 90)
    out = enhance(x, model, device="cpu", tile=32)  # 32 = 2 x the default overlap
    assert out.shape == (280, 360, 3)
    assert model.calls <= 30


@pytest.mark.parametrize(
    "transform",
    [np.rot90, np.fliplr, np.flipud, lambda a: np.rot90(a, 3), lambda a: np.rot90(np.fliplr(a))],
    ids=["rot90", "fliplr", "flipud", "rot270", "transpose"],
)
def test_self_ensemble_is_dihedral_equivariant(micro, transform):
    x = image(21, 26, seed=2)
    y = enhance(x, micro, device="cpu", self_ensemble=True)
    y_t = enhance(np.ascontiguousarray(transform(x)), micro, device="cpu", self_ensemble=True)
    assert y_t.shape == transform(y).shape
    assert np.abs(y_t.astype(int) - transform(y).astype(int)).max() <= 1


def test_self_ensemble_is_the_mean_of_8_passes(micro):
    x = image(12, 15, seed=3)
    calls = []
    hook = micro.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    try:
        y = enhance(x, micro, device="cpu", self_ensemble=True)
    finally:
        hook.remove()
    assert len(calls) == 8
    assert calls.count((1, 3, 12, 15)) == 4 and calls.count((1, 3, 15, 12)) == 4
    plain = enhance(x, micro, device="cpu")
    assert y.shape == plain.shape
    assert not np.array_equal(y, plain)  # the ensemble actually changes the result


def test_self_ensemble_with_tiling(micro):
    x = image(40, 44, seed=4)
    whole = enhance(x, micro, device="cpu", self_ensemble=True)
    tiled = enhance(x, micro, device="cpu", self_ensemble=True, tile=32, overlap=8)
    assert psnr(tiled, whole) >= 50.0


def test_non_contiguous_input_accepted(micro):
    x = image(16, 20)
    y = enhance(np.rot90(x), micro, device="cpu")
    np.testing.assert_array_equal(y, enhance(np.ascontiguousarray(np.rot90(x)), micro, device="cpu"))


def test_read_only_input_accepted_and_not_modified(micro):
    x = image(10, 12)
    x.setflags(write=False)
    before = x.copy()
    y = enhance(x, micro, device="cpu")
    assert y.shape == (40, 48, 3)
    np.testing.assert_array_equal(x, before)


def test_input_array_not_modified(micro):
    x = image(10, 12)
    before = x.copy()
    enhance(x, micro, device="cpu")
    np.testing.assert_array_equal(x, before)


def test_pil_input_accepted(micro):
    x = image(14, 17)
    from_array = enhance(x, micro, device="cpu")
    np.testing.assert_array_equal(enhance(Image.fromarray(x), micro, device="cpu"), from_array)
    gray = Image.fromarray(x[..., 0], mode="L")  # converted to RGB
    assert enhance(gray, micro, device="cpu").shape == (56, 68, 3)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8, 3), np.float32),
        np.zeros((8, 8, 3), np.uint16),
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((1, 8, 8, 3), np.uint8),
    ],
    ids=["float32", "uint16", "gray2d", "rgba", "batched"],
)
def test_bad_input_rejected(micro, bad):
    with pytest.raises(ValueError, match="uint8"):
        enhance(bad, micro, device="cpu")


@pytest.mark.parametrize("training", [True, False])
def test_training_flag_restored(training):
    torch.manual_seed(0)
    model = build_model("micro")
    model.train(training)
    enhance(image(8, 9), model, device="cpu")
    assert model.training is training
    assert all(m.training is training for m in model.modules())


def test_training_flag_restored_on_error():
    class Boom(nn.Module):
        def forward(self, x):
            assert not self.training  # inference runs in eval mode
            raise RuntimeError("boom")

    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        enhance(image(8, 8), model, device="cpu")
    assert model.training is True


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")
