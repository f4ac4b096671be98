"""S3 sources (`s3://bucket/prefix`): parallel listing and download with a change state, and
upload of a folder to a prefix (mirroring).

Objects are downloaded into the download cache (`CACHE/s3/<endpoint>/<bucket>/objects/<key>`),
and a state file beside them records each key's ETag, size and sha256. A later fetch downloads
only the objects whose ETag or size changed (or whose cache copy is gone or was modified) and
hard-links (else copies) the rest from the cache, so rebuilding the stage output transfers
nothing new. Credentials come only from boto3's standard chain (environment, shared
config/credentials files and `profile`, container/instance roles); endpoint URL, region and
profile are `fetch.s3` parameters.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from s3transfer.subscribers import BaseSubscriber
from tqdm import tqdm

from cajnn.atomic import write_json_atomic
from cajnn.config.fetch import S3Config
from cajnn.data.image_io import IMAGE_SUFFIXES
from cajnn.fetch.errors import BucketNotFoundError, CredentialsError, FetchError, NetworkError
from cajnn.fetch.files import (
    check_free_space,
    disk_full_is_clear,
    file_lock,
    hash_file,
    link_or_copy,
    read_json,
)

S3_PREFIX = "s3://"
_CRED_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "AccessDenied", "403"}


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    prefix: str  # "" or ending with "/"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def name(self) -> str:
        """Folder name of the dataset: the prefix's last component, else the bucket."""
        return self.prefix.rstrip("/").rsplit("/", 1)[-1] or self.bucket


def parse_s3_uri(uri: str) -> S3Uri:
    if not uri.startswith(S3_PREFIX):
        raise ValueError(f"{uri!r} is not an s3://BUCKET/PREFIX URI")
    bucket, _, prefix = uri[len(S3_PREFIX) :].partition("/")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-_]{1,254}", bucket or ""):
        raise ValueError(f"{uri!r}: {bucket!r} is not a valid bucket name")
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # a prefix is a folder: s3://b/photos never picks up photos-old/...
    if any(p in (".", "..") for p in prefix.split("/")):
        raise ValueError(f"{uri!r}: the prefix must not contain '.' or '..' components")
    return S3Uri(bucket, prefix)


def _where(cfg: S3Config) -> str:
    return (
        f"endpoint {cfg.endpoint_url}" if cfg.endpoint_url else "AWS" + (f" region {cfg.region}" if cfg.region else "")
    )


@contextlib.contextmanager
def s3_errors(label: str, uri: S3Uri, cfg: S3Config) -> Iterator[None]:
    """Translate botocore's exceptions into messages that say what to do."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise CredentialsError(_no_credentials(label, cfg, str(exc))) from None
    except ProfileNotFound as exc:
        raise CredentialsError(f"{label}: {exc}; fix fetch.s3.profile (--profile) or ~/.aws/config") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise NetworkError(
            f"{label}: cannot reach {_where(cfg)} ({exc}): no network/DNS, or a wrong fetch.s3.endpoint_url "
            "(--endpoint-url)"
        ) from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        if code in ("NoSuchBucket",):
            raise BucketNotFoundError(
                f"{label}: bucket {uri.bucket!r} not found at {_where(cfg)}. Check the bucket name, and "
                "fetch.s3.endpoint_url / fetch.s3.region (--endpoint-url / --region)."
            ) from None
        if code in _CRED_CODES:
            raise CredentialsError(
                f"{label}: {_where(cfg)} refused the credentials ({code}: {err.get('Message', '')}). Check "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile (fetch.s3.profile) and its "
                f"permissions on s3://{uri.bucket}."
            ) from None
        raise FetchError(f"{label}: S3 error {code}: {err.get('Message', exc)}") from None


def _no_credentials(label: str, cfg: S3Config, detail: str = "") -> str:
    return (
        f"{label}: no AWS credentials found{f' ({detail})' if detail else ''}. Set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / fetch.s3.profile (--profile) naming a profile in "
        "~/.aws/credentials (`aws configure`); credentials are never read from params.yaml."
    )


def make_client(cfg: S3Config, label: str = "s3"):
    """An S3 client from boto3's standard credential chain; fails early without credentials."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ProfileNotFound

    try:
        session = boto3.session.Session(profile_name=cfg.profile or None, region_name=cfg.region or None)
    except ProfileNotFound as exc:
        raise CredentialsError(f"{label}: {exc}; fix fetch.s3.profile (--profile) or ~/.aws/config") from None
    if session.get_credentials() is None:
        raise CredentialsError(_no_credentials(label, cfg))
    config = Config(
        max_pool_connections=max(10, 2 * cfg.workers),
        # attempts: AWS_MAX_ATTEMPTS / max_attempts in ~/.aws/config (botocore's default: 3)
        retries={"mode": "standard"},
        connect_timeout=20,
        read_timeout=60,
    )
    return session.client("s3", endpoint_url=cfg.endpoint_url or None, config=config)


