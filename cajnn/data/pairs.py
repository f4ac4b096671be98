"""Real pairs: an original and the copy a web platform made of it (docs/web-platform-data.md).

A pairs folder holds `originals/` and `copies/`; files are matched by stem (`originals/a.png`
with `copies/a.jpg`). The LR side of a pair is the platform's JPEG as served; the HR target is
the original brought to exactly `scale` x the copy's size with MATLAB bicubic (the resize the
synthetic profiles use), then aligned to the copy: the copy is compared with the target shrunk
back by `1/scale` at every shift of up to MAX_SHIFT LR pixels, and the best shift is cropped away
on both sides. Pairs whose sizes cannot be reconciled (another aspect ratio: cropped or padded;
an original smaller than `scale` x the copy: it would have to be upscaled) or whose content
does not match (best PSNR-Y below MIN_MATCH_PSNR) are reported and skipped, never guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cajnn.config import DegradeConfig
from cajnn.data.image_io import IMAGE_SUFFIXES, ImageLoadError, load_rgb
from cajnn.data.patches import patch_pairs
from cajnn.data.shards import REAL_PAIR, ShardResult, is_flat, rows_to_shard, shard_name
from cajnn.degradation.imresize import matlab_imresize
from cajnn.metrics.psnr_ssim import rgb_to_y

ORIGINALS, COPIES = "originals", "copies"
MAX_SHIFT = 2  # LR pixels searched in each direction when aligning a copy with its original
MIN_MATCH_PSNR = 20.0  # dB (PSNR-Y of the copy against the shrunk target) below which a pair is refused
SIZE_SLACK = 1.0  # LR pixels of rounding allowed between the copy's size and the original's shape


def list_pairs(folders: list[str], root: Path) -> tuple[list[dict], list[dict]]:
    """Items {path, copy, relpath, kind} for the matched pairs of each folder, and {file,
    reason} rows for files without a partner (or with several)."""
    items, unmatched = [], []
    for folder in folders:
        base = root / folder
        if not (base / ORIGINALS).is_dir() or not (base / COPIES).is_dir():
            raise FileNotFoundError(f"{folder}: a pairs folder needs {ORIGINALS}/ and {COPIES}/ subfolders")
        sides = {}
        for side in (ORIGINALS, COPIES):
            by_stem: dict[str, list[Path]] = {}
            for p in sorted((base / side).rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
                    by_stem.setdefault(p.relative_to(base / side).with_suffix("").as_posix(), []).append(p)
            sides[side] = by_stem
        label = Path(folder).name
        for stem in sorted(set(sides[ORIGINALS]) | set(sides[COPIES])):
            o, c = sides[ORIGINALS].get(stem, []), sides[COPIES].get(stem, [])
            if len(o) == 1 and len(c) == 1:
                items.append({"path": str(o[0]), "copy": str(c[0]), "relpath": f"{label}/{stem}", "kind": REAL_PAIR})
                continue
            if not o or not c:
                have, missing = (ORIGINALS, COPIES) if o else (COPIES, ORIGINALS)
                reason = f"in {have}/ but not in {missing}/"
            else:
                reason = f"several files share the stem ({', '.join(p.name for p in o + c)})"
            unmatched.append({"file": f"{label}/{stem}", "reason": reason})
    return items, unmatched


def reconcile(original_hw: tuple[int, int], copy_hw: tuple[int, int], scale: int) -> str | None:
    """Why an original of `original_hw` cannot be the source of a copy of `copy_hw` at this
    scale, or None when it can (same shape up to rounding, and at least `scale` x larger)."""
    (H, W), (h, w) = original_hw, copy_hw
    if H < scale * (h - SIZE_SLACK) or W < scale * (w - SIZE_SLACK):  # a pixel of the copy's rounding is fine
        return f"original {W}x{H} is smaller than {scale} x the copy's {w}x{h}: the target would have to be upscaled"
    # some ratio r must give both sides of the copy, up to rounding
    lo = max((w - SIZE_SLACK) / W, (h - SIZE_SLACK) / H)
    hi = min((w + SIZE_SLACK) / W, (h + SIZE_SLACK) / H)
    if lo > hi:
        return f"original {W}x{H} and copy {w}x{h} differ in shape (cropped or padded?)"
    return None


def align(target: np.ndarray, copy: np.ndarray, scale: int) -> tuple[int, int, float]:
    """(dy, dx, PSNR-Y): the shift of the copy against the HR target (copy pixel (i+dy, j+dx)
    shows target pixel block (i, j)) that matches best, searched over +-MAX_SHIFT LR pixels."""
    ref = rgb_to_y(matlab_imresize(target, 1 / scale))
    got = rgb_to_y(copy)
    h, w = got.shape
    m = MAX_SHIFT
    if h <= 2 * m + 8 or w <= 2 * m + 8:
        return 0, 0, float("-inf")
    best = (0, 0, float("-inf"))
    core = ref[m : h - m, m : w - m]
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            mse = float(np.mean((core - got[m + dy : h - m + dy, m + dx : w - m + dx]) ** 2))
            psnr = 10 * np.log10(255.0**2 / max(mse, 1e-10))
            if psnr > best[2]:
                best = (dy, dx, psnr)
    return best


def pair_to_shard(relpath: str, original: bytes, copy: bytes, cfg: DegradeConfig) -> tuple[ShardResult, bytes | None]:
    """One real pair -> its shard's row and Parquet bytes (None when the pair is skipped).

    Rows are those of a synthetic shard with `qf` = the copy's quality factor (from its tables),
    `qf_chain` = "pair" and one draw."""
    from cajnn.degradation.jpeg_facts import NotAJpegError, read_jpeg_facts

    scale = cfg.selected_profile().scale
    try:
        facts = read_jpeg_facts(copy)
        lr = load_rgb("copy", data=copy)
        hr = load_rgb("original", data=original)
    except NotAJpegError as exc:
        return ShardResult(
            relpath, None, 0, 0, [], skipped=f"the copy is not a usable JPEG: {exc}", kind=REAL_PAIR
        ), None
    except ImageLoadError as exc:
        return ShardResult(relpath, None, 0, 0, [], skipped=exc.reason, kind=REAL_PAIR), None
    hr_pixels = int(hr.shape[0] * hr.shape[1])
    skip = reconcile(hr.shape[:2], lr.shape[:2], scale)
    h, w = lr.shape[:2]
    if skip is None:
        hr = matlab_imresize(hr, output_shape=(scale * h, scale * w))
        dy, dx, psnr = align(hr, lr, scale)
        if psnr < MIN_MATCH_PSNR:
            skip = (
                f"the copy does not match its original (best PSNR-Y {psnr:.1f} dB within +-{MAX_SHIFT} px, "
                f"below {MIN_MATCH_PSNR:g})"
            )
    if skip:
        return ShardResult(relpath, None, 0, 0, [], hr_pixels=hr_pixels, skipped=skip, kind=REAL_PAIR), None
    # keep the rows/columns where both sides exist after the shift
    y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
    lr = lr[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    hr = hr[scale * y0 : scale * y1, scale * x0 : scale * x1]
    q = facts.quality.quality
    rows, flat = [], 0
    for y, x, hr_p, lr_p in patch_pairs(hr, lr, cfg.patch_size, cfg.stride, scale):
        if is_flat(hr_p, cfg.min_patch_std):
            flat += 1
            continue
        rows.append(
            (
                (y, x),
                (relpath, q, y, x, cfg.patch_size, scale, hr_p.tobytes(), lr_p.tobytes(), REAL_PAIR, y0 + dy, x0 + dx),
            )
        )
    if not rows:
        reason = (
            "every patch is flat"
            if flat
            else f"the copy ({lr.shape[1]}x{lr.shape[0]}) is smaller than one {cfg.patch_size}px patch"
        )
        return ShardResult(
            relpath, None, 0, 0, [], hr_pixels=hr_pixels, skipped=reason, flat=flat, kind=REAL_PAIR
        ), None
    n, data = rows_to_shard(rows)
    return ShardResult(
        relpath,
        shard_name(relpath),
        n,
        len(data),
        [q],
        [REAL_PAIR],
        hr_pixels,
        flat=flat,
        kind=REAL_PAIR,
        shift=f"{dy},{dx}",
    ), data
