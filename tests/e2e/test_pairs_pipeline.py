"""End-to-end: real pairs (originals + a platform's copies) through `dvc repro` on the micro
preset: fetched with `local:`, degraded into the same shards and manifest, trained on."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from cajnn.data.sample import load_sample
from cajnn.data.shards import REAL_PAIR
from tests.e2e.project import make_project, ran, run

pytestmark = pytest.mark.slow


def _served(img, side: int, q: int) -> bytes:
    im = Image.fromarray(img)
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return buf.getvalue()


def test_pairs_through_dvc_repro(tmp_path):
    project = make_project(tmp_path, preset="micro", fetch={"sources": ["sample", "local:incoming/pairs"]},
                           degrade={"pairs": ["data/raw/pairs"]})
    incoming = project / "incoming" / "pairs"
    for side in ("originals", "copies"):
        (incoming / side).mkdir(parents=True)
    for name, q in (("rocket", 30), ("motorcycle_right", 55)):
        img = load_sample(name)[..., :3]
        Image.fromarray(img).save(incoming / "originals" / f"{name}.png")
        (incoming / "copies" / f"{name}.jpg").write_bytes(_served(img, max(img.shape[:2]) // 4, q))
    coffee = load_sample("coffee")[..., :3]
    Image.fromarray(coffee).save(incoming / "originals" / "coffee.png")
    (incoming / "copies" / "coffee.jpg").write_bytes(_served(coffee[:, 150:], 110, 40))  # a crop: refused

    out = run(["dvc", "repro", "train"], project)
    assert ran(out) == ["fetch", "degrade", "train"], out
    assert "2 of them real pairs" in out and "[train] done in" in out, out
    manifest = json.loads((project / "data" / "patches" / "manifest.json").read_text())
    pairs = {s["source"]: s for s in manifest["shards"] if s["kind"] == REAL_PAIR}
    assert set(pairs) == {"pairs/rocket", "pairs/motorcycle_right"} and manifest["real_pairs"] == 2
    assert pairs["pairs/rocket"]["qualities"] == "30" and pairs["pairs/motorcycle_right"]["qualities"] == "55"
    assert [s for s in manifest["skipped"] if s["file"] == "pairs/coffee"][0]["reason"].endswith("(cropped or padded?)")
    assert sum(s["kind"] == "synthetic" for s in manifest["shards"]) == 7  # the sample photos as before
    assert json.loads((project / "models" / "run.json").read_text())["iterations"] == 12
