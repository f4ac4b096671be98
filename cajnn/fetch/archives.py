"""Safe extraction of zip and tar archives: image files only, nothing outside the destination.

Debian packages (`.deb`, an `ar` archive whose `data.tar.*` member holds the files) are read as
that tar: `mate-backgrounds` comes as one (docs/data.md).

An archive is REJECTED as a whole (:class:`UnsafeArchiveError`) when any entry -- selected or
not -- has an absolute path, a drive letter, a `..` component, or is a link whose target leaves
the archive's root. For tar archives the standard library's `tarfile.data_filter` is applied
to every member as well. Nothing but regular image files (by suffix, `IMAGE_SUFFIXES`) is ever
written: links, device files and other files are recorded as skipped. Callers extract into a
fresh staging folder and discard it on error, so a rejected archive leaves no output.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tqdm import tqdm

from cajnn.data.image_io import IMAGE_SUFFIXES
from cajnn.fetch.errors import FetchError, UnsafeArchiveError
from cajnn.fetch.files import CHUNK, disk_full_is_clear


@dataclass
class Extracted:
    """What one selection (archive folder -> output folder) kept and skipped."""

    out: Path
    kept: list[dict] = field(default_factory=list)  # {"file": path in `out`, "bytes", "sha256"}
    skipped: list[dict] = field(default_factory=list)  # {"member", "reason"}


def safe_name(name: str, archive: Path, label: str) -> str:
    """The member's normalised relative POSIX path, or :class:`UnsafeArchiveError`."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) >= 2 and raw[1] == ":"):
        raise UnsafeArchiveError(f"{label}: {archive.name} rejected: entry {name!r} has an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{label}: {archive.name} rejected: entry {name!r} contains '..'")
    return "/".join(parts)


def _check_link(name: str, target: str, hard: bool, archive: Path, label: str) -> None:
    """Symlink targets are relative to the link's folder, hard-link targets to the root."""
    t = target.replace("\\", "/")
    joined = posixpath.normpath(t if hard else posixpath.join(posixpath.dirname(name), t))
    if t.startswith("/") or (len(t) >= 2 and t[1] == ":") or joined == ".." or joined.startswith("../"):
        raise UnsafeArchiveError(
            f"{label}: {archive.name} rejected: link {name!r} -> {target!r} leaves the destination"
        )


def _is_junk(name: str) -> bool:
    base = posixpath.basename(name)
    return base.startswith("._") or "__MACOSX" in name.split("/")


def _copy_hashed(src: IO[bytes], dst: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as fh:
        while chunk := src.read(CHUNK):
            h.update(chunk)
            fh.write(chunk)
            n += len(chunk)
    return n, h.hexdigest()


class _Router:
    """Maps a member name to its selection (archive folder prefix -> output folder)."""

    def __init__(self, selections: dict[str, Path]):
        self.results = {prefix.strip("/"): Extracted(out) for prefix, out in selections.items()}
        # longest prefix first so nested selections go to the most specific one
        self.order = sorted(self.results, key=len, reverse=True)

    def route(self, name: str) -> tuple[Extracted, str] | None:
        for prefix in self.order:
            if prefix == "":
                return self.results[prefix], name
            if name.startswith(prefix + "/"):
                return self.results[prefix], name[len(prefix) + 1 :]
        return None

    def take(self, name: str, opener: Callable[[], IO[bytes]], label: str) -> None:
        hit = self.route(name)
        if hit is None or not name:
            return
        result, rel = hit
        if _is_junk(name):
            result.skipped.append({"member": name, "reason": "macOS metadata"})
            return
        if posixpath.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
            result.skipped.append({"member": name, "reason": "not an image file"})
            return
        out = result.out / rel
        with opener() as src, disk_full_is_clear(label, out):
            nbytes, digest = _copy_hashed(src, out)
        result.kept.append({"file": rel, "bytes": nbytes, "sha256": digest})

    def skip(self, name: str, reason: str) -> None:
        hit = self.route(name)
        if hit is not None:
            hit[0].skipped.append({"member": name, "reason": reason})


@contextmanager
def _bar(archive: Path, label: str, total: int | None, progress: bool) -> Iterator[tqdm]:
    with tqdm(
        total=total, unit=" files", desc=f"{label}: extracting", disable=None if progress else True, leave=False
    ) as bar:
        yield bar


def _extract_zip(archive: Path, router: _Router, label: str, progress: bool) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        plan = []
        for info in infos:  # check every entry before writing anything
            name = safe_name(info.filename, archive, label)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                _check_link(name, zf.read(info).decode("utf-8", "replace"), False, archive, label)
                plan.append((name, info, "symbolic link, not kept"))
            elif info.is_dir():
                continue
            else:
                plan.append((name, info, None))
        with _bar(archive, label, len(plan), progress) as bar:
            for name, info, reason in plan:
                if reason:
                    router.skip(name, reason)
                else:
                    router.take(name, lambda info=info: zf.open(info), label)
                bar.update(1)


_TAR_FILTER_ERRORS = (
    tarfile.AbsolutePathError,
    tarfile.OutsideDestinationError,
    tarfile.AbsoluteLinkError,
    tarfile.LinkOutsideDestinationError,
)


AR_MAGIC = b"!<arch>\n"


def deb_data_member(archive: Path, label: str) -> tuple[int, int]:
    """(offset, size) of a Debian package's `data.tar.*` member.

    A .deb is a Unix `ar` archive: an 8-byte magic, then per member a 60-byte ASCII header
    (name 16, mtime 12, uid 6, gid 6, mode 8, size 10, end "`\\n") and its data padded to an
    even length (deb(5)). No library for this is in the pinned stack, and it is only this.
    """
    with open(archive, "rb") as fh:
        if fh.read(8) != AR_MAGIC:
            raise FetchError(f"{label}: {archive.name} is not a Debian package (no ar header)")
        while header := fh.read(60):
            if len(header) < 60 or header[58:60] != b"`\n":
                raise FetchError(f"{label}: {archive.name} is corrupt (bad ar member header); delete it and rerun")
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip() or 0)
            if name.startswith("data.tar"):
                return fh.tell(), size
            fh.seek(size + (size & 1), 1)
    raise FetchError(f"{label}: {archive.name} has no data.tar member; is it a Debian package?")


