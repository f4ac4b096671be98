"""Tests of the training building blocks: augmentation, losses, the guarded step and
checkpoints (cajnn/training/{augment,losses,step,checkpoint}.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cajnn.archs import build_model
from cajnn.data.dihedral import dihedral, dihedral_inverse
from cajnn.degradation.imresize import matlab_imresize
from cajnn.training.augment import augment_batch, random_crop_pairs, to_tensor
from cajnn.training.checkpoint import META_FILE, STATE_FILE, load_training_state, save_training_state
from cajnn.training.losses import CharbonnierLoss, build_loss, clean_lr_target
from cajnn.training.step import NonFiniteLossError, StepGuard, train_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- augmentation -----------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(8))
def test_dihedral_inverse_undoes_dihedral(k):
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    y = dihedral(x, k)
    assert y.shape == ((2, 3, 7, 5) if k % 2 else (2, 3, 5, 7))
    assert torch.equal(dihedral_inverse(y, k), x)


def test_eight_dihedral_variants_are_distinct():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    variants = [dihedral(x, k) for k in range(8)]
    for i in range(8):
        for j in range(i + 1, 8):
            assert not torch.equal(variants[i], variants[j]), (i, j)
    assert torch.equal(variants[0], x)


def test_dihedral_matches_numpy_rotations_and_flip():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = torch.from_numpy(a)[None, None]
    for k in range(4):
        np.testing.assert_array_equal(dihedral(t, k)[0, 0].numpy(), np.rot90(a, k))
        np.testing.assert_array_equal(dihedral(t, k + 4)[0, 0].numpy(), np.rot90(np.fliplr(a), k))


def test_random_crop_pairs_stay_aligned():
    rng = np.random.default_rng(0)
    scale, crop = 4, 6
    lr = rng.integers(0, 256, (16, 10, 12, 3), dtype=np.uint8)
    hr = lr.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest upsampling of LR
    hr_c, lr_c = random_crop_pairs(hr, lr, crop, scale, np.random.default_rng(1))
    assert lr_c.shape == (16, crop, crop, 3) and hr_c.shape == (16, crop * scale, crop * scale, 3)
    np.testing.assert_array_equal(hr_c, lr_c.repeat(scale, axis=1).repeat(scale, axis=2))
    # each crop is a real window of its own sample, and the positions vary between samples
    positions = set()
    for i in range(16):
        hits = [
            (y, x)
            for y in range(10 - crop + 1)
            for x in range(12 - crop + 1)
            if np.array_equal(lr[i, y : y + crop, x : x + crop], lr_c[i])
        ]
        assert hits
        positions.add(hits[0])
    assert len(positions) > 1


def test_random_crop_pairs_reproducible_and_full_size():
    lr = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    hr = lr.repeat(2, 1).repeat(2, 2)
    a = random_crop_pairs(hr, lr, 5, 2, np.random.default_rng(5))
    b = random_crop_pairs(hr, lr, 5, 2, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    full_hr, full_lr = random_crop_pairs(hr, lr, 8, 2, np.random.default_rng(0))
    np.testing.assert_array_equal(full_lr, lr)
    np.testing.assert_array_equal(full_hr, hr)


def test_random_crop_too_large():
    lr = np.zeros((1, 8, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="larger"):
        random_crop_pairs(np.zeros((1, 32, 40, 3), np.uint8), lr, 9, 4, np.random.default_rng(0))


def test_to_tensor():
    arr = np.zeros((2, 3, 4, 3), np.uint8)
    arr[0, 1, 2] = (255, 0, 51)
    t = to_tensor(arr)
    assert t.shape == (2, 3, 3, 4) and t.dtype == torch.float32
    assert t[0, :, 1, 2].tolist() == pytest.approx([1.0, 0.0, 0.2])


def test_augment_batch_applies_same_transform_to_hr_and_lr():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (32, 8, 8, 3), dtype=np.uint8)
    hr = lr.repeat(4, axis=1).repeat(4, axis=2)
    hr_t, lr_t = augment_batch(hr, lr, 6, 4, np.random.default_rng(3))
    assert hr_t.shape == (32, 3, 24, 24) and lr_t.shape == (32, 3, 6, 6)
    assert torch.equal(F.interpolate(lr_t, scale_factor=4, mode="nearest"), hr_t)
    # the 8 dihedral variants are actually used (some sample is not an identity crop)
    untouched = [
        any(
            np.array_equal(
                lr[i, y : y + 6, x : x + 6], (lr_t[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            )
            for y in range(3)
            for x in range(3)
        )
        for i in range(32)
    ]
    assert not all(untouched)


# --- losses -----------------------------------------------------------------------------------


def test_build_loss_names():
    assert isinstance(build_loss("l1"), nn.L1Loss)
    assert isinstance(build_loss("mse"), nn.MSELoss)
    assert isinstance(build_loss("charbonnier"), CharbonnierLoss)


def test_build_loss_unknown():
    with pytest.raises(ValueError) as exc:
        build_loss("huber")
    assert "huber" in str(exc.value) and "l1" in str(exc.value)


def test_loss_values():
    pred = torch.tensor([0.0, 1.0, 3.0])
    target = torch.tensor([0.0, 0.0, 1.0])
    assert build_loss("l1")(pred, target).item() == pytest.approx(1.0)
    assert build_loss("mse")(pred, target).item() == pytest.approx(5.0 / 3)


def test_charbonnier_close_to_l1_for_large_errors():
    torch.manual_seed(0)
    pred = torch.rand(4, 3, 8, 8)
    target = pred + torch.where(torch.rand_like(pred) > 0.5, 0.5, -0.5)
    ch = CharbonnierLoss()(pred, target).item()
    l1 = F.l1_loss(pred, target).item()
    assert ch == pytest.approx(l1, rel=1e-5)
    assert ch >= l1


def test_charbonnier_floor_is_eps():
    x = torch.rand(2, 3, 4, 4)
    assert CharbonnierLoss(eps=1e-3)(x, x).item() == pytest.approx(1e-3)
    assert CharbonnierLoss(eps=0.1)(x, x).item() == pytest.approx(0.1)


def test_charbonnier_gradient_finite_at_zero_error():
    x = torch.zeros(3, requires_grad=True)
    CharbonnierLoss()(x, torch.zeros(3)).backward()
    assert torch.isfinite(x.grad).all()


# --- StepGuard and train_step -----------------------------------------------------------------


def test_step_guard_skips_then_raises():
    guard = StepGuard(max_consecutive=3)
    nan, inf, ok = torch.tensor(float("nan")), torch.tensor(float("inf")), torch.tensor(1.0)
    assert guard.check(ok) is True
    assert guard.check(nan) is False
    assert guard.check(inf) is False
    assert (guard.skipped, guard.consecutive) == (2, 2)
    assert guard.check(ok) is True  # a finite loss resets the run
    assert guard.consecutive == 0 and guard.skipped == 2
    assert guard.check(nan) is False
    assert guard.check(-inf) is False
    with pytest.raises(NonFiniteLossError, match="3 consecutive"):
        guard.check(nan)
    assert guard.skipped == 5


def test_step_guard_default_limit():
    guard = StepGuard()
    for _ in range(9):
        assert guard.check(torch.tensor(float("nan"))) is False
    with pytest.raises(NonFiniteLossError):
        guard.check(torch.tensor(float("nan")))


def _tiny_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(2, 3, 32, 32, generator=g)
    lr = F.avg_pool2d(hr, 4)
    return lr, hr


def test_train_step_reduces_loss():
    torch.manual_seed(0)
    model = build_model("micro")
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    loss_fn = build_loss("l1")
    guard = StepGuard()
    lr, _ = _tiny_batch()
    # a learnable target: an affine function of the bilinear upsampling of the input
    hr = F.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False) * 0.5 + 0.3
    losses = [train_step(model, opt, loss_fn, lr, hr, guard) for _ in range(20)]
    assert all(isinstance(v, float) for v in losses)
    assert losses[-1] < 0.7 * losses[0]
    assert max(losses[-5:]) < losses[0]
    assert guard.skipped == 0


def test_train_step_skips_non_finite_without_updating():
    torch.manual_seed(0)
    model = build_model("micro")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    lr, hr = _tiny_batch()
    hr_bad = hr.clone()
    hr_bad[0, 0, 0, 0] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    guard = StepGuard(max_consecutive=2)
    assert train_step(model, opt, build_loss("l1"), lr, hr_bad, guard) is None
    assert guard.skipped == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(NonFiniteLossError):
        train_step(model, opt, build_loss("l1"), lr, hr_bad, guard)


def test_train_step_aux_lr_loss_is_added():
    torch.manual_seed(0)
    model = build_model("micro", aux_lr_head=True)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # weights never change
    loss_fn = build_loss("l1")
    lr, hr = _tiny_batch()
    clean = lr.flip(-1)
    base = train_step(model, opt, loss_fn, lr, hr, StepGuard(), aux_weight=0.0, clean_lr=clean)
    with_aux = train_step(model, opt, loss_fn, lr, hr, StepGuard(), aux_weight=0.5, clean_lr=clean)
    with torch.no_grad():
        sr, lr_pred = model(lr)
        expected_aux = loss_fn(lr_pred, clean).item()
        assert base == pytest.approx(loss_fn(sr, hr).item(), rel=1e-5)
    assert with_aux == pytest.approx(base + 0.5 * expected_aux, rel=1e-5)


def test_train_step_grad_clip_limits_update():
    torch.manual_seed(0)
    model = build_model("micro")
    start = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    lr, hr = _tiny_batch()
    train_step(model, opt, build_loss("mse"), lr, hr, StepGuard(), grad_clip=1e-3)
    moved = torch.sqrt(sum(((p.detach() - s) ** 2).sum() for p, s in zip(model.parameters(), start)))
    assert 0 < moved.item() <= 1e-3 * 1.01


# --- checkpoints ------------------------------------------------------------------------------


class Wrapped(nn.Module):
    """Stands in for DistributedDataParallel: the real network is `.module`."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


