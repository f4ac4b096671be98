"""The data registry file (`data_registry.yaml`): downloadable archives and named sources.

Loaded strictly (unknown keys and wrong types are refused with their place in the file), so a
mirror change is one edit of that file, never of code. Format: see the file's header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cajnn.config.base import ConfigError, from_dict, read_yaml

_HEX = {"md5": re.compile(r"^[0-9a-f]{32}$"), "sha256": re.compile(r"^[0-9a-f]{64}$")}


@dataclass(frozen=True)
class Archive:
    """One downloadable file."""

    url: str
    md5: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    name: str = ""  # the key in `archives:` (= file name in the download cache)


@dataclass(frozen=True)
class Part:
    """What one selectable part of a source puts under fetch.dest."""

    to: str  # folder under fetch.dest
    archive: str | None = None  # key in `archives:`
    member: str | None = None  # folder inside the archive whose image files are kept
    user: str | None = None  # `manga109`: comes from the fetch.manga109 parameter
    images: int | None = None  # expected number of images (a warning when it differs)


@dataclass(frozen=True)
class SourceEntry:
    parts: dict[str, Part]
    description: str = ""
    homepage: str = ""
    licence: str = ""
    default: list[str] = field(default_factory=list)


USER_PARTS = ("manga109",)


@dataclass(frozen=True)
class Selected:
    """A part chosen by a source string, with what the fetchers need to know about it."""

    source: str
    part: str
    spec: Part
    entry: SourceEntry
    archive: Archive | None

    @property
    def label(self) -> str:
        return f"{self.source}:{self.part}"


@dataclass(frozen=True)
class Registry:
    path: Path
    archives: dict[str, Archive]
    sources: dict[str, SourceEntry]

    def select(self, spec: str, *, manga109_configured: bool = False) -> tuple[list[Selected], list[str]]:
        """Parts named by `NAME` (its defaults) or `NAME:PART[,PART...]`; also notes for the
        user about default parts left out (a user-supplied part that is not configured)."""
        name, _, wanted = spec.partition(":")
        entry = self.sources.get(name)
        if entry is None:
            raise ConfigError(
                f"fetch source {spec!r}: unknown; registry sources in {self.path}: "
                f"{', '.join(sorted(self.sources))} (or sample, local:PATH, s3://BUCKET/PREFIX)"
            )
        explicit = bool(wanted)
        names = [p.strip() for p in wanted.split(",") if p.strip()] if explicit else list(entry.default or entry.parts)
        unknown = [p for p in names if p not in entry.parts]
        if unknown:
            raise ConfigError(
                f"fetch source {spec!r}: no part(s) {', '.join(unknown)} in {self.path}; "
                f"known parts of {name}: {', '.join(entry.parts)}"
            )
        chosen, notes = [], []
        for part in dict.fromkeys(names):
            p = entry.parts[part]
            if p.user == "manga109" and not manga109_configured:
                msg = (
                    f"{name}:{part} has no open mirror: set fetch.manga109 (--manga109) to the URL of "
                    "an archive or to a folder of its HR images"
                )
                if explicit:
                    raise ConfigError(f"fetch source {spec!r}: {msg}")
                notes.append(f"{name}:{part} skipped ({msg})")
                continue
            archive = self.archives[p.archive] if p.archive else None
            chosen.append(Selected(name, part, p, entry, archive))
        return chosen, notes


def _check_part(where: str, part: Part, archives: dict[str, Archive]) -> None:
    if (part.archive is None) == (part.user is None):
        raise ConfigError(f"{where}: give exactly one of `archive` or `user`")
    if part.archive is not None:
        if part.archive not in archives:
            raise ConfigError(f"{where}.archive: {part.archive!r} is not in `archives` ({', '.join(archives)})")
        if not part.member:
            raise ConfigError(f"{where}.member: the archive folder to keep is required")
    if part.user is not None and part.user not in USER_PARTS:
        raise ConfigError(f"{where}.user: {part.user!r} is not one of {', '.join(USER_PARTS)}")
    to = PurePosixPath(part.to)
    if to.is_absolute() or ".." in to.parts or not to.parts:
        raise ConfigError(f"{where}.to: {part.to!r} must be a relative folder without '..'")


def load_registry(path: str | Path) -> Registry:
    """Read and check the registry file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no data registry file (fetch.registry / --registry)")
    data = read_yaml(path) or {}
    if not isinstance(data, dict) or set(data) - {"archives", "sources"}:
        raise ConfigError(f"{path}: expected the top-level keys `archives` and `sources`")
    archives: dict[str, Archive] = {}
    for name, body in (data.get("archives") or {}).items():
        where = f"{path.name}: archives.{name}"
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: expected a mapping")
        arc = from_dict(Archive, {**body, "name": str(name)}, where)
        if not arc.md5 and not arc.sha256:
            raise ConfigError(f"{where}: needs an md5 or sha256 checksum (downloads are verified)")
        for algo in ("md5", "sha256"):
            value = getattr(arc, algo)
            if value is not None and not _HEX[algo].match(value.lower()):
                raise ConfigError(f"{where}.{algo}: {value!r} is not a hex {algo} digest")
        if "/" in arc.name or arc.name.startswith("."):
            raise ConfigError(f"{where}: the name must be a plain file name")
        archives[arc.name] = arc
    sources: dict[str, SourceEntry] = {}
    for name, body in (data.get("sources") or {}).items():
        where = f"{path.name}: sources.{name}"
        entry = from_dict(SourceEntry, body, where)
        for part_name, part in entry.parts.items():
            _check_part(f"{where}.parts.{part_name}", part, archives)
        bad = [p for p in entry.default if p not in entry.parts]
        if bad:
            raise ConfigError(f"{where}.default: unknown part(s) {', '.join(bad)}")
        sources[str(name)] = entry
    return Registry(path=path, archives=archives, sources=sources)
