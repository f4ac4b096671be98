"""Source strings -> one folder per dataset under `dest`, each with its manifest.

Sources (`fetch.sources`, `cajnn fetch SOURCE...`):

- ``sample``: the embedded scikit-image photos -> ``sample-train/`` and ``sample-holdout/``
- ``local:PATH``: a folder of images (each checked with `load_rgb`) -> ``<folder name>/``
- ``s3://BUCKET/PREFIX``: the image objects under the prefix -> ``<last prefix component>/``
- a data registry source: ``div2k``, ``flickr2k``, ``benchmark`` (their default parts) or
  ``NAME:PART[,PART...]`` (e.g. ``div2k:train``, ``benchmark:Set5,Set14``) -> each part's ``to``

Every dataset folder is built beside its place and swapped in only when complete (a failure
leaves no half dataset), and holds a ``manifest.json``: files with sizes and sha256, the source,
its origin (URL/archive checksum, S3 ETags) and the licence note. ``dest/manifest.json`` lists
all files (the stage's summary; `cajnn fetch` merges it with the datasets already in `dest`).
Downloads and S3 objects go through the cache (`cache_dir`), so nothing is downloaded twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from cajnn.atomic import atomic_dir, write_json_atomic
from cajnn.config.base import ConfigError
from cajnn.config.fetch import FetchConfig, HttpConfig, S3Config
from cajnn.fetch.errors import FetchError
from cajnn.fetch.files import disk_full_is_clear, hash_file, human_bytes, read_json

LOCAL_PREFIX = "local:"
SAMPLE = "sample"
SAMPLE_LICENCE = "scikit-image sample data (see skimage/data/README.txt)"
USER_LICENCE = "user-supplied: check the terms of whoever provided these images"
Log = Callable[[str], None]


@dataclass(frozen=True)
class FetchOptions:
    dest: Path
    cache_dir: Path
    registry: Path
    root: Path  # relative `local:` paths and a relative manga109 folder are resolved from here
    holdout: list[str] = field(default_factory=list)
    manga109: str | None = None
    manga109_checksum: str | None = None
    http: HttpConfig = field(default_factory=HttpConfig)
    s3: S3Config = field(default_factory=S3Config)
    progress: bool = True

    @classmethod
    def from_config(cls, cfg: FetchConfig, root: Path, **overrides) -> FetchOptions:
        opts = cls(
            dest=root / cfg.dest,
            cache_dir=resolve_cache_dir(cfg.cache_dir, root),
            registry=root / cfg.registry,
            root=root,
            holdout=list(cfg.holdout),
            manga109=cfg.manga109,
            manga109_checksum=cfg.manga109_checksum,
            http=cfg.http,
            s3=cfg.s3,
        )
        opts = replace(opts, **{k: v for k, v in overrides.items() if v is not None})
        check_cache_outside(opts.cache_dir, opts.dest)
        return opts


def resolve_cache_dir(value: str, root: Path) -> Path:
    path = Path(os.path.expanduser(os.path.expandvars(value)))
    return path if path.is_absolute() else root / path


def check_cache_outside(cache_dir: Path, dest: Path) -> None:
    """The cache must survive the rebuild of `dest` (the stage output)."""
    c, d = cache_dir.resolve(), dest.resolve()
    if c == d or d in c.parents or c in d.parents:
        raise ConfigError(
            f"fetch.cache_dir {cache_dir} and fetch.dest {dest} overlap: the cache must be outside the "
            "output folder (which is rebuilt on every run), e.g. ~/.cache/cajnn"
        )


@dataclass
class Dataset:
    """One output folder and what is in it."""

    name: str  # folder under dest (POSIX)
    source: str
    licence: str
    origin: dict = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)  # {"file": path in the folder, "bytes", "sha256", ...}
    skipped: list[dict] = field(default_factory=list)
    expected_images: int | None = None

    def manifest(self) -> dict:
        return {
            "dataset": self.name,
            "source": self.source,
            "licence": self.licence,
            "origin": self.origin,
            "images": len(self.files),
            "bytes": sum(f["bytes"] for f in self.files),
            "files": sorted(self.files, key=lambda f: f["file"]),
            "skipped": self.skipped,
        }


@dataclass
class FetchReport:
    datasets: list[Dataset] = field(default_factory=list)
    downloaded_bytes: int = 0  # over HTTP, this run
    archives_from_cache: list[str] = field(default_factory=list)
    s3_transferred: int = 0  # objects
    s3_transferred_bytes: int = 0
    s3_reused: int = 0
    notes: list[str] = field(default_factory=list)


def _finish(ds: Dataset, folder: Path) -> Dataset:
    """Write the dataset's manifest into its (staged) folder."""
    write_json_atomic(folder / "manifest.json", ds.manifest())
    return ds