class _Slice(io.RawIOBase):
    """Read-only view of `size` bytes at `offset` of an open file (a tar inside an ar archive)."""

    def __init__(self, fh: IO[bytes], offset: int, size: int):
        self.fh, self.left = fh, size
        fh.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.fh.readinto(memoryview(buf)[: min(len(buf), self.left)])
        self.left -= n
        return n


def _extract_tar(
    archive: Path, router: _Router, label: str, progress: bool, byte_range: tuple[int, int] | None = None
) -> None:
    # One streaming pass (multi-GB tars are read once): an unsafe member found late aborts the
    # extraction and the caller discards the staged output. `byte_range`: the tar is that part of the file.
    fake_dest = "/cajnn-extract-check"
    with contextlib.ExitStack() as stack:
        if byte_range is None:
            tf = stack.enter_context(tarfile.open(archive, "r:*"))
        else:
            raw = stack.enter_context(_Slice(stack.enter_context(open(archive, "rb")), *byte_range))
            tf = stack.enter_context(tarfile.open(fileobj=io.BufferedReader(raw), mode="r|*"))
        bar = stack.enter_context(_bar(archive, label, None, progress))
        for member in tf:
            name = safe_name(member.name, archive, label)
            if member.issym() or member.islnk():
                _check_link(name, member.linkname, member.islnk(), archive, label)
            try:
                tarfile.data_filter(member, fake_dest)
            except _TAR_FILTER_ERRORS as exc:
                raise UnsafeArchiveError(f"{label}: {archive.name} rejected: {exc}") from None
            except tarfile.FilterError as exc:  # special files: never extracted anyway
                router.skip(name, f"not a regular file ({exc})")
                continue
            if member.isdir():
                continue
            if not member.isreg():
                router.skip(name, "link or special file, not kept")
                continue
            router.take(name, lambda m=member: tf.extractfile(m), label)
            bar.update(1)


def extract(archive: Path, selections: dict[str, Path], *, label: str, progress: bool = True) -> dict[str, Extracted]:
    """Extract the image files under each archive folder (key; "" = everything) into its
    output folder (value, created if needed). Returns what each selection kept/skipped."""
    for out in selections.values():
        out.mkdir(parents=True, exist_ok=True)
    router = _Router(selections)
    try:
        with open(archive, "rb") as fh:
            magic = fh.read(4)
        # by magic number, not by the end-of-file directory that is_zipfile() looks for: a tar
        # that ends with a zip member must not be read as that zip
        if magic.startswith(b"PK") and zipfile.is_zipfile(archive):
            _extract_zip(archive, router, label, progress)
        elif magic == AR_MAGIC[:4]:
            _extract_tar(archive, router, label, progress, deb_data_member(archive, label))
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, router, label, progress)
        else:
            raise FetchError(f"{label}: {archive} is neither a zip, a tar nor a Debian package")
    except (zipfile.BadZipFile, tarfile.ReadError, EOFError) as exc:
        raise FetchError(f"{label}: {archive} is corrupt ({exc}); delete it and rerun") from None
    return router.results