def _trained_setup(seed: int):
    torch.manual_seed(seed)
    model = build_model("micro")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=5, eta_min=1e-6)
    return model, opt, sched


@pytest.mark.parametrize("wrap", [False, True])
def test_training_state_round_trip(tmp_path, wrap):
    model, opt, sched = _trained_setup(0)
    lr, hr = _tiny_batch()
    guard = StepGuard()
    for _ in range(3):
        train_step(model, opt, build_loss("l1"), lr, hr, guard)
        sched.step()
    rng = np.random.default_rng(123)
    rng.random(7)  # advance the stream

    save_training_state(tmp_path / "ckpt", Wrapped(model) if wrap else model, opt, sched, 3, rng, {"note": "x"})
    assert (tmp_path / "ckpt" / STATE_FILE).is_file() and (tmp_path / "ckpt" / META_FILE).is_file()
    expected_np = rng.random(5)
    expected_torch = torch.rand(4)

    model2, opt2, sched2 = _trained_setup(1)
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    rng2 = np.random.default_rng(999)
    meta = load_training_state(tmp_path / "ckpt", Wrapped(model2) if wrap else model2, opt2, sched2, rng2)

    assert meta["iteration"] == 3 and meta["note"] == "x"
    assert meta["model_config"] == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    assert s1["state"].keys() == s2["state"].keys() and s1["state"]
    for i in s1["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(torch.as_tensor(s1["state"][i][name]), torch.as_tensor(s2["state"][i][name]))
    assert sched2.last_epoch == sched.last_epoch == 3
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())
    assert sched2.T_cur == sched.T_cur
    np.testing.assert_array_equal(rng2.random(5), expected_np)
    assert torch.equal(torch.rand(4), expected_torch)

    # training continues identically from the restored state
    sched.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_state_file_is_weights_only_loadable(tmp_path):
    model, opt, sched = _trained_setup(0)
    lr, hr = _tiny_batch()
    train_step(model, opt, build_loss("l1"), lr, hr, StepGuard())
    save_training_state(tmp_path, model, opt, sched, 1, np.random.default_rng(0))
    state = torch.load(tmp_path / STATE_FILE, map_location="cpu", weights_only=True)
    assert set(state) == {"model", "optimizer", "scheduler", "torch_rng"}
    assert not any(k.startswith("module.") for k in state["model"])
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["iteration"] == 1 and meta["numpy_rng"]["bit_generator"] == "PCG64"