def list_prefix(client, uri: S3Uri, workers: int) -> list[dict]:
    """All objects under the prefix. The first level is listed with a delimiter, and each
    sub-folder is then listed in parallel (one paginator per thread)."""

    def pages(prefix: str, delimiter: str | None) -> Iterator[dict]:
        kwargs = {"Bucket": uri.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        yield from client.get_paginator("list_objects_v2").paginate(**kwargs)

    objects, folders = [], []
    for page in pages(uri.prefix, "/"):
        objects += page.get("Contents", [])
        folders += [p["Prefix"] for p in page.get("CommonPrefixes", [])]

    def below(prefix: str) -> list[dict]:
        return [o for page in pages(prefix, None) for o in page.get("Contents", [])]

    if folders:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for found in pool.map(below, folders):
                objects += found
    return sorted(objects, key=lambda o: o["Key"])


def _endpoint_slug(endpoint_url: str | None) -> str:
    if not endpoint_url:
        return "aws"
    parsed = urlparse(endpoint_url)
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", parsed.netloc or endpoint_url)


def _safe_rel(key: str) -> bool:
    parts = key.split("/")
    return (
        bool(key)
        and not key.startswith("/")
        and not any(p in ("", ".", "..") for p in parts[:-1])
        and parts[-1] not in ("", ".", "..")
    )


class _Progress(BaseSubscriber):
    """s3transfer subscriber: gives the known size (no HEAD request) and counts bytes."""

    def __init__(self, size: int, bar: tqdm, counter: list[int], lock: threading.Lock):
        self.size, self.bar, self.counter, self.lock = size, bar, counter, lock

    def on_queued(self, future, **kwargs):
        future.meta.provide_transfer_size(self.size)

    def on_progress(self, future, bytes_transferred, **kwargs):
        with self.lock:
            self.counter[0] += bytes_transferred
        self.bar.update(bytes_transferred)


@dataclass
class S3FetchResult:
    out: Path
    kept: list[dict] = field(default_factory=list)  # {"file", "bytes", "sha256", "key", "etag"}
    skipped: list[dict] = field(default_factory=list)
    transferred_objects: int = 0
    transferred_bytes: int = 0
    reused_objects: int = 0


def fetch_prefix(
    uri: str | S3Uri,
    out: Path,
    cache_dir: Path,
    cfg: S3Config,
    *,
    label: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    client=None,
) -> S3FetchResult:
    """Make `out` hold the image objects under the prefix (paths relative to the prefix),
    transferring only new or changed objects."""
    u = parse_s3_uri(uri) if isinstance(uri, str) else uri
    label = label or str(u)
    ns = cache_dir / "s3" / _endpoint_slug(cfg.endpoint_url) / u.bucket
    objects_dir, state_path = ns / "objects", ns / "state.json"
    result = S3FetchResult(out)
    with s3_errors(label, u, cfg):
        client = client or make_client(cfg, label)
        listed = list_prefix(client, u, cfg.workers)
    with file_lock(ns / ".lock"):
        state = read_json(state_path) or {}
        entries: dict[str, dict] = state.get("objects", {})
        wanted, todo = [], []
        for obj in listed:
            key, size, etag = obj["Key"], int(obj["Size"]), obj.get("ETag", "")
            rel = key[len(u.prefix) :]
            if key.endswith("/"):
                continue  # a "folder" marker
            if not _safe_rel(key):
                result.skipped.append({"member": key, "reason": "unsafe key (empty, '.' or '..' component), not kept"})
                continue
            if os.path.splitext(key)[1].lower() not in IMAGE_SUFFIXES:
                result.skipped.append({"member": key, "reason": "not an image file"})
                continue
            cached = objects_dir / key
            entry = entries.get(key)
            fresh = (
                entry is not None
                and entry.get("etag") == etag
                and entry.get("size") == size
                and cached.is_file()
                and cached.stat().st_size == size
                and cached.stat().st_mtime_ns == entry.get("mtime_ns")
            )
            wanted.append((key, rel, size, etag, cached))
            if not fresh:
                todo.append((key, size, etag, cached))
        if not wanted:
            raise FetchError(
                f"{label}: no image files under this prefix at {_where(cfg)} "
                f"({len(listed)} objects listed); check the bucket and prefix"
            )
        try:
            if todo:
                _download(client, u, todo, cfg, label, progress, log, result, entries)
        finally:
            write_json_atomic(state_path, {"bucket": u.bucket, "endpoint": cfg.endpoint_url, "objects": entries})
        result.reused_objects = len(wanted) - len(todo)
        for key, rel, size, etag, cached in wanted:
            target = out / rel
            with disk_full_is_clear(label, target):
                link_or_copy(cached, target)
            result.kept.append({"file": rel, "bytes": size, "sha256": entries[key]["sha256"], "key": key, "etag": etag})
    return result


def _download(client, u, todo, cfg, label, progress, log, result, entries) -> None:
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    total = sum(size for _, size, _, _ in todo)
    check_free_space(label, todo[0][3].parent, total)
    counter, lock = [0], threading.Lock()
    failures = []
    with (
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"{label}: {len(todo)} objects",
            disable=None if progress else True,
            leave=False,
        ) as bar,
        s3_errors(label, u, cfg),
    ):
        config = TransferConfig(max_concurrency=max(1, cfg.workers))
        with create_transfer_manager(client, config) as manager:
            futures = []
            for key, size, etag, cached in todo:
                cached.parent.mkdir(parents=True, exist_ok=True)
                sub = _Progress(size, bar, counter, lock)
                futures.append(
                    (key, size, etag, cached, manager.download(u.bucket, key, str(cached), subscribers=[sub]))
                )
            for key, size, etag, cached, fut in futures:
                try:
                    with disk_full_is_clear(label, cached):
                        fut.result()
                except FetchError:
                    raise
                except Exception as exc:  # noqa: BLE001 - collected, the first is re-raised below
                    failures.append((key, exc))
                    continue
                st = cached.stat()
                entries[key] = {
                    "etag": etag,
                    "size": size,
                    "mtime_ns": st.st_mtime_ns,
                    "sha256": hash_file(cached)["sha256"],
                }
                result.transferred_objects += 1
        if failures:
            key, exc = failures[0]
            log(f"[fetch] {label}: {len(failures)} object(s) failed, first {key}")
            raise exc  # translated by s3_errors
    result.transferred_bytes = counter[0]