# --- jobs ----------------------------------------------------------------------------------------


@dataclass
class _Job:
    label: str
    targets: list[str]

    def run(self, opts: FetchOptions, report: FetchReport, log: Log) -> None:  # pragma: no cover
        raise NotImplementedError


@dataclass
class _SampleJob(_Job):
    def run(self, opts, report, log):
        from cajnn.data.image_io import save_rgb
        from cajnn.data.sample import SAMPLE_IMAGES, load_sample

        splits = {
            "sample-train": [n for n in SAMPLE_IMAGES if n not in opts.holdout],
            "sample-holdout": [n for n in SAMPLE_IMAGES if n in opts.holdout],
        }
        for split, names in splits.items():
            if not names:
                continue
            with atomic_dir(opts.dest / split) as out:
                ds = Dataset(split, SAMPLE, SAMPLE_LICENCE, {"package": "scikit-image", "images": names})
                for name in names:
                    path = out / f"{name}.png"
                    with disk_full_is_clear(self.label, path):
                        save_rgb(load_sample(name), path, compress_level=1)
                    ds.files.append(
                        {
                            "file": path.name,
                            "bytes": path.stat().st_size,
                            "sha256": hash_file(path)["sha256"],
                            "source": f"scikit-image data.{name}",
                        }
                    )
                report.datasets.append(_finish(ds, out))


def _copy_images(label: str, folder: Path, out: Path, ds: Dataset) -> None:
    """Copy a folder's readable images; unreadable ones are recorded with their reason."""
    from cajnn.data.image_io import ImageLoadError, list_images, load_rgb

    for src in list_images(folder):
        try:
            load_rgb(src)
        except ImageLoadError as exc:
            ds.skipped.append({"file": str(src), "reason": exc.reason})
            continue
        rel = src.relative_to(folder)
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with disk_full_is_clear(label, target):
            shutil.copy2(src, target)
        ds.files.append(
            {
                "file": rel.as_posix(),
                "bytes": target.stat().st_size,
                "sha256": hash_file(target)["sha256"],
                "source": str(src),
            }
        )


@dataclass
class _LocalJob(_Job):
    folder: Path = Path()

    def run(self, opts, report, log):
        with atomic_dir(opts.dest / self.targets[0]) as out:
            ds = Dataset(self.targets[0], self.label, USER_LICENCE, {"folder": str(self.folder)})
            _copy_images(self.label, self.folder, out, ds)
            report.datasets.append(_finish(ds, out))


def _download(opts: FetchOptions, url: str, target: Path, log: Log, **kwargs):
    from cajnn.fetch.http import download

    return download(
        url,
        target,
        retries=opts.http.retries,
        backoff=opts.http.backoff,
        timeout=opts.http.timeout,
        progress=opts.progress,
        log=log,
        **kwargs,
    )


