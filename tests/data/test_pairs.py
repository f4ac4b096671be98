"""Real pairs: an original and a platform's copy (cajnn/data/pairs.py, the degrade stage's pairs)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cajnn.config import DegradeConfig, ProfileConfig
from cajnn.data.pairs import align, list_pairs, pair_to_shard, reconcile
from cajnn.data.sample import load_sample
from cajnn.data.shards import REAL_PAIR, decode_patches
from cajnn.degradation import matlab_imresize
from tests.helpers.served import png_bytes as _png
from tests.helpers.served import served_jpeg as _served

CFG = DegradeConfig(profiles={"paper": ProfileConfig()}, patch_size=24, stride=24)


def test_reconcile_sizes():
    assert reconcile((427, 640), (107, 160), 4) is None  # 106.75 rounded up: rounding, not upscaling
    assert reconcile((400, 600), (100, 150), 4) is None
    assert "differ in shape" in reconcile((400, 600), (80, 100), 4)
    assert "would have to be upscaled" in reconcile((872, 1000), (436, 500), 4)


def test_a_served_copy_becomes_aligned_patches_marked_as_a_real_pair():
    img = load_sample("astronaut")
    res, data = pair_to_shard("p/astronaut", _png(img), _served(img, 128, 92), CFG)
    assert res.skipped is None and res.kind == REAL_PAIR and res.qualities == [92] and res.shift == "0,0"
    table = pq.read_table(io.BytesIO(data))
    assert set(table.column("qf_chain").to_pylist()) == {REAL_PAIR} and set(table.column("qf").to_pylist()) == {92}
    hr, lr = decode_patches(table.to_pydict())
    assert (
        hr.shape[1:] == (96, 96, 3) and lr.shape[1:] == (24, 24, 3) and len(hr) == res.rows == 36
    )  # 6 x 6 positions in 128 x 128
    # the HR patch shrunk back looks like the platform's LR patch (aligned, same content), and
    # less so one pixel off
    back = matlab_imresize(hr[14], 0.25).astype(float)[1:-1, 1:-1]
    err = {
        d: np.abs(back - lr[14, 1 + d[0] : 23 + d[0], 1 + d[1] : 23 + d[1]].astype(float)).mean()
        for d in ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))
    }
    assert err[(0, 0)] < 4 and err[(0, 0)] == min(err.values()), err


def test_a_copy_shifted_by_a_pixel_is_realigned():
    img = load_sample("astronaut")
    copy = _served(img[4:, 4:], 127, 60)  # one LR pixel down and right, crop of 4 HR px
    original = img[:508, :508]  # same shape as the crop: only the content is shifted
    target = matlab_imresize(original, output_shape=(4 * 127, 4 * 127))
    lr = np.asarray(Image.open(io.BytesIO(copy)).convert("RGB"))
    dy, dx, psnr = align(target, lr, 4)
    assert (dy, dx) == (-1, -1) and psnr > 25
    res, _ = pair_to_shard("p/shifted", _png(original), copy, CFG)
    assert res.skipped is None and res.shift == "-1,-1"


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda a, b: (_png(a), _served(a[:, 100:], 100, 40)), "differ in shape"),
        (
            lambda a, b: (_png(a), _served(np.asarray(Image.fromarray(b).resize(a.shape[1::-1])), 150, 50)),
            "does not match",
        ),
        (lambda a, b: (_png(a), _png(a[::4, ::4])), "not a usable JPEG"),
        (lambda a, b: (b"not an image", _served(a, 150, 50)), "not an image"),
        (lambda a, b: (_png(a[:64, :64]), _served(a[:64, :64], 64, 50)), "upscaled"),
    ],
)
def test_pairs_that_cannot_be_reconciled_are_skipped_with_the_reason(make, reason):
    a, b = load_sample("coffee")[..., :3], load_sample("astronaut")[..., :3]
    original, copy = make(a, b)
    res, data = pair_to_shard("p/x", original, copy, CFG)
    assert data is None and reason in res.skipped


def test_list_pairs_matches_by_stem_and_reports_the_rest(tmp_path):
    for side, names in {
        "originals": ["a.png", "b.png", "sub/c.png", "d.png", "d.tif"],
        "copies": ["a.jpg", "b.jpeg", "sub/c.jpg", "e.jpg", "d.jpg", ".hidden.jpg"],
    }.items():
        for name in names:
            (tmp_path / "plat" / side / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "plat" / side / name).write_bytes(b"x")
    items, unmatched = list_pairs(["plat"], tmp_path)
    assert [i["relpath"] for i in items] == ["plat/a", "plat/b", "plat/sub/c"]
    assert {u["file"]: u["reason"] for u in unmatched} == {
        "plat/d": "several files share the stem (d.png, d.tif, d.jpg)",
        "plat/e": "in copies/ but not in originals/",
    }
    with pytest.raises(FileNotFoundError, match="originals/ and copies/"):
        list_pairs(["missing"], tmp_path)


def test_degrade_all_puts_pairs_in_the_same_shards_and_manifest(tmp_path):
    import ray

    from cajnn.config import RayConfig
    from pipelines._common import init_ray
    from pipelines.degrade import degrade_all, list_items

    (tmp_path / "hr").mkdir()
    Image.fromarray(load_sample("coffee")[..., :3]).save(tmp_path / "hr" / "coffee.png")
    pairs = tmp_path / "plat"
    for side in ("originals", "copies"):
        (pairs / side).mkdir(parents=True)
    img = load_sample("rocket")
    (pairs / "originals" / "rocket.png").write_bytes(_png(img))
    (pairs / "copies" / "rocket.jpg").write_bytes(_served(img, 160, 45))
    (pairs / "copies" / "orphan.jpg").write_bytes(_served(img, 100, 45))
    cfg = DegradeConfig(
        inputs=["hr"],
        pairs=["plat"],
        profiles={"paper": ProfileConfig()},
        patch_size=24,
        stride=24,
        qualities_per_image=2,
    )
    items, unmatched = list_pairs(cfg.pairs, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    init_ray(RayConfig(num_cpus=1))
    try:
        manifest = degrade_all(list_items(cfg.inputs, tmp_path) + items, out, cfg, unmatched=unmatched)
    finally:
        ray.shutdown()
    kinds = {s["source"]: s["kind"] for s in manifest["shards"]}
    assert kinds == {"hr/coffee.png": "synthetic", "plat/rocket": REAL_PAIR} and manifest["real_pairs"] == 1
    assert manifest["skipped"] == [{"file": "plat/orphan", "reason": "in copies/ but not in originals/"}]
    pair = next(s for s in manifest["shards"] if s["kind"] == REAL_PAIR)
    assert pair["qualities"] == "45" and pair["shift"] == "0,0"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in Path(out).glob("*.parquet")) == sorted(s["shard"] for s in manifest["shards"])
