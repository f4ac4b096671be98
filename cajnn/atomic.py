"""Atomic file writes: readers (DVC, MLflow, a second stage, a user's viewer) see either the old
file or the complete new one, never half a file, and a failed write leaves the old file as it was.
A stage's output folder is built the same way, beside its place (:func:`atomic_dir`).

Each write goes to a temp file beside the target (same folder, so same file system) and is renamed
over it with ``os.replace``. The temp file is created with ``O_EXCL`` under a random name, so two
writers of one path never share a temp file (the last rename wins, whole), and with mode 0666 so
the kernel applies the umask and any default ACL: outputs get ordinary permissions (0644 under
umask 022), unlike ``tempfile.mkstemp``'s 0600. No process-wide umask is read or changed, which
would race with other threads. Stdlib only: every layer of the package may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_dir", "write_atomic", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def _create_temp(path: Path) -> tuple[int, Path]:
    """An exclusive new temp file beside `path`: (fd, its path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # another writer drew the same random name: draw again
            continue


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object], *, fsync: bool = False) -> None:
    """Create or replace `path` with what ``write(file)`` writes to a binary file object.

    `fsync` flushes the data to disk before the rename, for files whose loss after a power cut
    costs real work (model weights); without it a crash may still leave an empty file on some
    file systems. The parent folder is created when missing; the temp file is removed on any
    failure, including KeyboardInterrupt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
    """:func:`write_atomic` of a bytes object."""
    write_atomic(path, lambda fh: fh.write(data), fsync=fsync)


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = False) -> None:
    """:func:`write_atomic` of `text` as UTF-8, exactly as given: no newline translation, so a
    CSV's ``\\r\\n`` stays ``\\r\\n`` and the bytes are the same on every platform."""
    write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(
    path: str | os.PathLike, data: Any, *, indent: int | None = 2, sort_keys: bool = True, fsync: bool = False
) -> None:
    """:func:`write_atomic` of `data` as JSON ending in a newline (the project's JSON files are
    read by people and diffed by git and DVC: indented, and by default with sorted keys so that
    the same data always gives the same bytes)."""
    write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n", fsync=fsync)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Build a folder beside its final place (`.NAME.partial`) and swap it in on success; on
    failure nothing is left behind and an existing `final` is untouched.

    Folders cannot be swapped in one rename: the old `final` is renamed aside (`.NAME.old`) and
    only removed once the new one is in place, so a reader finds no folder only between two
    renames (not for a whole tree removal), a failed swap puts it back, and a removal that fails
    midway never costs the output. Leftovers of a killed run are removed first."""
    partial = final.with_name(f".{final.name}.partial")
    old = final.with_name(f".{final.name}.old")
    if old.exists() and not final.exists():  # killed between the two renames: put it back
        os.replace(old, final)
    for leftover in (partial, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        os.replace(final, old)
    try:
        os.replace(partial, final)
    except BaseException:
        if old.exists():
            os.replace(old, final)
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
