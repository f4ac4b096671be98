"""Tests of inference (cajnn/inference.py): any size, tiling, self-ensemble, input checks."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

import cajnn.inference as inference
from cajnn.archs import PRESETS, build_model
from cajnn.archs.memory import estimate_forward_bytes, peak_activation_bytes_per_pixel
from cajnn.inference import (
    CPU_MEMORY_CAP,
    DEFAULT_OVERLAP,
    MIN_AUTO_TILE,
    cpu_supports_bf16,
    enhance,
    plan_tiles,
    resolve_device,
    resolve_dtype,
)

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
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="cuda:x"):
        resolve_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is missing")
def test_resolve_device_cuda_missing_is_a_clear_error():
    for name in ("cuda", "cuda:1"):
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device(name)


# --------------------------------------------------------------------------- automatic tiling


def _window_calls(model):
    calls = []
    return calls, model.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape[-2:])))


def test_auto_tile_matches_whole_image_at_default_overlap(micro):
    x = image(70, 90, seed=1)
    whole = enhance(x, micro, device="cpu", tile=0)
    plan = plan_tiles(70, 90, micro, memory_budget=int(0.5 * plan_tiles(70, 90, micro, tile=0).estimated_bytes))
    assert plan.n_tiles > 1 and plan.budget_bytes is not None
    calls, hook = _window_calls(micro)
    try:
        tiled = enhance(x, micro, device="cpu", memory_budget=plan.budget_bytes)  # tile=None: automatic
    finally:
        hook.remove()
    assert len(calls) == plan.n_tiles > 1
    bound = (plan.tile_h + 2 * DEFAULT_OVERLAP, plan.tile_w + 2 * DEFAULT_OVERLAP)
    assert all(h <= bound[0] and w <= bound[1] for h, w in calls)
    assert psnr(tiled, whole) >= 50.0


def test_auto_tile_uses_whole_image_when_it_fits(micro):
    x = image(40, 50)
    calls, hook = _window_calls(micro)
    try:
        enhance(x, micro, device="cpu", memory_budget=2**40)
    finally:
        hook.remove()
    assert calls == [(40, 50)]


def _brute_force_plan(h, w, model, budget, overlap=DEFAULT_OVERLAP):
    """Largest square T whose window fits the budget (linear scan), then balanced tiles."""
    fixed = plan_tiles(h, w, model, tile=0).estimated_bytes - estimate_forward_bytes(model.config, h * w)
    fits = [
        t
        for t in range(MIN_AUTO_TILE, max(h, w) + 1)
        if fixed + estimate_forward_bytes(model.config, min(t + 2 * overlap, h) * min(t + 2 * overlap, w)) <= budget
    ]
    t = max(fits, default=MIN_AUTO_TILE)
    return math.ceil(h / math.ceil(h / t)), math.ceil(w / math.ceil(w / t))


@pytest.mark.parametrize("budget_mb", [300, 600, 1500])
def test_plan_is_the_largest_tile_within_budget(budget_mb):
    with torch.device("meta"):
        model = build_model("paper")  # sizes only: plan_tiles never runs the model
    h, w, budget = 750, 1000, budget_mb * 2**20
    plan = plan_tiles(h, w, model, memory_budget=budget)
    assert plan.estimated_bytes <= budget and plan.budget_bytes == budget
    assert (plan.tile_h, plan.tile_w) == _brute_force_plan(h, w, model, budget)
    assert plan.n_tiles == math.ceil(h / plan.tile_h) * math.ceil(w / plan.tile_w) > 1


def test_plan_balances_tiles():
    model = build_model("micro")
    fixed = plan_tiles(100, 70, model, tile=0).estimated_bytes - estimate_forward_bytes(model.config, 7000)
    budget = fixed + estimate_forward_bytes(model.config, (40 + 2 * 16) ** 2)  # T = 40 just fits
    plan = plan_tiles(100, 70, model, memory_budget=budget)
    # a fixed 40-pixel grid would leave 20- and 30-pixel slivers; balanced: ceil(100/3), ceil(70/2)
    assert (plan.tile_h, plan.tile_w, plan.n_tiles) == (34, 35, 6)


def test_plan_explicit_and_whole_and_minimum():
    model = build_model("micro")

    def grid(**kw):
        p = plan_tiles(50, 60, model, **kw)
        return p.tile_h, p.tile_w, p.overlap, p.n_tiles, p.budget_bytes

    assert grid(tile=0) == (50, 60, 16, 1, None)
    assert grid(tile=32) == (32, 32, 16, 4, None)
    assert grid(tile=100) == (50, 60, 16, 1, None)
    assert plan_tiles(50, 60, model, tile=32, overlap=4).overlap == 4
    tiny = plan_tiles(500, 600, model, memory_budget=1)  # nothing fits: the smallest tile
    assert (tiny.tile_h, tiny.tile_w) == (32, 32) and tiny.estimated_bytes > tiny.budget_bytes


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_plan_rejects_bad_tile(bad):
    with pytest.raises(ValueError, match="tile"):
        plan_tiles(10, 10, build_model("micro"), tile=bad)


def test_plan_rejects_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        plan_tiles(10, 10, build_model("micro"), overlap=-2)


def test_default_budget_follows_available_memory(monkeypatch):
    import psutil

    class VM:
        available = 600 * 2**20

    monkeypatch.setattr(psutil, "virtual_memory", lambda: VM)
    monkeypatch.setattr(inference, "_cgroup_headroom", lambda: None)
    cpu = torch.device("cpu")
    assert inference.default_memory_budget(cpu) == 300 * 2**20
    VM.available = 64 * 2**30
    assert inference.default_memory_budget(cpu) == CPU_MEMORY_CAP
    VM.available = 600 * 2**20
    monkeypatch.setattr(inference, "_cgroup_headroom", lambda: 100 * 2**20)  # container limit
    assert inference.default_memory_budget(cpu) == 50 * 2**20
    with torch.device("meta"):
        paper = build_model("paper")
    plan = plan_tiles(1000, 750, paper)
    assert plan.budget_bytes == 50 * 2**20 and plan.n_tiles > 1


def test_memory_estimate_of_the_paper_network():
    cfg = dict(PRESETS["paper"])
    # x4: the second PixelShuffle stage holds 2 x 16 x 64 floats per LR pixel plus f^L',
    # the trunk sum and the input: (34 * 64 + 3) * 4 bytes.
    assert peak_activation_bytes_per_pixel(cfg) == (34 * 64 + 3) * 4
    assert peak_activation_bytes_per_pixel(cfg, act_bytes=2) < peak_activation_bytes_per_pixel(cfg)
    assert peak_activation_bytes_per_pixel(cfg, self_ensemble=True) > peak_activation_bytes_per_pixel(cfg)
    assert peak_activation_bytes_per_pixel({"scale": 4}) == peak_activation_bytes_per_pixel(cfg)  # foreign model
    assert peak_activation_bytes_per_pixel(None) == peak_activation_bytes_per_pixel(cfg)
    for overrides in ({"scale": 2}, {"scale": 3}, {"upsampler": "pixelshuffle_single"}, {"nf": 32, "growth": 16}):
        assert peak_activation_bytes_per_pixel({**cfg, **overrides}) < peak_activation_bytes_per_pixel(cfg)
    for context in ("none", "sequential_atrous", "nonlocal"):  # the HR part dominates either way
        assert peak_activation_bytes_per_pixel({**cfg, "context": context}) == peak_activation_bytes_per_pixel(cfg)
    assert peak_activation_bytes_per_pixel({**cfg, "upsampler": "upconv"}) > peak_activation_bytes_per_pixel(cfg)
    assert estimate_forward_bytes(cfg, 0) > 0  # constant allocator slack
    assert estimate_forward_bytes(cfg, 2000) - estimate_forward_bytes(cfg, 1000) == pytest.approx(
        1000 * peak_activation_bytes_per_pixel(cfg) * 1.3, abs=2
    )


_MEASURE = """
import ctypes, json, sys, torch
from cajnn.archs import build_model
from cajnn.archs.memory import estimate_forward_bytes
torch.set_num_threads(1)
libc = ctypes.CDLL("libc.so.6")
def kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
torch.manual_seed(0)
model = build_model("cpu-small").eval()
with torch.inference_mode():
    model(torch.rand(1, 3, 16, 16).to(memory_format=torch.channels_last))  # warm-up
    x = torch.rand(1, 3, 192, 192).to(memory_format=torch.channels_last)
    libc.malloc_trim(0)
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS (VmHWM)
    base = kb("VmRSS:")
    y = model(x)
    peak = kb("VmHWM:") - base