@dataclass
class _ArchiveJob(_Job):
    """The parts of one registry archive: one download, one extraction pass."""

    archive: object = None  # registry.Archive
    parts: list = field(default_factory=list)  # registry.Selected
    registry_path: Path = Path()

    def run(self, opts, report, log):
        from cajnn.fetch.archives import extract

        arc = self.archive
        target = opts.cache_dir / "downloads" / arc.name
        log(f"[fetch] {self.label}: {arc.name} ({human_bytes(arc.bytes)}) from {arc.url}")
        got = _download(
            opts,
            arc.url,
            target,
            log,
            label=self.label,
            size=arc.bytes,
            md5=arc.md5,
            sha256=arc.sha256,
            fix=f"{self.registry_path} (archives: {arc.name})",
        )
        _count_download(report, arc.name, got)
        checked = "md5" if arc.md5 else "sha256"
        log(
            f"[fetch] {self.label}: {arc.name} "
            + (
                f"downloaded ({human_bytes(got.transferred)}), {checked} verified"
                if got.transferred
                else f"from the download cache ({checked} verified)"
            )
        )
        with contextlib.ExitStack() as stack:
            outs = {sel.spec.member: stack.enter_context(atomic_dir(opts.dest / sel.spec.to)) for sel in self.parts}
            extracted = extract(target, outs, label=self.label, progress=opts.progress)
            for sel in self.parts:
                res = extracted[sel.spec.member.strip("/")]
                if not res.kept:
                    raise FetchError(
                        f"{sel.label}: {arc.name} has no image files under {sel.spec.member!r}: the archive's "
                        f"layout changed? Fix `member` of {sel.source}.parts.{sel.part} in {self.registry_path}."
                    )
                ds = Dataset(
                    sel.spec.to,
                    sel.label,
                    sel.entry.licence,
                    {
                        "url": arc.url,
                        "archive": arc.name,
                        "archive_bytes": got.bytes,
                        "archive_md5": got.md5,
                        "archive_sha256": got.sha256,
                        "member": sel.spec.member,
                        "homepage": sel.entry.homepage,
                    },
                    [{**row, "source": f"{arc.url}#{sel.spec.member.strip('/')}/{row['file']}"} for row in res.kept],
                    res.skipped,
                    sel.spec.images,
                )
                report.datasets.append(_finish(ds, res.out))


def _count_download(report: FetchReport, name: str, got) -> None:
    report.downloaded_bytes += got.transferred
    if got.transferred == 0:
        report.archives_from_cache.append(name)


