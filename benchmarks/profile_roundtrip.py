"""Round trip of `cajnn profile fit`: the profiles in params.yaml applied to the embedded photos,
then fitted back from the JPEGs alone. Prints, per profile, what was set and what came back.

    python benchmarks/profile_roundtrip.py            # 7 photos x 24 draws per profile, ~1 min
    python benchmarks/profile_roundtrip.py --draws 6  # quicker

Each photo is degraded `--draws` times per profile (`draw_plans` + `degrade_image`, as the
degrade stage does, seeded), the last JPEG's bytes are written as a platform would serve them,
and `fit_profile(read_folder_facts(folder))` reads them back. Nothing is tuned to this check.

Then the error rates of the second-compression reading (cajnn.degradation.double_jpeg) on the 9
sample photos, each halved first (MATLAB bicubic) so that no JPEG grid of its source survives:
compressed once (Pillow, QF 10..95 in steps of 5, 4:2:0 and 4:4:4), and twice on the same grid
with a coarser and with a finer first compression.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cajnn.config import load_params  # noqa: E402
from cajnn.data.sample import SAMPLE_IMAGES, load_sample  # noqa: E402
from cajnn.degradation import matlab_imresize  # noqa: E402
from cajnn.degradation.jpeg_facts import read_jpeg_facts  # noqa: E402
from cajnn.degradation.profile import degrade_image, draw_plans  # noqa: E402
from cajnn.degradation.profile_fit import fit_profile, read_folder_facts  # noqa: E402

PHOTOS = (
    "astronaut",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
    "motorcycle_right",
    "retina",
    "rocket",
)


def true_weights(p) -> dict[int, float]:
    if p.qf_values is not None:
        w = np.asarray(p.qf_weights or [1] * len(p.qf_values), dtype=float)
        return dict(zip(p.qf_values, w / w.sum()))
    n = p.qf_max - p.qf_min + 1
    return {q: 1 / n for q in range(p.qf_min, p.qf_max + 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=24)
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml")
    photos = {name: load_sample(name) for name in PHOTOS}
    for name, profile in params.degrade.profiles.items():
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(0)
            lr_sides, passes = [], Counter()
            for photo, hr in photos.items():
                for i, plan in enumerate(draw_plans(profile, args.draws, rng)):
                    deg = degrade_image(hr, profile, plan)
                    (Path(tmp) / f"{photo}-{i:02d}.jpg").write_bytes(deg.jpeg)
                    lr_sides.append(max(deg.lr.shape[:2]))
                    passes[tuple(p.quality for p in plan)] += 1
            files, skipped = read_folder_facts(Path(tmp))
            fit = fit_profile(files, skipped, scale=profile.scale)
        got, ev = fit.profile, fit.evidence
        want = true_weights(profile)
        fitted = dict(zip(got.qf_values, got.qf_weights))
        last_qf = Counter()  # what the served files were last compressed at
        for plan_qfs, count in passes.items():
            last_qf[plan_qfs[-1]] += count
        n = sum(last_qf.values())
        exact = all(fitted.get(q, 0) == round(c / n, 4) for q, c in last_qf.items())
        err = max(abs(fitted.get(q, 0) - want.get(q, 0)) for q in set(want) | set(fitted))
        double_first_coarser = sum(c for p, c in passes.items() if len(p) > 1 and p[0] < p[-1])
        print(f"\n{name}: {len(files)} files ({args.draws} draws x {len(photos)} photos), {len(skipped)} skipped")
        print(
            f"  QF set   : set {sorted(want)[:3]}..{sorted(want)[-1]} ({len(want)} values) "
            f"-> fitted {len(fitted)} values; "
            f"each file's last-pass QF read exactly: {exact}; max |fitted weight - profile weight| {err:.3f} "
            f"(sampling noise of {n} files)"
        )
        print(f"  subsampling: set {profile.subsampling} -> {got.subsampling} {ev['subsampling']}")
        print(
            f"  size cap : set max_side {profile.max_side} (cap {profile.cap}) -> {got.max_side} (cap {got.cap}); "
            f"served longest sides {min(lr_sides)}..{max(lr_sides)} px, "
            f"{ev['longest_side']['files_at_largest']} at the largest"
        )
        d = ev["double_compression"]
        print(
            f"  passes   : set {profile.compressions} (grid offset up to {profile.grid_offset}) -> {got.compressions}; "
            f"read single {d['single']}, double {d['double']}, unknown {d['unknown']}; "
            f"files whose first pass was coarser than the last: {double_first_coarser}"
        )
        print(f"  non-IJG tables: {ev['quality']['non_ijg_tables']}")

    double_error_rates()


def _jpeg(img: np.ndarray, q: int, subsampling: int = 2) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=q, subsampling=subsampling)
    return buf.getvalue()


def double_error_rates() -> None:
    import io

    from PIL import Image

    single, coarser_first, finer_first = Counter(), Counter(), Counter()
    for name in SAMPLE_IMAGES:
        img = load_sample(name)
        img = matlab_imresize(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3], 0.5)
        for q in range(10, 100, 5):
            for sub in (0, 2):
                single[read_jpeg_facts(_jpeg(img, q, sub)).double.verdict] += 1
        for q1, q2 in ((20, 40), (30, 75), (40, 60), (50, 90), (60, 85), (85, 60), (75, 50), (90, 70), (95, 80)):
            once = np.asarray(Image.open(io.BytesIO(_jpeg(img, q1))).convert("RGB"))
            (coarser_first if q1 < q2 else finer_first)[read_jpeg_facts(_jpeg(once, q2)).double.verdict] += 1

    def line(c: Counter) -> str:
        n = sum(c.values())
        read = c["single"] + c["double"]
        return (
            f"{n} files: single {c['single']}, double {c['double']}, unknown {c['unknown']} "
            f"(read as double: {c['double'] / read:.1%} of the {read} readable)"
            if read
            else f"{n} files: none readable"
        )

    print(f"\nsecond compression, {len(SAMPLE_IMAGES)} photos halved first:")
    print(f"  compressed once (QF 10..95, 4:2:0 and 4:4:4)      : {line(single)}")
    print(f"  twice, first coarser (QF 20->40 .. 50->90)       : {line(coarser_first)}")
    print(f"  twice, first finer   (QF 85->60 .. 95->80)       : {line(finer_first)}")


if __name__ == "__main__":
    main()
