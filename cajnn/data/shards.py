"""Patch shards: one Parquet file of aligned HR/LR patch pairs per source image.

One shard per image keeps the `degrade` output deterministic (the name and bytes depend only on
the image, the profile and the seed, not on how many nodes, CPUs or blocks did the work). The
stage's tasks return each shard's bytes; the driver writes them (so a task may run on a node
that does not share the driver's disk).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cajnn.atomic import write_bytes_atomic
from cajnn.config import DegradeConfig
from cajnn.data.image_io import ImageLoadError, load_rgb
from cajnn.data.patches import patch_pairs
from cajnn.degradation.profile import apply_plan, draw_plans, plan_label, prepare

SCHEMA = pa.schema(
    [
        ("source", pa.string()),  # the image's path relative to its input folder's parent
        ("qf", pa.int16()),  # QF of the last compression (the one visible in the LR's tables)
        ("y", pa.int32()),  # LR top-left of the patch in the degraded LR image
        ("x", pa.int32()),
        ("patch", pa.int16()),  # LR side; HR side = scale * patch
        ("scale", pa.int8()),
        ("hr", pa.binary()),  # raw uint8 HWC bytes
        ("lr", pa.binary()),
        ("qf_chain", pa.string()),  # every pass: "37", "90>70", "90@3,5>70" (see plan_label)
        ("off_y", pa.int16()),  # LR rows / cols cropped off the clean LR image before JPEG
        ("off_x", pa.int16()),  # (grid offsets): (y + off_y, x + off_x) is the clean-LR position
    ]
)
# `qf_chain` of a real pair (the platform's own copy of an original, cajnn.data.pairs)
REAL_PAIR = "pair"
# Binary pixel columns: no dictionary (the values are unique and ~100 kB) and pages big
# enough to hold several patch rows, so zstd sees the K rows of one position (same HR patch,
# written next to each other) together and stores the HR bytes about once.
_PIXEL_COLUMNS = ("hr", "lr")
_DATA_PAGE_BYTES = 4 << 20


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from values, independent of Python's per-process hash salt."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def shard_name(relpath: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(relpath).stem)[:40]
    return f"part-{stem}-{hashlib.sha256(relpath.encode()).hexdigest()[:10]}.parquet"


@dataclass(frozen=True)
class ShardResult:
    """What became of one input image (the manifest's row)."""

    source: str
    shard: str | None
    rows: int
    bytes: int
    qualities: list[int]  # last-pass QF of each of the K draws
    draws: list[str] = field(default_factory=list)  # each draw's plan_label
    hr_pixels: int = 0  # pixels of the input image as loaded (before modcrop / caps)
    skipped: str | None = None  # reason, when the image was not used
    flat: int = 0  # patch positions left out as flat (degrade.min_patch_std)
    kind: str = "synthetic"  # synthetic (degraded by a profile) | pair (a platform's real copy)
    shift: str = ""  # pairs: the copy's (dy, dx) offset against its original, in LR pixels


def shard_bytes(table: pa.Table) -> bytes:
    """The Parquet file of a shard, in memory (zstd; pixel columns without dictionary)."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        write_statistics=False,
        use_dictionary=[c for c in table.column_names if c not in _PIXEL_COLUMNS],
        data_page_size=_DATA_PAGE_BYTES,
        compression_level=3,
    )
    return sink.getvalue().to_pybytes()


def degrade_image(
    path: str, relpath: str, cfg: DegradeConfig, data: bytes | None = None
) -> tuple[ShardResult, bytes | None]:
    """Load one HR image (from `path`, or its file bytes `data` read on another node), degrade
    it K times per the profile, cut patch pairs: its shard's row and the shard's Parquet bytes
    (None when the image is skipped).

    Deterministic: the draws come from a generator seeded by (seed, relpath) only, and rows are
    written in a fixed order -- by position in the clean LR image, then by draw -- so the shard's
    bytes depend on the image, the parameters and the seed, not on which worker or node ran it.
    An image that cannot be used is returned as skipped, with the reason.
    """
    profile = cfg.selected_profile()
    try:
        hr = load_rgb(path, data=data)
    except ImageLoadError as exc:
        return ShardResult(relpath, None, 0, 0, [], skipped=exc.reason), None
    hr_pixels = int(hr.shape[0] * hr.shape[1])
    s = profile.scale
    need = cfg.patch_size + profile.compressions * profile.grid_offset  # LR pixels
    too_small = (
        f"{hr.shape[1]}x{hr.shape[0]} is smaller than one {cfg.patch_size * s}px patch"
        f" ({cfg.patch_size}px LR{' + grid offsets' if need > cfg.patch_size else ''})"
    )
    if min(hr.shape[:2]) < need * s:
        return ShardResult(relpath, None, 0, 0, [], hr_pixels=hr_pixels, skipped=too_small), None
    prep = prepare(hr, profile)
    del hr
    if min(prep.lr.shape[:2]) < need:
        lr_h, lr_w = prep.lr.shape[:2]
        return ShardResult(
            relpath, None, 0, 0, [], hr_pixels=hr_pixels, skipped=f"{too_small} after the size cap ({lr_w}x{lr_h} LR)"
        ), None
    rng = np.random.default_rng(stable_seed(cfg.seed, relpath))
    plans = draw_plans(profile, cfg.qualities_per_image, rng)
    rows = []
    hr_bytes: dict[tuple[int, int], bytes | None] = {}  # one copy of an HR patch shared by the K draws
    for k, plan in enumerate(plans):
        d = apply_plan(prep, profile, plan)
        label = plan_label(plan)
        oy, ox = d.offset
        for y, x, hr_p, lr_p in patch_pairs(d.hr, d.lr, cfg.patch_size, cfg.stride, s):
            at = (y + oy, x + ox)  # position in the clean LR image: the same HR pixels for every draw
            if at not in hr_bytes:
                hr_bytes[at] = None if is_flat(hr_p, cfg.min_patch_std) else hr_p.tobytes()
            hp = hr_bytes[at]
            if hp is None:
                continue
            rows.append(
                ((*at, k), (relpath, plan[-1].quality, y, x, cfg.patch_size, s, hp, lr_p.tobytes(), label, oy, ox))
            )
    flat = sum(v is None for v in hr_bytes.values())
    if not rows:
        reason = (
            f"every patch is flat (HR luma std < degrade.min_patch_std {cfg.min_patch_std:g})" if flat else too_small
        )
        return ShardResult(relpath, None, 0, 0, [], hr_pixels=hr_pixels, skipped=reason, flat=flat), None
    del hr_bytes
    n, data = rows_to_shard(rows)
    return ShardResult(
        relpath,
        shard_name(relpath),
        n,
        len(data),
        [p[-1].quality for p in plans],
        [plan_label(p) for p in plans],
        hr_pixels,
        flat=flat,
    ), data


def rows_to_shard(rows: list[tuple[tuple, tuple]]) -> tuple[int, bytes]:
    """(sort key, SCHEMA values) rows -> (row count, the shard's Parquet bytes), in key order."""
    rows.sort(key=lambda r: r[0])
    columns = list(zip(*(values for _, values in rows)))
    table = pa.table({name: list(col) for name, col in zip(SCHEMA.names, columns)}, schema=SCHEMA)
    return table.num_rows, shard_bytes(table)


def is_flat(hr_patch: np.ndarray, min_std: float) -> bool:
    """True when the patch's BT.601 luma varies less than `min_std` (0..255 scale)."""
    if min_std <= 0:
        return False
    luma = hr_patch[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(luma.std()) < min_std


def decode_patches(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A batch of shard rows -> (HR, LR) uint8 arrays of shape (N, H, W, 3)."""
    n = len(batch["hr"])
    p = int(batch["patch"][0])
    s = int(batch["scale"][0])
    hr = np.frombuffer(b"".join(batch["hr"]), dtype=np.uint8).reshape(n, p * s, p * s, 3)
    lr = np.frombuffer(b"".join(batch["lr"]), dtype=np.uint8).reshape(n, p, p, 3)
    return hr, lr


@dataclass(frozen=True)
class PatchSet:
    """Decoded patch pairs held in memory, with the source image of each row."""

    hr: np.ndarray  # (N, scale*P, scale*P, 3) uint8
    lr: np.ndarray  # (N, P, P, 3) uint8
    sources: np.ndarray  # (N,) the `source` column

    def __len__(self) -> int:
        return len(self.hr)

    def sampling_weights(self, balance: str) -> np.ndarray | None:
        """Probabilities per row: None for `patch` (uniform over patches, the paper's
        sampling); for `image`, every source image is drawn equally often, whatever its size
        (a large photo otherwise dominates a small set)."""
        if balance == "patch" or len(self) == 0:
            return None
        if balance != "image":
            raise ValueError(f"balance {balance!r}: use patch or image")
        _, inverse, counts = np.unique(self.sources, return_inverse=True, return_counts=True)
        w = 1.0 / counts[inverse]
        return w / w.sum()

    @classmethod
    def from_batches(cls, batches) -> PatchSet:
        """Concatenate shard-row batches (dicts of columns, as Ray Data yields them)."""
        hrs, lrs, srcs = [], [], []
        for batch in batches:
            hr, lr = decode_patches(batch)
            hrs.append(hr)
            lrs.append(lr)
            srcs.append(np.asarray(batch["source"]))
        if not hrs:
            empty = np.zeros((0, 1, 1, 3), np.uint8)
            return cls(empty, empty, np.zeros(0, dtype=object))
        return cls(np.concatenate(hrs), np.concatenate(lrs), np.concatenate(srcs))


def load_patch_set(folder: str | Path) -> PatchSet:
    """Every patch pair of a folder of shards, decoded into memory, in file order."""
    files = sorted(Path(folder).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: no Parquet shards")
    table = pq.read_table(files, columns=["source", "patch", "scale", "hr", "lr"])
    return PatchSet.from_batches([{n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}])


def load_patch_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(HR, LR) uint8 arrays of every patch pair of a folder of shards (see :func:`load_patch_set`)."""
    patches = load_patch_set(folder)
    return patches.hr, patches.lr


def degrade_to_shard(path: str, relpath: str, out_dir: str, cfg: DegradeConfig) -> ShardResult:
    """:func:`degrade_image`, its shard written to `out_dir` (nothing for a skipped image)."""
    res, data = degrade_image(path, relpath, cfg)
    if data is not None:
        write_bytes_atomic(Path(out_dir) / res.shard, data)
    return res
