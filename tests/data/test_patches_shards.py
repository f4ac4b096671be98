"""Tests of aligned patch cutting (cajnn/data/patches.py) and per-image Parquet shards
(cajnn/data/shards.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cajnn.config import ConfigError, DegradeConfig, ProfileConfig
from cajnn.data.patches import grid, patch_pairs
from cajnn.data.shards import (
    SCHEMA,
    ShardResult,
    decode_patches,
    degrade_to_shard,
    load_patch_folder,
    shard_name,
    stable_seed,
)
from cajnn.degradation.profile import degrade

# --- grid -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, patch, stride, expected",
    [
        (10, 4, 3, [0, 3, 6]),  # 6 = 10 - 4 lands exactly
        (11, 4, 3, [0, 3, 6, 7]),  # flush last window added
        (4, 4, 3, [0]),
        (5, 4, 10, [0, 1]),
        (50, 16, 12, [0, 12, 24, 34]),
        (64, 16, 12, [0, 12, 24, 36, 48]),
        (8, 4, 4, [0, 4]),
    ],
)
def test_grid_values(length, patch, stride, expected):
    assert grid(length, patch, stride) == expected


@pytest.mark.parametrize("length, patch", [(3, 4), (0, 1), (15, 16)])
def test_grid_too_short(length, patch):
    assert grid(length, patch, 2) == []


@pytest.mark.parametrize("length", range(7, 60, 5))
@pytest.mark.parametrize("patch, stride", [(7, 3), (7, 7), (5, 6)])
def test_grid_covers_length(length, patch, stride):
    starts = grid(length, patch, stride)
    covered = np.zeros(length, bool)
    for s in starts:
        assert 0 <= s <= length - patch
        covered[s : s + patch] = True
    if stride <= patch:
        assert covered.all()
    assert starts[0] == 0 and starts[-1] == length - patch
    assert starts == sorted(set(starts))
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


# --- patch_pairs ------------------------------------------------------------------------------


def test_patch_pairs_alignment():
    rng = np.random.default_rng(0)
    scale, patch, stride = 4, 5, 4
    lr = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (13 * scale, 17 * scale, 3), dtype=np.uint8)
    pairs = list(patch_pairs(hr, lr, patch, stride, scale))
    ys, xs = grid(13, patch, stride), grid(17, patch, stride)
    assert [(y, x) for y, x, _, _ in pairs] == [(y, x) for y in ys for x in xs]
    for y, x, hp, lp in pairs:
        assert lp.shape == (patch, patch, 3) and hp.shape == (patch * scale, patch * scale, 3)
        np.testing.assert_array_equal(lp, lr[y : y + patch, x : x + patch])
        np.testing.assert_array_equal(hp, hr[y * scale : (y + patch) * scale, x * scale : (x + patch) * scale])
        assert hp.flags.c_contiguous and lp.flags.c_contiguous


def test_patch_pairs_nearest_upsampled_hr_matches_lr():
    rng = np.random.default_rng(1)
    lr = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    hr = lr.repeat(3, axis=0).repeat(3, axis=1)
    for _, _, hp, lp in patch_pairs(hr, lr, 4, 2, 3):
        np.testing.assert_array_equal(hp, lp.repeat(3, axis=0).repeat(3, axis=1))


def test_patch_pairs_hr_too_small():
    lr = np.zeros((8, 8, 3), np.uint8)
    hr = np.zeros((31, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="smaller"):
        list(patch_pairs(hr, lr, 4, 4, 4))


# --- shards -----------------------------------------------------------------------------------

H, W = 200, 256  # HR image; LR 50 x 64
PROFILE = ProfileConfig(qf_min=30, qf_max=60)


def make_cfg(seed: int = 0, **kw) -> DegradeConfig:
    base = dict(profile="web", profiles={"web": PROFILE}, patch_size=16, stride=12, qualities_per_image=2, seed=seed)
    base.update(kw)
    return DegradeConfig(**base)


@pytest.fixture(scope="module")
def hr_image(tmp_path_factory) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(42)
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x * 255.0 / W, y * 255.0 / H, 128 + 100 * np.sin(x / 9.0) * np.cos(y / 7.0)], -1)
    arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("hr") / "photo.png"
    Image.fromarray(arr).save(path)
    return path, arr


def read_shard(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA)
    return {name: np.array(table.column(name).to_pylist(), dtype=object) for name in table.column_names}


def test_degrade_to_shard_rows_and_content(tmp_path, hr_image):
    path, arr = hr_image
    cfg = make_cfg()
    res = degrade_to_shard(str(path), "train/photo.png", str(tmp_path), cfg)
    assert isinstance(res, ShardResult)
    assert res.skipped is None and res.source == "train/photo.png"
    assert res.shard == shard_name("train/photo.png")
    ys, xs = grid(H // 4, 16, 12), grid(W // 4, 16, 12)
    assert (len(ys), len(xs)) == (4, 5)
    assert res.rows == len(ys) * len(xs) * 2 == 40
    assert len(res.qualities) == 2
    assert all(PROFILE.qf_min <= q <= PROFILE.qf_max for q in res.qualities)
    shard = tmp_path / res.shard
    assert res.bytes == shard.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [res.shard]  # no temp files

    batch = read_shard(shard)
    assert len(batch["hr"]) == res.rows
    hr, lr = decode_patches(batch)
    assert hr.shape == (40, 64, 64, 3) and lr.shape == (40, 16, 16, 3)
    assert hr.dtype == np.uint8 and lr.dtype == np.uint8
    assert set(batch["source"]) == {"train/photo.png"}
    assert set(batch["patch"]) == {16} and set(batch["scale"]) == {4}
    # rows: by LR position, then by draw (the K rows of one position are next to each other,
    # so zstd stores their shared HR patch about once)
    positions = [(y, x) for y in ys for x in xs]
    assert [(int(a), int(b)) for a, b in zip(batch["y"], batch["x"])] == [p for p in positions for _ in range(2)]
    assert list(batch["qf"]) == res.qualities * 20
    assert list(batch["qf_chain"]) == [str(q) for q in res.qualities] * 20
    assert set(batch["off_y"]) == {0} and set(batch["off_x"]) == {0}
    assert res.draws == [str(q) for q in res.qualities]
    assert res.hr_pixels == H * W

    lr_full = {q: degrade(arr, PROFILE, q) for q in set(res.qualities)}
    for i in range(res.rows):
        y, x, q = int(batch["y"][i]), int(batch["x"][i]), int(batch["qf"][i])
        assert y in ys and x in xs
        np.testing.assert_array_equal(hr[i], arr[4 * y : 4 * y + 64, 4 * x : 4 * x + 64])
        np.testing.assert_array_equal(lr[i], lr_full[q][y : y + 16, x : x + 16])


def test_degrade_to_shard_is_deterministic(tmp_path, hr_image):
    path, _ = hr_image
    outs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 7)):
        out = tmp_path / name
        out.mkdir()
        res = degrade_to_shard(str(path), "photo.png", str(out), make_cfg(seed=seed))
        outs[name] = (res, (out / res.shard).read_bytes())
    (ra, ba), (rb, bb), (rc, bc) = outs["a"], outs["b"], outs["c"]
    assert ra.qualities == rb.qualities and ba == bb
    assert ra.shard == rc.shard  # the name depends on the image only
    assert ra.qualities != rc.qualities
    assert ba != bc


def test_qualities_depend_on_relpath(tmp_path, hr_image):
    path, _ = hr_image
    a = degrade_to_shard(str(path), "one/photo.png", str(tmp_path), make_cfg(qualities_per_image=3))
    b = degrade_to_shard(str(path), "two/photo.png", str(tmp_path), make_cfg(qualities_per_image=3))
    assert a.shard != b.shard
    assert a.qualities != b.qualities


def test_unreadable_file_is_skipped(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    out = tmp_path / "out"
    out.mkdir()
    res = degrade_to_shard(str(bad), "bad.png", str(out), make_cfg())
    assert res.shard is None and res.rows == 0 and res.bytes == 0 and res.qualities == []
    assert res.skipped and "not an image" in res.skipped
    assert list(out.iterdir()) == []


def test_too_small_image_is_skipped(tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray(np.full((60, 100, 3), 128, np.uint8)).save(small)  # HR 60 < 16 * 4
    out = tmp_path / "out"
    out.mkdir()
    res = degrade_to_shard(str(small), "small.png", str(out), make_cfg())
    assert res.shard is None and res.rows == 0
    assert res.skipped and "smaller" in res.skipped and "64px" in res.skipped and "16px LR" in res.skipped
    assert res.hr_pixels == 60 * 100
    assert list(out.iterdir()) == []


def test_just_big_enough_image(tmp_path):
    # 67 x 66 modcrops to 64 x 64: exactly one LR 16 x 16 patch per quality
    img = tmp_path / "edge.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (66, 67, 3), dtype=np.uint8)).save(img)
    res = degrade_to_shard(str(img), "edge.png", str(tmp_path), make_cfg())
    assert res.skipped is None and res.rows == 2


def test_unknown_profile_raises(tmp_path, hr_image):
    path, _ = hr_image
    with pytest.raises(ConfigError):
        degrade_to_shard(str(path), "photo.png", str(tmp_path), make_cfg(profile="nope"))


def test_stable_seed_and_shard_name():
    assert stable_seed(0, "a.png") == stable_seed(0, "a.png")
    assert stable_seed(0, "a.png") != stable_seed(1, "a.png")
    assert 0 <= stable_seed("x") < 2**64
    name = shard_name("sub dir/ph*oto.v2.png")
    assert name.startswith("part-ph_oto_v2-") and name.endswith(".parquet")
    assert shard_name("a/x.png") != shard_name("b/x.png")


def test_load_patch_folder_decodes_every_shard_in_order(tmp_path, hr_image):
    path, _ = hr_image
    cfg = make_cfg()
    results = [degrade_to_shard(str(path), name, str(tmp_path), cfg) for name in ("b.png", "a.png")]
    hr, lr = load_patch_folder(tmp_path)
    parts = [decode_patches(read_shard(tmp_path / r.shard)) for r in sorted(results, key=lambda r: r.shard)]
    np.testing.assert_array_equal(hr, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(lr, np.concatenate([p[1] for p in parts]))
    assert len(hr) == sum(r.rows for r in results) > 0


def test_load_patch_folder_without_shards_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Parquet shards"):
        load_patch_folder(tmp_path)


def test_flat_patches_are_left_out_and_counted(tmp_path):
    """degrade.min_patch_std drops flat positions for every draw and counts them."""
    from cajnn.config import DegradeConfig
    from cajnn.data.image_io import save_rgb
    from cajnn.data.shards import degrade_to_shard, is_flat, load_patch_folder

    rng = np.random.default_rng(0)
    img = np.zeros((192, 384, 3), np.uint8)  # left half black, right half textured
    img[:, 192:] = rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)
    save_rgb(img, tmp_path / "half.png")
    out_all, out_kept = tmp_path / "all", tmp_path / "kept"
    out_all.mkdir()
    out_kept.mkdir()
    cfg = DegradeConfig(qualities_per_image=2, patch_size=16, stride=16)
    every = degrade_to_shard(str(tmp_path / "half.png"), "t/half.png", str(out_all), cfg)
    kept = degrade_to_shard(
        str(tmp_path / "half.png"),
        "t/half.png",
        str(out_kept),
        DegradeConfig(qualities_per_image=2, patch_size=16, stride=16, min_patch_std=4.0),
    )
    assert every.flat == 0 and every.rows == 36  # 3 x 6 LR positions, 2 draws
    assert kept.flat == every.rows // 4  # half of the 3x6 positions, out of 2 draws each
    assert kept.rows == every.rows // 2
    hr, _ = load_patch_folder(out_kept)
    assert not any(is_flat(p, 4.0) for p in hr)
    assert not is_flat(hr[0], 0.0)