def _parse_checksum(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    algo, _, digest = value.partition(":")
    if not digest:
        algo, digest = ("md5" if len(value) == 32 else "sha256"), value
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo not in ("md5", "sha256") or len(digest) != {"md5": 32, "sha256": 64}[algo]:
        raise ConfigError(f"fetch.manga109_checksum: {value!r} is not 'md5:HEX' or 'sha256:HEX'")
    return {algo: digest}


def _hoist_common_folder(out: Path, files: list[dict]) -> None:
    """Drop the folders all kept files share (an archive's `Manga109/images/...` wrapper)."""
    if not files:
        return
    common = os.path.commonpath([os.path.dirname(f["file"]) or "." for f in files])
    if common in ("", "."):
        return
    hoisted = out.with_name(out.name + ".hoist")
    os.replace(out / common, hoisted)
    shutil.rmtree(out)
    os.replace(hoisted, out)
    for f in files:
        f["file"] = PurePosixPath(f["file"]).relative_to(PurePosixPath(common)).as_posix()


@dataclass
class _Manga109Job(_Job):
    sel: object = None  # registry.Selected

    def run(self, opts, report, log):
        from cajnn.fetch.archives import extract

        spec = opts.manga109 or ""
        sel = self.sel
        with atomic_dir(opts.dest / sel.spec.to) as out:
            ds = Dataset(
                sel.spec.to, self.label, sel.entry.licence, {"manga109": spec}, expected_images=sel.spec.images
            )
            if urlparse(spec).scheme in ("http", "https"):
                want = _parse_checksum(opts.manga109_checksum)
                if not want:
                    log(f"[fetch] {self.label}: no fetch.manga109_checksum given: the download is not verified")
                base = os.path.basename(urlparse(spec).path) or "manga109"
                target = (
                    opts.cache_dir / "downloads" / f"manga109-{hashlib.sha256(spec.encode()).hexdigest()[:10]}-{base}"
                )
                got = _download(
                    opts, spec, target, log, label=self.label, fix="fetch.manga109 / fetch.manga109_checksum", **want
                )
                _count_download(report, target.name, got)
                archive = target
                ds.origin.update(
                    {"url": spec, "archive_bytes": got.bytes, "archive_md5": got.md5, "archive_sha256": got.sha256}
                )
            else:
                path = Path(os.path.expanduser(spec))
                path = path if path.is_absolute() else opts.root / path
                if path.is_dir():
                    _copy_images(self.label, path, out, ds)
                    report.datasets.append(_finish(ds, out))
                    return
                if not path.is_file():
                    raise ConfigError(
                        f"fetch.manga109: {spec!r} is neither an http(s) URL nor an existing file or folder"
                    )
                archive = path
                ds.origin.update({"archive": str(path), **hash_file(path, ("sha256",))})
            res = extract(archive, {"": out}, label=self.label, progress=opts.progress)[""]
            if not res.kept:
                raise FetchError(f"{self.label}: {archive} holds no image files; check fetch.manga109")
            _hoist_common_folder(out, res.kept)
            ds.files = [{**row, "source": spec} for row in res.kept]
            ds.skipped = res.skipped
            report.datasets.append(_finish(ds, out))


@dataclass
class _S3Job(_Job):
    uri: object = None  # s3.S3Uri

    def run(self, opts, report, log):
        from cajnn.fetch.s3 import fetch_prefix

        with atomic_dir(opts.dest / self.targets[0]) as out:
            res = fetch_prefix(
                self.uri, out, opts.cache_dir, opts.s3, label=self.label, progress=opts.progress, log=log
            )
            report.s3_transferred += res.transferred_objects
            report.s3_transferred_bytes += res.transferred_bytes
            report.s3_reused += res.reused_objects
            log(
                f"[fetch] {self.label}: {len(res.kept)} objects ({res.transferred_objects} transferred, "
                f"{human_bytes(res.transferred_bytes)}; {res.reused_objects} unchanged, from the cache)"
            )
            ds = Dataset(
                self.targets[0],
                self.label,
                USER_LICENCE,
                {"uri": str(self.uri), "endpoint_url": opts.s3.endpoint_url},
                [{**row, "source": f"s3://{self.uri.bucket}/{row.pop('key')}"} for row in res.kept],
                res.skipped,
            )
            report.datasets.append(_finish(ds, out))


# --- planning and running ------------------------------------------------------------------------


def plan(sources: list[str], opts: FetchOptions) -> tuple[list[_Job], list[str]]:
    """Jobs for the source strings (checked before anything is fetched) and notes."""
    from cajnn.fetch.s3 import S3_PREFIX, parse_s3_uri

    jobs: list[_Job] = []
    notes: list[str] = []
    registry = None
    by_archive: dict[str, _ArchiveJob] = {}
    if not sources:
        raise ConfigError("fetch.sources is empty: name at least one source")
    for spec in dict.fromkeys(sources):
        if spec == SAMPLE:
            from cajnn.data.sample import SAMPLE_IMAGES

            unknown = sorted(set(opts.holdout) - set(SAMPLE_IMAGES))
            if unknown:
                raise ConfigError(f"fetch.holdout names unknown sample images {unknown}; known: {list(SAMPLE_IMAGES)}")
            jobs.append(_SampleJob(SAMPLE, ["sample-train", "sample-holdout"]))
        elif spec.startswith(LOCAL_PREFIX):
            raw = spec[len(LOCAL_PREFIX) :]
            folder = Path(os.path.expanduser(raw))
            folder = (folder if folder.is_absolute() else opts.root / folder).resolve()
            if not folder.is_dir():
                raise ConfigError(f"fetch source {spec!r}: no such folder {folder}")
            jobs.append(_LocalJob(spec, [folder.name or "local"], folder))
        elif spec.startswith(S3_PREFIX):
            try:
                uri = parse_s3_uri(spec)
            except ValueError as exc:
                raise ConfigError(f"fetch source {exc}") from None
            jobs.append(_S3Job(spec, [uri.name], uri))
        else:
            if registry is None:
                from cajnn.fetch.registry import load_registry

                registry = load_registry(opts.registry)
            chosen, more = registry.select(spec, manga109_configured=bool(opts.manga109))
            notes += more
            for sel in chosen:
                if sel.archive is None:
                    jobs.append(_Manga109Job(sel.label, [sel.spec.to], sel))
                    continue
                job = by_archive.get(sel.archive.name)
                if job is None:
                    job = by_archive[sel.archive.name] = _ArchiveJob("", [], sel.archive, [], registry.path)
                    jobs.append(job)
                if all(s.spec.to != sel.spec.to for s in job.parts):
                    job.parts.append(sel)
                    job.targets.append(sel.spec.to)
    for job in by_archive.values():
        parts: dict[str, list[str]] = {}
        for sel in job.parts:
            parts.setdefault(sel.source, []).append(sel.part)
        job.label = "+".join(f"{src}:{','.join(names)}" for src, names in parts.items())
    _check_targets(jobs)
    return jobs, notes


def _check_targets(jobs: list[_Job]) -> None:
    owner: dict[PurePosixPath, str] = {}
    for job in jobs:
        for t in job.targets:
            path = PurePosixPath(t)
            for other, label in owner.items():
                if other == path or other in path.parents or path in other.parents:
                    raise ConfigError(
                        f"fetch sources {label!r} and {job.label!r} both write "
                        f"{other if len(other.parts) <= len(path.parts) else path} "
                        "under fetch.dest: drop one, or give the folders distinct names"
                    )
            owner[path] = job.label


def fetch_all(sources: list[str], opts: FetchOptions, log: Log = print) -> FetchReport:
    """Fetch every source into `opts.dest` (each dataset folder swapped in when complete) and
    write `dest/manifest.json` (merged with the datasets already there)."""
    jobs, notes = plan(sources, opts)
    report = FetchReport(notes=notes)
    for note in notes:
        log(f"[fetch] note: {note}")
    opts.dest.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        job.run(opts, report, log)
    for ds in report.datasets:
        if ds.expected_images is not None and len(ds.files) != ds.expected_images:
            note = f"{ds.source}: {len(ds.files)} images in {ds.name}, the registry expects {ds.expected_images}"
            report.notes.append(note)
            log(f"[fetch] warning: {note}")
    write_summary(opts.dest, list(dict.fromkeys(sources)), report.datasets)
    return report


def write_summary(dest: Path, sources: list[str], datasets: list[Dataset]) -> dict:
    """`dest/manifest.json`: every file with its dataset, source and licence. Datasets from an
    earlier run that are still in `dest` (the CLI adding to a folder) are kept."""
    new = {ds.name for ds in datasets}
    old = read_json(dest / "manifest.json") or {}
    old_sets = {k: v for k, v in (old.get("datasets") or {}).items() if k not in new and (dest / k).is_dir()}
    files = [f for f in old.get("files", []) if f.get("dataset") in old_sets]
    skipped = [s for s in old.get("skipped", []) if s.get("dataset") in old_sets]
    summary_sets = dict(old_sets)
    for ds in datasets:
        summary_sets[ds.name] = {
            "source": ds.source,
            "licence": ds.licence,
            "images": len(ds.files),
            "bytes": sum(f["bytes"] for f in ds.files),
            "manifest": f"{ds.name}/manifest.json",
        }
        files += [
            {
                "dataset": ds.name,
                "file": f"{ds.name}/{f['file']}",
                "bytes": f["bytes"],
                "sha256": f["sha256"],
                "source": f.get("source", ds.source),
                "licence": ds.licence,
            }
            for f in ds.files
        ]
        skipped += [{"dataset": ds.name, **s} for s in ds.skipped]
    kept_sources = [v.get("source") for v in old_sets.values() if v.get("source")]
    manifest = {
        "sources": list(dict.fromkeys(kept_sources + sources)),
        "datasets": summary_sets,
        "files": sorted(files, key=lambda f: f["file"]),
        "skipped": skipped,
    }
    write_json_atomic(dest / "manifest.json", manifest)
    return manifest
