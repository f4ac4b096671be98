"""Patch shards: one Parquet file of aligned HR/LR patch pairs per source image.

One shard per image keeps the `degrade` output deterministic (the name and bytes depend only on
the image, the profile and the seed, not on how many CPUs or blocks did the work) and lets the
stage run as independent tasks that never send pixels back to the driver.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cajnn.config import DegradeConfig
from cajnn.data.image_io import ImageLoadError, load_rgb
from cajnn.data.patches import patch_pairs
from cajnn.degradation.imresize import modcrop
from cajnn.degradation.profile import degrade, draw_qualities

SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("qf", pa.int16()),
        ("y", pa.int32()),
        ("x", pa.int32()),
        ("patch", pa.int16()),  # LR side; HR side = scale * patch
        ("scale", pa.int8()),
        ("hr", pa.binary()),  # raw uint8 HWC bytes
        ("lr", pa.binary()),
    ]
)


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
    qualities: list[int]
    skipped: str | None = None  # reason, when the image was not used


def write_table_atomic(table: pa.Table, path: Path) -> int:
    """Write Parquet to a temp file beside `path`, then rename: never a half shard."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def degrade_to_shard(path: str, relpath: str, out_dir: str, cfg: DegradeConfig) -> ShardResult:
    """Load one HR image, degrade it at K drawn QFs, cut patch pairs, write its shard."""
    profile = cfg.selected_profile()
    try:
        hr = load_rgb(path)
    except ImageLoadError as exc:
        return ShardResult(relpath, None, 0, 0, [], skipped=exc.reason)
    hr = modcrop(hr, profile.scale)
    min_side = cfg.patch_size * profile.scale
    if min(hr.shape[:2]) < min_side:
        return ShardResult(
            relpath, None, 0, 0, [], skipped=f"{hr.shape[1]}x{hr.shape[0]} is smaller than one {min_side}px patch"
        )
    rng = np.random.default_rng(stable_seed(cfg.seed, relpath))
    qualities = draw_qualities(profile, cfg.qualities_per_image, rng)
    columns: dict[str, list] = {name: [] for name in SCHEMA.names}
    for qf in qualities:
        lr = degrade(hr, profile, qf)
        for y, x, hr_p, lr_p in patch_pairs(hr, lr, cfg.patch_size, cfg.stride, profile.scale):
            for key, value in (
                ("source", relpath), ("qf", qf), ("y", y), ("x", x), ("patch", cfg.patch_size),
                ("scale", profile.scale), ("hr", hr_p.tobytes()), ("lr", lr_p.tobytes()),
            ):
                columns[key].append(value)
    table = pa.table(columns, schema=SCHEMA)
    name = shard_name(relpath)
    size = write_table_atomic(table, Path(out_dir) / name)
    return ShardResult(relpath, name, table.num_rows, size, qualities)


def decode_patches(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A batch of shard rows -> (HR, LR) uint8 arrays of shape (N, H, W, 3)."""
    n = len(batch["hr"])
    p = int(batch["patch"][0])
    s = int(batch["scale"][0])
    hr = np.frombuffer(b"".join(batch["hr"]), dtype=np.uint8).reshape(n, p * s, p * s, 3)
    lr = np.frombuffer(b"".join(batch["lr"]), dtype=np.uint8).reshape(n, p, p, 3)
    return hr, lr