print(json.dumps({"measured": peak, "estimated": estimate_forward_bytes(model.config, 192 * 192)}))
"""


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.access("/proc/self/clear_refs", os.W_OK)),
    reason="needs Linux /proc/self/clear_refs to reset the peak RSS",
)
def test_memory_estimate_bounds_the_measured_peak_rss():
    """The estimate that automatic tiling relies on is an upper bound of the real peak resident
    memory of a forward pass, and not a wildly pessimistic one."""
    res = subprocess.run(
        [sys.executable, "-c", _MEASURE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["measured"] <= r["estimated"] <= 2 * r["measured"], r


# --------------------------------------------------------------------------- layout, dtype, callbacks


def test_channels_last_is_used_and_matches_contiguous(micro):
    x = image(33, 29, seed=5)
    formats = []
    hook = micro.conv_first.register_forward_pre_hook(
        lambda m, i: formats.append(i[0].is_contiguous(memory_format=torch.channels_last) and not i[0].is_contiguous())
    )
    try:
        cl = enhance(x, micro, device="cpu", channels_last=True)
        nchw = enhance(x, micro, device="cpu", channels_last=False)
        cl_tiled = enhance(x, micro, device="cpu", channels_last=True, tile=16)
    finally:
        hook.remove()
    assert formats[0] is True and formats[1] is False and all(formats[2:])
    assert np.abs(cl.astype(int) - nchw.astype(int)).max() <= 1
    assert psnr(cl_tiled, nchw) >= 50.0
    assert all(p.is_contiguous() for p in micro.parameters())  # the model itself is not converted


def test_output_is_c_contiguous_uint8(micro):
    y = enhance(image(13, 7), micro, device="cpu", tile=5, overlap=2)
    assert y.flags["C_CONTIGUOUS"] and y.dtype == np.uint8 and y.shape == (52, 28, 3)


def test_on_tile_reports_progress(micro):
    seen = []
    enhance(image(30, 40), micro, device="cpu", tile=16, on_tile=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 6) for i in range(1, 7)]


@pytest.mark.skipif(
    not cpu_supports_bf16(), reason="this CPU has no native bf16 (no avx512_bf16/amx_bf16 flag in /proc/cpuinfo)"
)
def test_bf16_autocast_on_cpu(micro):
    x = image(24, 31, seed=6)
    dtypes = []
    hook = micro.conv_first.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    try:
        y16 = enhance(x, micro, device="cpu", dtype="bf16")
        y16_tiled = enhance(x, micro, device="cpu", dtype="bf16", tile=16, self_ensemble=True)
    finally:
        hook.remove()
    y32 = enhance(x, micro, device="cpu")
    assert set(dtypes) == {torch.bfloat16}  # the convolutions really ran in bf16
    assert y16.shape == y16_tiled.shape == y32.shape and y16.dtype == np.uint8
    assert psnr(y16, y32) >= 35.0  # bf16 keeps ~3 significant digits
    assert psnr(y16_tiled, y32) >= 35.0
    assert not np.array_equal(y16, y32)


def test_bf16_without_cpu_support_warns_and_runs_fp32(micro, monkeypatch):
    monkeypatch.setattr(inference, "cpu_supports_bf16", lambda: False)
    x = image(12, 14)
    with pytest.warns(RuntimeWarning, match="bf16 is not supported.*fp32"):
        y = enhance(x, micro, device="cpu", dtype="bf16")
    np.testing.assert_array_equal(y, enhance(x, micro, device="cpu"))


def test_resolve_dtype():
    cpu = torch.device("cpu")
    assert resolve_dtype("fp32", cpu) is None and resolve_dtype(None, cpu) is None
    assert resolve_dtype(torch.float32, cpu) is None
    with pytest.raises(ValueError, match="fp8.*use fp32, bf16 or fp16"):
        resolve_dtype("fp8", cpu)
    if cpu_supports_bf16():
        assert resolve_dtype("bf16", cpu) is torch.bfloat16
        assert resolve_dtype("BF16", cpu) is torch.bfloat16


@pytest.mark.parametrize("name", ["fp16", "FP16", "float16", torch.float16])
def test_fp16_on_cpu_is_a_clear_error(micro, name):
    msg = "fp16 needs a CUDA device; use bf16 or fp32 on CPU"
    with pytest.raises(ValueError, match=msg):
        resolve_dtype(name, torch.device("cpu"))
    with pytest.raises(ValueError, match=msg):
        enhance(image(8, 8), micro, device="cpu", dtype=name)


@pytest.mark.parametrize("name", ["fp16", "float16", torch.float16])
def test_fp16_resolves_on_cuda_without_touching_the_gpu(name, monkeypatch):
    # No CUDA call is needed to pick fp16 (unlike bf16, which asks the GPU whether it has it):
    # this holds on machines without a GPU too.
    def no_gpu(*args, **kwargs):
        raise AssertionError("resolve_dtype('fp16') queried the GPU")

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", no_gpu)
    monkeypatch.setattr(torch.cuda, "get_device_name", no_gpu)
    assert resolve_dtype(name, torch.device("cuda")) is torch.float16
    assert resolve_dtype(name, torch.device("cuda:1")) is torch.float16


def test_half_dtypes_plan_two_bytes_per_activation():
    net = build_model("cpu-small")
    kw = dict(device="cpu", tile=0)
    fp32 = plan_tiles(300, 400, net, **kw).estimated_bytes
    bf16 = plan_tiles(300, 400, net, dtype=torch.bfloat16, **kw).estimated_bytes
    fp16 = plan_tiles(300, 400, net, dtype=torch.float16, **kw).estimated_bytes
    assert fp16 == bf16 < fp32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast runs on CUDA only")
def test_fp16_autocast_on_cuda(micro):
    x = image(24, 31, seed=6)
    y16 = enhance(x, micro, device="cuda", dtype="fp16")
    y32 = enhance(x, micro, device="cuda", dtype="fp32")
    micro.to("cpu")
    assert y16.shape == y32.shape and y16.dtype == np.uint8
    assert psnr(y16, y32) >= 40.0  # fp16 keeps ~3.3 significant digits


def test_cpu_bf16_detection_reads_cpu_flags(monkeypatch):
    monkeypatch.setattr(inference, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert cpu_supports_bf16() is torch.backends.mkldnn.is_available()
    monkeypatch.setattr(inference, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert cpu_supports_bf16() is False
    monkeypatch.setattr(inference, "_cpu_flags", lambda: None)  # no /proc/cpuinfo
    assert cpu_supports_bf16() is False


def test_model_with_wrong_scale_is_reported():
    model = CountingModel()
    model.config = {"scale": 2}  # claims x2 but returns x4
    with pytest.raises(RuntimeError, match="expected scale 2"):
        enhance(image(8, 8), model, device="cpu")


def test_enhance_many_equals_enhance_and_keeps_order_and_sizes(micro):
    """Batched small images: exact where no padding is needed, close where it is (the padding
    only changes pixels near the right and bottom edges), every output at 4x its own input."""
    from cajnn.inference import enhance_many

    imgs = [image(16, 32, 1), image(37, 53, 2), image(16, 32, 3), image(35, 60, 4)]
    outs = enhance_many(imgs, micro, multiple=16, batch_size=2)
    assert [o.shape for o in outs] == [(4 * i.shape[0], 4 * i.shape[1], 3) for i in imgs]
    for img, out in zip(imgs, outs):
        ref = enhance(img, micro, tile=0)
        if img.shape[0] % 16 == 0 and img.shape[1] % 16 == 0:
            assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1  # batched float order
        else:
            inner = (slice(0, 4 * (img.shape[0] - 12)), slice(0, 4 * (img.shape[1] - 12)))  # > receptive field
            assert np.abs(out[inner].astype(int) - ref[inner].astype(int)).max() <= 1
            assert psnr(out, ref) > 35
    assert enhance_many([], micro) == []
