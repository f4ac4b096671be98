"""Resumable, verified HTTP(S) downloads into the download cache.

`download()` streams to `NAME.part` next to the cache entry, resumes with a `Range` request
(guarded by `If-Range`) after an interruption -- within one call (retries with exponential
backoff) or in a later run -- checks size and checksum, and only then moves the file into
place atomically. A verified entry is never downloaded again; a file that fails verification
is renamed `NAME.bad` and never used. Transient HTTP errors (429, 5xx) and failed connections
are retried by urllib3's `Retry`; interruptions in the middle of the body by the resume loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from cajnn.atomic import write_json_atomic
from cajnn.fetch.errors import ChecksumError, FetchError, NetworkError, NotFoundError
from cajnn.fetch.files import (
    CHUNK,
    check_free_space,
    disk_full_is_clear,
    file_lock,
    hash_file,
    human_bytes,
    read_json,
)

TRANSIENT_STATUS = (408, 425, 429, 500, 502, 503, 504)
_INTERRUPTED = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    bytes: int
    md5: str
    sha256: str
    transferred: int  # bytes received over the network by this call (0 = from the cache)
    resumed_from: int  # offset of the first (Range) request, 0 for a fresh download


def make_session(retries: int, backoff: float) -> requests.Session:
    """A requests session whose connections and transient HTTP statuses are retried with
    exponential backoff (urllib3 Retry; Retry-After is honoured)."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=backoff,
        status_forcelist=TRANSIENT_STATUS,
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "cajnn-fetch"
    return session


def _describe_connection_error(exc: BaseException) -> str:
    text = repr(exc)
    if (
        "NameResolution" in text
        or "Name or service not known" in text
        or "Temporary failure in name resolution" in text
    ):
        return "DNS lookup failed (no network, or the host name is wrong)"
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused (server down or wrong port)"
    if "timed out" in text.lower() or "Timeout" in text:
        return "connection timed out (no network, proxy or firewall?)"
    return f"network error ({type(exc).__name__})"


def _expected(size: int | None, md5: str | None, sha256: str | None) -> dict[str, str]:
    return {k: v.lower() for k, v in (("md5", md5), ("sha256", sha256)) if v}


def _verify(label: str, path: Path, size: int | None, want: dict[str, str], fix: str) -> dict[str, str]:
    """Size and checksums of a complete file; a mismatch moves it to `.bad` and raises."""
    actual_size = path.stat().st_size
    got = hash_file(path, ("md5", "sha256"))
    problems = []
    if size is not None and actual_size != size:
        problems.append(f"size {actual_size:,} bytes, expected {size:,}")
    problems += [f"{algo} {got[algo]}, expected {value}" for algo, value in want.items() if got[algo] != value]
    if problems:
        bad = path.with_name(path.name.removesuffix(".part") + ".bad")
        os.replace(path, bad)
        raise ChecksumError(
            f"{label}: checksum mismatch: {'; '.join(problems)}. The file is kept aside as {bad} and "
            f"not used (nothing was extracted). If the publisher changed the file, update {fix}; "
            "otherwise rerun to download it again (delete the .bad file when done with it)."
        )
    return got


