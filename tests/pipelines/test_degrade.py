"""The `degrade` stage on real local Ray (pipelines/degrade.py): determinism across CPU counts
and block layouts, and robustness over a corpus of broken and awkward files.

Each run is a separate Python process (`ray.init(num_cpus=1)`, then `num_cpus=2`), so the two
Ray instances never share state. Together the runs take about 20-40 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cajnn.config import DegradeConfig, ProfileConfig, from_dict, to_dict
from cajnn.data.shards import SCHEMA, decode_patches, degrade_to_shard
from tests.helpers.image_corpus import BROKEN, build_corpus, photo_like

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

RUN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import ray
    from cajnn.config import DegradeConfig, from_dict
    from pipelines.degrade import degrade_all, list_items

    num_cpus, in_flight = int(sys.argv[1]), int(sys.argv[2])
    root, out, cfg = Path(sys.argv[3]), Path(sys.argv[4]), json.loads(sys.argv[5])
    cfg = from_dict(DegradeConfig, cfg)
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    try:
        assert ray.cluster_resources()["CPU"] == num_cpus
        items = list_items(cfg.inputs, root)
        out.mkdir(parents=True)
        degrade_all(items, out, cfg, in_flight=in_flight or None)
    finally:
        ray.shutdown()
    """
)

# a profile that exercises every random part: QF list with weights, two passes with a fresh QF
# each, grid offsets, and the Pillow kernel; `paper` runs in the e2e test and below in-process
PROFILES = {
    "paper": ProfileConfig(),
    "mixed": ProfileConfig(
        resize="pillow_lanczos",
        qf_values=[20, 50, 80],
        qf_weights=[1, 2, 1],
        compressions=2,
        recompress_quality="draw",
        grid_offset=5,
        subsampling="422",
    ),
}


def stage_config(root: Path, profile: str) -> DegradeConfig:
    return DegradeConfig(
        inputs=["photos", "corpus"],
        out="unused",
        profile=profile,
        profiles=PROFILES,
        qualities_per_image=2,
        patch_size=16,
        stride=8,
        seed=11,
    )