# --- upload (mirroring) ------------------------------------------------------------------------


def expected_etag(path: Path, threshold: int, chunksize: int) -> str:
    """The ETag S3 gives `path` when uploaded with these transfer settings: the md5 for a
    single-part upload, md5-of-part-md5s + "-N" for a multipart one."""
    from s3transfer.utils import ChunksizeAdjuster

    size = path.stat().st_size
    if size < threshold:
        return hash_file(path, ("md5",))["md5"]
    chunk = ChunksizeAdjuster().adjust_chunksize(chunksize, size)
    digests = []
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digests.append(hashlib.md5(block).digest())
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


@dataclass
class UploadResult:
    uploaded: int = 0
    unchanged: int = 0
    bytes: int = 0
    keys: list[str] = field(default_factory=list)


def upload_folder(
    folder: Path,
    uri: str | S3Uri,
    cfg: S3Config,
    *,
    progress: bool = True,
    client=None,
) -> UploadResult:
    """Mirror the regular files under `folder` to the prefix: files whose size and ETag already
    match are not sent again. Hidden files (`.name`) and symbolic links are not uploaded;
    objects without a local counterpart are left alone."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    u = parse_s3_uri(uri) if isinstance(uri, str) else uri
    label = f"upload to {u}"
    folder = Path(folder)
    if not folder.is_dir():
        raise FetchError(f"{label}: {folder} is not a folder")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    config = TransferConfig(max_concurrency=max(1, cfg.workers))
    result = UploadResult()
    with s3_errors(label, u, cfg):
        client = client or make_client(cfg, label)
        existing = {o["Key"]: o for o in list_prefix(client, u, cfg.workers)}
        todo = []
        for path in files:
            key = u.prefix + path.relative_to(folder).as_posix()
            remote = existing.get(key)
            if (
                remote is not None
                and int(remote["Size"]) == path.stat().st_size
                and remote.get("ETag", "").strip('"')
                == expected_etag(path, config.multipart_threshold, config.multipart_chunksize)
            ):
                result.unchanged += 1
                continue
            todo.append((path, key))
        counter, lock = [0], threading.Lock()
        with tqdm(
            total=sum(p.stat().st_size for p, _ in todo),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            disable=None if progress else True,
            leave=False,
        ) as bar:
            with create_transfer_manager(client, config) as manager:
                futures = [
                    (
                        key,
                        manager.upload(
                            str(path), u.bucket, key, subscribers=[_Progress(path.stat().st_size, bar, counter, lock)]
                        ),
                    )
                    for path, key in todo
                ]
                for key, fut in futures:
                    fut.result()
                    result.uploaded += 1
                    result.keys.append(key)
    result.bytes = counter[0]
    return result
