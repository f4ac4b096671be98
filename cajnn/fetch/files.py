"""Small file helpers shared by the fetchers: hashing, best-effort JSON reads, disk-full handling,
hard links with a copy fallback, cache locks (atomic files and folders: :mod:`cajnn.atomic`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cajnn.fetch.errors import DiskFullError

CHUNK = 1 << 20


def hash_file(path: Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file, all algorithms in one read."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashers.items()}


def human_bytes(n: float | None) -> str:
    if n is None:
        return "unknown size"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when missing or unreadable (caches are best effort)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def disk_full_is_clear(label: str, path: Path) -> Iterator[None]:
    """Turn ENOSPC (and EDQUOT) while writing under `path` into a :class:`DiskFullError`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFullError(
            f"{label}: disk full while writing {path} ({exc.strerror}). Free space on that disk, or "
            "point fetch.cache_dir (--cache-dir) / fetch.dest (--dest) at a bigger one, then rerun "
            "(an interrupted download resumes where it stopped)."
        ) from None


def check_free_space(label: str, folder: Path, needed: int | None) -> None:
    """Fail before writing when `needed` bytes are known not to fit under `folder`."""
    if not needed:
        return
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskFullError(
            f"{label}: not enough disk space (ENOSPC) in {folder}: {human_bytes(needed)} needed, "
            f"{human_bytes(free)} free. Free space there or set fetch.cache_dir (--cache-dir) / "
            "fetch.dest (--dest) to a bigger disk."
        )


def link_or_copy(src: Path, dst: Path) -> str:
    """Hard-link `src` to `dst` (same disk: no copy, no extra space), else copy it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
        return "link"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two fetches never write the same cache entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