def download(
    url: str,
    target: Path,
    *,
    label: str,
    size: int | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    fix: str = "the data registry file",
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    log: Callable[[str], None] = print,
    session: requests.Session | None = None,
) -> DownloadResult:
    """Make `target` a verified copy of `url`, downloading only what is missing.

    `label` names the source in messages; `fix` says where the URL/checksum is configured.
    """
    want = _expected(size, md5, sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    stamp = target.with_name(target.name + ".verified.json")
    with file_lock(target.with_name(target.name + ".lock")):
        cached = _cached(target, stamp, url, size, want)
        if cached is not None:
            return cached
        if target.exists():  # an entry that no longer matches the registry: keep it aside
            os.replace(target, target.with_name(target.name + ".bad"))
            log(f"[fetch] {label}: cached {target.name} does not match {fix}; moved to {target.name}.bad")
        part = target.with_name(target.name + ".part")
        own_session = session is None
        session = session or make_session(retries, backoff)
        try:
            transferred, resumed_from = _transfer(
                session,
                url,
                part,
                label=label,
                size=size,
                fix=fix,
                retries=retries,
                backoff=backoff,
                timeout=timeout,
                progress=progress,
                log=log,
            )
        finally:
            if own_session:
                session.close()
        try:
            got = _verify(label, part, size, want, fix)
        finally:  # verified or set aside: the resume information is done with
            part.with_name(part.name + ".json").unlink(missing_ok=True)
        os.replace(part, target)
        st = target.stat()
        write_json_atomic(stamp, {"url": url, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, **got})
        return DownloadResult(target, st.st_size, got["md5"], got["sha256"], transferred, resumed_from)


def _cached(target: Path, stamp: Path, url: str, size: int | None, want: dict[str, str]) -> DownloadResult | None:
    """The cache entry if it is (still) verified: the stamp written after verification matches
    the file and the expected checksums; otherwise the file is hashed again."""
    if not target.is_file():
        return None
    st = target.stat()
    info = read_json(stamp) or {}
    same_file = info.get("bytes") == st.st_size and info.get("mtime_ns") == st.st_mtime_ns
    if not same_file or "md5" not in info or "sha256" not in info:
        info = {
            "url": info.get("url"),
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            **hash_file(target, ("md5", "sha256")),
        }
    if size is not None and info["bytes"] != size:
        return None
    if any(info[algo] != value for algo, value in want.items()):
        return None
    if not want and info.get("url") not in (None, url):
        return None  # unverifiable entry (no checksum given) from another URL: fetch again
    write_json_atomic(stamp, info)
    return DownloadResult(target, st.st_size, info["md5"], info["sha256"], 0, 0)


def _chunks(resp: requests.Response):
    """The body as it arrives. `read1` returns each piece as soon as it is read, so bytes
    received before a connection drops are written (and not downloaded again on resume)."""
    raw = resp.raw
    if not hasattr(raw, "read1"):  # urllib3 < 2.3
        yield from resp.iter_content(chunk_size=64 * 1024)
        return
    while chunk := raw.read1(CHUNK):
        yield chunk


def _content_range(resp: requests.Response) -> tuple[int, int | None]:
    """(first byte, total size or None) of a 206 response."""
    value = resp.headers.get("Content-Range", "")
    try:
        unit, _, rest = value.partition(" ")
        span, _, total = rest.partition("/")
        start = int(span.split("-")[0])
        return start, (None if total.strip() == "*" else int(total))
    except ValueError:
        return -1, None


def _transfer(
    session, url, part: Path, *, label, size, fix, retries, backoff, timeout, progress, log
) -> tuple[int, int]:
    """Stream `url` into `part`, resuming from what is there; returns (bytes received, first offset)."""
    meta_path = part.with_name(part.name + ".json")
    meta = read_json(meta_path) or {}
    if meta.get("url") not in (None, url):
        part.unlink(missing_ok=True)  # partial data of another URL
        meta = {}
    interruptions = 0
    transferred = 0
    first_offset: int | None = None
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = meta.get("etag") if str(meta.get("etag", "")).startswith('"') else meta.get("last_modified")
            if validator:
                headers["If-Range"] = validator
        try:
            resp = session.get(url, headers=headers, stream=True, timeout=(min(timeout, 30.0), timeout))
        except requests.exceptions.RetryError as exc:
            raise NetworkError(f"{label}: {url} kept failing ({exc}); try again later") from None
        except _INTERRUPTED as exc:
            raise NetworkError(
                f"{label}: cannot reach {url}: {_describe_connection_error(exc)}. Check the network or "
                f"proxy; offline, download the file elsewhere and put it at {part.with_suffix('')} "
                "(it is verified before use)."
            ) from None
        with resp:
            if resp.status_code == 416 and offset:
                total = _content_range(resp)[1] if "Content-Range" in resp.headers else None
                if total is not None and offset == total or size is not None and offset == size:
                    break  # the part is complete already
                part.unlink()  # the part is longer than the file: start again
                continue
            if resp.status_code in (404, 410):
                raise NotFoundError(
                    f"{label}: HTTP {resp.status_code} for {url}: the mirror moved or removed the file. "
                    f"Find the current URL and put it in {fix}."
                )
            if resp.status_code in (401, 403):
                raise FetchError(
                    f"{label}: HTTP {resp.status_code} (access refused) for {url}: the mirror now needs a "
                    f"login or moved; fix the URL in {fix}, or download the file yourself."
                )
            if resp.status_code >= 400:
                raise NetworkError(
                    f"{label}: HTTP {resp.status_code} for {url} after {retries} retries; the server has "
                    "problems, try again later (a partial download resumes)."
                )
            if resp.status_code == 206:
                start, total = _content_range(resp)
                if start != offset:
                    part.unlink(missing_ok=True)
                    continue
                mode = "ab"
            else:  # 200: the whole file (no Range support, or the file changed: If-Range)
                if offset:
                    log(f"[fetch] {label}: server sent the whole file, restarting from 0")
                offset = 0
                mode = "wb"
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            if first_offset is None:
                first_offset = offset
                if offset:
                    log(f"[fetch] {label}: resuming an earlier download at {human_bytes(offset)}")
            if size is not None and total is not None and total != size:
                raise ChecksumError(
                    f"{label}: {url} serves {total:,} bytes, expected {size:,}: the mirror has a different "
                    f"file. If the publisher changed it, update {fix}; nothing was downloaded."
                )
            total = total if total is not None else size
            check_free_space(label, part.parent, (total - offset) if total else None)
            meta = {"url": url, "etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
            write_json_atomic(meta_path, meta)
            if offset == 0 and mode == "ab":
                mode = "wb"
            try:
                with (
                    disk_full_is_clear(label, part),
                    open(part, mode) as fh,
                    tqdm(
                        total=total,
                        initial=offset,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=label,
                        disable=None if progress else True,
                        leave=False,
                    ) as bar,
                ):
                    for chunk in _chunks(resp):
                        fh.write(chunk)
                        transferred += len(chunk)
                        bar.update(len(chunk))
            except _INTERRUPTED as exc:
                interruptions += 1
                have = part.stat().st_size if part.exists() else 0
                if interruptions > retries:
                    raise NetworkError(
                        f"{label}: download of {url} interrupted {interruptions} times "
                        f"({_describe_connection_error(exc)}); {human_bytes(have)} kept in {part}: rerun to resume."
                    ) from None
                wait = backoff * 2 ** (interruptions - 1)
                log(
                    f"[fetch] {label}: interrupted at {human_bytes(have)} ({type(exc).__name__}); "
                    f"resuming in {wait:.1f} s"
                )
                time.sleep(wait)
                continue
            break
    return transferred, first_offset or 0