def run_stage(root: Path, out: Path, cfg: DegradeConfig, num_cpus: int, blocks: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(num_cpus), str(blocks), str(root), str(out), json.dumps(to_dict(cfg))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads((out / "manifest.json").read_text())


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage")
    photos = root / "photos"
    photos.mkdir()
    for i, (h, w) in enumerate([(200, 264), (132, 180), (104, 108), (160, 160)]):
        Image.fromarray(photo_like(h, w, i)).save(photos / f"p{i}.png")
    (photos / "nested").mkdir()
    Image.fromarray(photo_like(120, 150, 9)).save(photos / "nested" / "deep.png")
    Image.fromarray(photo_like(40, 50, 7)).save(photos / "tiny.png")  # < one 64 px HR patch
    build_corpus(root / "corpus")
    cfg = stage_config(root, "mixed")
    one = run_stage(root, root / "out_1cpu", cfg, num_cpus=1, blocks=1)  # one task at a time
    two = run_stage(root, root / "out_2cpu", cfg, num_cpus=2, blocks=10_000)  # every image in flight at once
    return root, cfg, one, two


def test_same_seed_identical_shards_across_cpus_and_tasks_in_flight(stage_runs):
    root, _, one, two = stage_runs
    d1, d2 = digests(root / "out_1cpu"), digests(root / "out_2cpu")
    assert d1 == d2  # every shard and the manifest, byte for byte
    assert one == two
    assert one["sha256"] == two["sha256"]
    assert not [p for p in (root / "out_1cpu").iterdir() if p.name.startswith(".")]  # no temp files


def test_shards_equal_in_process_result(stage_runs, tmp_path):
    # Ray workers (one thread each) and this process give the same bytes
    root, cfg, one, _ = stage_runs
    entry = next(s for s in one["shards"] if s["source"] == "photos/p0.png")
    res = degrade_to_shard(str(root / "photos" / "p0.png"), "photos/p0.png", str(tmp_path), cfg)
    assert res.shard == entry["shard"]
    assert (tmp_path / res.shard).read_bytes() == (root / "out_1cpu" / entry["shard"]).read_bytes()
    assert ",".join(map(str, res.qualities)) == entry["qualities"]
    assert ";".join(res.draws) == entry["draws"]


def test_manifest_counts_and_skipped_reasons(stage_runs):
    root, cfg, man, _ = stage_runs
    corpus_good = {
        "rgb.png",
        "gray.png",
        "la.png",
        "rgba.png",
        "cmyk.jpg",
        "deep16.png",
        "tiff.tif",
        "bitmap.bmp",
        "jpeg_named.png",
        "palette.png",
        "rotated.jpg",
    }
    used = {s["source"] for s in man["shards"]}
    assert used == {f"photos/p{i}.png" for i in range(4)} | {"photos/nested/deep.png"} | {
        f"corpus/{n}" for n in corpus_good
    }
    reasons = {s["file"]: s["reason"] for s in man["skipped"]}
    assert set(reasons) == {f"corpus/{n}" for n in BROKEN} | {"photos/tiny.png"}
    for name, expected in BROKEN.items():
        assert expected in reasons[f"corpus/{name}"], (name, reasons[f"corpus/{name}"])
    assert "smaller than one 64px patch" in reasons["photos/tiny.png"]
    assert [s["file"] for s in man["skipped"]] == sorted(reasons)

    assert man["profile"] == "mixed" and man["seed"] == 11 and man["qualities_per_image"] == 2
    assert from_dict(ProfileConfig, man["profile_config"]) == PROFILES["mixed"]
    assert man["images"] == len(used) and man["lr_images"] == 2 * len(used)
    assert man["columns"] == SCHEMA.names
    assert man["patches"] == sum(s["rows"] for s in man["shards"]) > 0
    assert man["bytes"] == sum(s["bytes"] for s in man["shards"])
    assert man["bytes"] == sum((root / "out_1cpu" / s["shard"]).stat().st_size for s in man["shards"])
    assert man["hr_megapixels"] == pytest.approx(sum(s["hr_pixels"] for s in man["shards"]) / 1e6)
    assert man["bytes_per_hr_megapixel"] == round(man["bytes"] / man["hr_megapixels"])
    for s in man["shards"]:
        draws = s["draws"].split(";")
        assert len(draws) == 2 and all(len(d.split(">")) == 2 for d in draws)  # two passes each
        assert s["qualities"] == ",".join(d.split(">")[-1].split("@")[0] for d in draws)


def test_shard_content_matches_its_plan(stage_runs):
    root, cfg, man, _ = stage_runs
    entry = next(s for s in man["shards"] if s["source"] == "photos/p0.png")
    table = pq.read_table(root / "out_1cpu" / entry["shard"])
    assert table.schema.equals(SCHEMA)
    batch = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
    hr, lr = decode_patches(batch)
    assert hr.shape[1:] == (64, 64, 3) and lr.shape[1:] == (16, 16, 3)
    assert set(batch["qf"]) <= {20, 50, 80}
    assert set(batch["qf_chain"]) == set(entry["draws"].split(";"))
    assert batch["off_y"].max() <= 10 and batch["off_x"].max() <= 10  # 2 passes x grid_offset 5
    # rows sorted by position in the clean LR image, then by draw
    pos = list(zip(batch["y"] + batch["off_y"], batch["x"] + batch["off_x"]))
    assert pos == sorted(pos)
    # each HR patch is the source image at 4x the (clean-LR) position: aligned
    src = np.asarray(Image.open(root / "photos" / "p0.png").convert("RGB"))
    for i in range(0, len(hr), 7):
        y, x = 4 * int(pos[i][0]), 4 * int(pos[i][1])
        np.testing.assert_array_equal(hr[i], src[y : y + 64, x : x + 64])


def test_other_seed_other_draws(stage_runs, tmp_path):
    root, cfg, man, _ = stage_runs
    entry = next(s for s in man["shards"] if s["source"] == "photos/p0.png")
    cfg2 = from_dict(DegradeConfig, {**to_dict(cfg), "seed": 12})
    res = degrade_to_shard(str(root / "photos" / "p0.png"), "photos/p0.png", str(tmp_path), cfg2)
    assert ";".join(res.draws) != entry["draws"]


def test_paper_profile_in_process_is_deterministic(tmp_path):
    folder = tmp_path / "in"
    build_corpus(folder)
    cfg = from_dict(DegradeConfig, {**to_dict(stage_config(tmp_path, "paper")), "inputs": ["in"]})
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for name in ("rgb.png", "rotated.jpg", "cmyk.jpg"):
        ra = degrade_to_shard(str(folder / name), f"in/{name}", str(a), cfg)
        rb = degrade_to_shard(str(folder / name), f"in/{name}", str(b), cfg)
        assert ra == rb and ra.skipped is None
        assert all(10 <= q <= 100 for q in ra.qualities) and ra.draws == [str(q) for q in ra.qualities]
    assert digests(a) == digests(b)


def test_list_items_rejects_clashing_relpaths(tmp_path):
    from pipelines.degrade import list_items

    for parent in ("a", "b"):
        (tmp_path / parent / "same").mkdir(parents=True)
        Image.fromarray(photo_like(8, 8)).save(tmp_path / parent / "same" / "x.png")
    items = list_items(["a/same"], tmp_path)
    assert items == [{"path": str(tmp_path / "a/same/x.png"), "relpath": "same/x.png"}]
    with pytest.raises(ValueError, match="distinct names"):
        list_items(["a/same", "b/same"], tmp_path)
