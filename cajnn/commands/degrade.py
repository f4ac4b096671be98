"""`cajnn degrade`: write JPEG-degraded LR versions of images with a degradation profile.

For making test inputs: each readable image is shrunk and compressed per the profile (as the
`degrade` stage does, but whole images, one draw each, no patches) and written to OUTDIR as
PNG (the decoded result) or as the JPEG bytes themselves. Files that cannot be used are
reported one by one -- on stderr and in OUTDIR/degrade_report.json -- while all the others are
still done; the exit code is then 1 (as `cp` does). The `degrade` pipeline stage, by contrast,
records skipped files in its manifest and succeeds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

REPORT_NAME = "degrade_report.json"
FORMATS = {"png": ".png", "jpg": ".jpg"}


def _collect(inputs: list[Path], outdir: Path, unread: dict[str, int]) -> list[tuple[Path, str, str | None]]:
    """(file, key, problem) in input order. The key is the output's path relative to OUTDIR,
    without suffix (the file name for a file argument, the path inside the folder for a folder)
    and also seeds the file's draws; problem is None, or why the input cannot be used. Files of
    a folder that are not read (hidden, or not an image suffix) are counted in `unread`."""
    from cajnn.data.image_io import IMAGE_SUFFIXES, count_unread

    out_resolved = outdir.resolve()
    entries: list[tuple[Path, str, str | None]] = []
    for inp in inputs:
        if inp.is_dir():
            for path in sorted(p for p in inp.rglob("*") if p.is_file()):
                if out_resolved in path.resolve().parents:
                    continue  # our own outputs, when OUTDIR is inside an input folder
                if count_unread(path, IMAGE_SUFFIXES, unread):
                    continue
                entries.append((path, path.relative_to(inp).with_suffix("").as_posix(), None))
        elif inp.exists():
            entries.append((inp, inp.with_suffix("").name, None))
        else:
            entries.append((inp, "", "no such file or folder"))
    return entries


def degrade(
    inputs: Annotated[
        list[Path], typer.Argument(help="image files and/or folders (searched recursively)", show_default=False)
    ],
    outdir: Annotated[Path, typer.Argument(help="where the degraded images and the report go", show_default=False)],
    profile: Annotated[
        str | None, typer.Option(help="profile name in degrade.profiles [default: degrade.profile]")
    ] = None,
    quality: Annotated[
        int | None, typer.Option(help="JPEG quality 1..100 for every pass, instead of the profile's draw")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the per-image draws [default: degrade.seed]")] = None,
    params: Annotated[
        Path | None,
        typer.Option(help="parameters file [default: ./params.yaml if present, else the built-in paper profile]"),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="png (the decoded result) | jpg (the JPEG bytes)")] = "png",
    save_hr: Annotated[
        bool, typer.Option(help="also write the HR target aligned with each LR (OUTDIR/HR, LR then in OUTDIR/LR)")
    ] = False,
) -> None:
    """Shrink and JPEG-compress images with a degradation profile (LR test inputs)."""
    import numpy as np

    from cajnn.atomic import write_bytes_atomic, write_json_atomic
    from cajnn.config import ConfigError, DegradeConfig, load_params, to_dict
    from cajnn.data.image_io import ImageLoadError, load_rgb, save_rgb, unread_report
    from cajnn.data.shards import stable_seed
    from cajnn.degradation.profile import apply_plan, draw_plans, plan_label, prepare

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if quality is not None and not 1 <= quality <= 100:
        raise typer.BadParameter(f"--quality {quality}: must be in 1..100")
    try:
        if params is not None:
            cfg = load_params(params).degrade
        elif Path("params.yaml").is_file():
            cfg = load_params(Path("params.yaml")).degrade
        else:
            cfg = DegradeConfig()
        name = profile or cfg.profile
        prof = cfg.profiles.get(name)
        if prof is None:
            raise ConfigError(f"--profile {name!r} is not in degrade.profiles ({', '.join(sorted(cfg.profiles))})")
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    seed = cfg.seed if seed is None else seed

    skipped: list[dict] = []
    lr_root, hr_root = (outdir / "LR", outdir / "HR") if save_hr else (outdir, None)
    done: list[dict] = []
    claimed: dict[Path, str] = {}
    unread: dict[str, int] = {}
    for path, key, problem in _collect(inputs, outdir, unread):
        if problem:
            skipped.append({"file": str(path), "reason": problem})
            continue
        lr_path = lr_root / f"{key}{FORMATS[fmt]}"
        if lr_path in claimed:
            skipped.append({"file": str(path), "reason": f"same output name as {claimed[lr_path]} ({lr_path})"})
            continue
        try:
            hr = load_rgb(path)
            prep = prepare(hr, prof)
            (plan,) = draw_plans(prof, 1, np.random.default_rng(stable_seed(seed, key)), quality=quality)
            deg = apply_plan(prep, prof, plan)
        except ImageLoadError as exc:
            skipped.append({"file": str(path), "reason": exc.reason})
            continue
        except ValueError as exc:  # too small for the scale or the grid offsets
            skipped.append({"file": str(path), "reason": str(exc)})
            continue
        claimed[lr_path] = str(path)
        if fmt == "jpg":
            write_bytes_atomic(lr_path, deg.jpeg)
        else:
            save_rgb(deg.lr, lr_path)
        entry = {
            "file": str(path),
            "output": str(lr_path),
            "quality": plan[-1].quality,
            "draw": plan_label(plan),
            "offset": list(deg.offset),
            "hr_size": [int(hr.shape[1]), int(hr.shape[0])],
            "lr_size": [int(deg.lr.shape[1]), int(deg.lr.shape[0])],
        }
        if hr_root is not None:
            hr_path = hr_root / f"{key}.png"
            save_rgb(np.ascontiguousarray(deg.hr), hr_path)
            entry["hr_output"] = str(hr_path)
        done.append(entry)

    report = {
        "profile": name,
        "profile_config": to_dict(prof),
        "seed": seed,
        "quality": quality,
        "format": fmt,
        "done": done,
        "skipped": skipped,
        "not_read": unread,  # folder files that are not images (by suffix) or hidden
    }
    outdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(outdir / REPORT_NAME, report, sort_keys=False)  # keys in the order a reader wants
    for s in skipped:
        print(f"skipped {s['file']}: {s['reason']}", file=sys.stderr)
    for line in unread_report(unread):
        print(line, file=sys.stderr)
    print(
        f"{len(done)} degraded with profile {name!r} into {outdir}, {len(skipped)} skipped "
        f"(report: {outdir / REPORT_NAME})"
    )
    if skipped:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(degrade)
