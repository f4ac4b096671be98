"""`cajnn profile fit DIR -o FILE` and `cajnn profile show FILE.jpg`: degradation profiles from the
JPEGs a web platform serves (docs/web-platform-data.md)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

profile_app = typer.Typer(no_args_is_help=True, help="Degradation profiles fitted to a platform's served JPEGs.")
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(1)


@profile_app.command("fit")
def fit(
    folder: Annotated[Path, typer.Argument(help="folder of JPEGs as the platform served them (read recursively)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="YAML file to write: profiles: {NAME: ...} and fit:")],
    name: Annotated[str | None, typer.Option(help="profile name (default: the folder's name)")] = None,
    scale: Annotated[int, typer.Option(help="SR factor the profile is for (not readable from served files)")] = 4,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Fit a degradation profile (QF distribution, chroma subsampling, size cap, recompression)
    to every JPEG under FOLDER; files that are not usable JPEGs are reported and counted."""
    import yaml

    from cajnn.atomic import write_text_atomic
    from cajnn.degradation.profile_fit import fit_profile, read_folder_facts

    if not folder.is_dir():
        _fail(f"{folder}: no such folder")
    name = name or re.sub(r"[^A-Za-z0-9_-]", "_", folder.resolve().name) or "platform"
    if not NAME_PATTERN.match(name):
        _fail(f"profile name {name!r}: use letters, digits, '_' and '-', starting with a letter")
    files, skipped = read_folder_facts(folder, progress=not quiet)
    try:
        result = fit_profile(files, skipped, scale=scale)
    except ValueError as exc:
        for s in skipped[:10]:
            print(f"skipped {s['file']}: {s['reason']}", file=sys.stderr)
        _fail(str(exc))
    mapping = result.as_yaml_mapping(name)
    mapping["fit"] = {"name": name, "folder": str(folder), **mapping["fit"]}
    write_text_atomic(
        out,
        "# cajnn profile fit: the profile drops into degrade.profiles (params.yaml / conf) or a\n"
        "# retrain source's profiles.yaml; `fit` is the evidence it was read from.\n"
        + yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True),
    )
    p, ev = result.profile, result.evidence
    qfs = ", ".join(f"{q} ({w:.0%})" for q, w in zip(p.qf_values, p.qf_weights))
    print(f"{name}: {ev['files']} JPEGs read, {ev['skipped']} skipped -> {out}")
    print(
        f"  quality factors: {qfs}"
        + (
            f"; {ev['quality']['non_ijg_tables']} files with non-IJG tables (nearest IJG quality used)"
            if ev["quality"]["non_ijg_tables"]
            else ""
        )
    )
    sub = ", ".join(f"{k} x{v}" for k, v in ev["subsampling"].items())
    print(f"  chroma subsampling: {p.subsampling} ({sub})")
    ls = ev["longest_side"]
    print(
        f"  size cap: {f'{p.max_side} px longest side' if p.max_side else 'none read'} "
        f"({ls['files_at_largest']} of {ev['files']} files at the largest longest side, {ls['largest']} px)"
    )
    d = ev["double_compression"]
    print(
        f"  second compression on the same grid: {d['double']} of {d['single'] + d['double']} readable files "
        f"({d['unknown']} unreadable) -> compressions: {p.compressions}"
    )
    for s in skipped:
        print(f"  skipped {s['file']}: {s['reason']}", file=sys.stderr)


@profile_app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="one JPEG file")],
    tables: Annotated[bool, typer.Option(help="print the quantization tables too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the facts as JSON")] = False,
) -> None:
    """What one JPEG says about the platform that made it: size, subsampling, quality factor
    (from its quantization tables), signs of a second compression."""
    from dataclasses import asdict

    from cajnn.degradation.jpeg_facts import NotAJpegError, read_jpeg_facts

    try:
        facts = read_jpeg_facts(file.read_bytes())
    except OSError as exc:
        _fail(f"{file}: cannot read ({exc.strerror})")
    except NotAJpegError as exc:
        _fail(f"{file}: {exc}")
    if as_json:
        print(json.dumps({"file": str(file), **asdict(facts)}, indent=2))
        return
    q = facts.quality
    print(
        f"{file}: {facts.width}x{facts.height}, {facts.components} component(s), subsampling {facts.subsampling}"
        f"{', progressive' if facts.progressive else ''}"
    )
    print(
        f"  quality factor: {q.quality}"
        + (
            " (IJG tables, exact)"
            if q.ijg
            else f" (nearest IJG; tables are not IJG scalings, residual {q.residual:.1%})"
        )
    )
    d = facts.double
    print(
        f"  second compression on the same grid: {d.verdict}"
        + (
            f" ({d.reason})"
            if d.reason
            else f" (peaks at {d.peak_frequencies} of {d.usable_frequencies} low frequencies)"
        )
    )
    if tables:
        for label, t in (("luma", facts.luma_table), ("chroma", facts.chroma_table)):
            if t:
                print(f"  {label} table:")
                for r in range(8):
                    print("    " + " ".join(f"{v:3d}" for v in t[8 * r : 8 * r + 8]))


def register(app: typer.Typer) -> None:
    app.add_typer(profile_app, name="profile")