def test_load_without_optional_parts(tmp_path):
    model, opt, sched = _trained_setup(0)
    save_training_state(tmp_path, model, opt, sched, 42, np.random.default_rng(0))
    model2, _, _ = _trained_setup(1)
    meta = load_training_state(tmp_path, model2)
    assert meta["iteration"] == 42
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)


def test_clean_lr_target_is_matlab_bicubic_of_each_hr_crop():
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, size=(2, 16, 16, 3)).astype(np.float64) / 255.0
    out = clean_lr_target(torch.from_numpy(hr).permute(0, 3, 1, 2).float(), 4)
    assert out.shape == (2, 3, 4, 4) and out.dtype == torch.float32
    for i in range(2):
        expected = matlab_imresize(hr[i].astype(np.float32).astype(np.float64), 0.25)
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), expected, atol=1e-6)


# --- where a cluster's workers write -----------------------------------------------------------


@pytest.mark.parametrize("uri", ["sqlite:////tmp/x/mlflow.db", "file:///tmp/mlruns", "mlruns"])
def test_cluster_refuses_an_mlflow_store_on_the_drivers_disk(uri):
    from cajnn.config import ConfigError, TrainConfig
    from cajnn.training.ray_trainer import check_cluster_stores

    cfg = TrainConfig(storage_path="s3://bucket/runs")
    assert check_cluster_stores(cfg, uri, "local") is None  # one machine: any store
    with pytest.raises(ConfigError, match="tracking server every node reaches"):
        check_cluster_stores(cfg, uri, "auto")


def test_cluster_with_a_tracking_server_and_local_checkpoints_gets_a_note():
    from cajnn.config import TrainConfig
    from cajnn.training.ray_trainer import check_cluster_stores

    assert (
        check_cluster_stores(TrainConfig(storage_path="s3://b/runs"), "http://10.0.0.5:5000", "10.0.0.5:6379") is None
    )
    note = check_cluster_stores(TrainConfig(storage_path="runs"), "http://10.0.0.5:5000", "auto")
    assert note and "NFS" in note and "s3://" in note


def test_feed_is_checked():
    from cajnn.config import ConfigError, TrainConfig

    assert TrainConfig(feed="stream").feed == "stream"
    with pytest.raises(ConfigError, match="train.feed"):
        TrainConfig(feed="disk")
