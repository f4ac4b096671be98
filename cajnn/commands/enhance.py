"""`cajnn enhance`: remove JPEG artifacts and upscale the user's own images.

    cajnn enhance photo.jpg more_photos/ -o enhanced/ --weights models/cajnn.safetensors
    cajnn enhance photo.jpg -o enhanced/ --model models:/cajnn@champion
    cajnn enhance photo.jpg -o enhanced/     (no model option: the local registry's champion)
    cajnn enhance shots/ -o big/ --weights W --format auto --outscale 2 --suffix _x2 --skip-existing

Files and folders (searched recursively; the subfolder structure is kept under OUTDIR). A folder's
files that are not read (suffix outside ``READABLE_SUFFIXES``, or hidden) are counted in one line;
files given by name are always tried. Outputs are named ``<stem><--suffix>.<ext>``; ``--format``
is png (default: lossless, keeps everything), jpeg, webp, or auto (keep the input's png, jpeg or
webp; others png). ``--outscale F`` resizes the model's x4 result once (bicubic) to
``round(F * input size)``; ``--skip-existing`` leaves outputs that exist alone (counted).

What an image keeps (:mod:`cajnn.data.image_meta`): transparency (alpha upscaled separately),
grayscale, 16-bit depth (PNG), the ICC profile and EXIF (orientation applied once, tag removed);
palette images, GIFs (first frame) and CMYK are converted. What an output format cannot keep
(alpha in JPEG: composited on white; 16 bits in JPEG/WebP) is said once per run on stderr.

Each output is written atomically, with ordinary permissions (0644 under umask 022); an
unreadable input is reported on its own line while the others are still enhanced, and the exit
code is 1 if any failed (2 for a usage or model error). ``--quiet`` prints errors only.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cajnn.data.image_io import ImageLoadError, count_unread, unread_report
from cajnn.data.image_meta import KEEP_FORMAT_SUFFIXES, READABLE_SUFFIXES, finish, output_size, read_image, write_image

#: --format -> output suffix; None: keep the input's (KEEP_FORMAT_SUFFIXES, else .png).
OUTPUT_FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp", "auto": None}
DEFAULT_QUALITY = 95  # JPEG and WebP


class UsageError(Exception):
    """A problem with the arguments or the model: reported once, exit code 2."""


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    renamed: bool = False


# --------------------------------------------------------------------------- inputs -> outputs


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _target_ext(source: Path, ext: str | None) -> str:
    return ext if ext is not None else KEEP_FORMAT_SUFFIXES.get(source.suffix.lower(), ".png")


def plan_jobs(
    inputs: list[Path], outdir: Path, ext: str | None, stem_suffix: str = ""
) -> tuple[list[Job], list[tuple[Path, str]], dict[str, int]]:
    """Map inputs to output paths. A file gives ``OUTDIR/<stem><stem_suffix><ext>``; a folder's
    images (recursive, by suffix, sorted) give ``OUTDIR/<path inside the folder>`` named the same
    way. ``ext=None`` keeps the input's format (``--format auto``: .png, .jpg, .jpeg, .webp kept,
    anything else .png). Files already under OUTDIR are skipped when scanning folders (so that a
    rerun with OUTDIR inside an input folder does not enhance its own outputs). Name clashes
    (``a.jpg`` and ``a.png``, or the same relative path from two folders) are resolved by adding
    the source suffix (``a_jpg.png``) and, if still needed, a counter (``a_jpg_2.png``), in input
    order, before `stem_suffix`.

    Returns the jobs, the inputs that do not exist (path, reason), and the files of the folders
    that are not read: count per suffix (``"(no suffix)"``; ``"hidden"`` for names starting
    with a dot)."""
    out_resolved = outdir.resolve()
    pairs: list[tuple[Path, Path]] = []  # (source, its path relative to OUTDIR)
    missing: list[tuple[Path, str]] = []
    ignored: dict[str, int] = {}
    seen: set[Path] = set()
    for p in inputs:
        if p.is_dir():
            found = []
            for f in sorted(p.rglob("*")):
                if not f.is_file() or _is_under(f.resolve(), out_resolved):
                    continue
                if not count_unread(f, READABLE_SUFFIXES, ignored):
                    found.append(f)
            if not found:
                missing.append((p, "folder has no image files (" + ", ".join(sorted(READABLE_SUFFIXES)) + ")"))
            for f in found:
                pairs.append((f, f.relative_to(p)))
        elif p.exists():
            pairs.append((p, Path(p.name)))
        else:
            missing.append((p, "no such file or folder"))

    unique = []
    for src, rel in pairs:
        if src.resolve() not in seen:  # the same file given twice (e.g. a file and its folder)
            seen.add(src.resolve())
            unique.append((src, rel))

    def named(rel: Path, stem: str, ext_: str) -> Path:
        return rel.with_name(f"{stem}{stem_suffix}{ext_}")

    natural: dict[str, int] = {}
    for src, rel in unique:
        key = str(named(rel, rel.stem, _target_ext(src, ext))).casefold()
        natural[key] = natural.get(key, 0) + 1
    jobs: list[Job] = []
    taken: set[str] = set()
    for src, rel in unique:
        out_ext = _target_ext(src, ext)
        stem, renamed = rel.stem, False
        if natural[str(named(rel, stem, out_ext)).casefold()] > 1:
            renamed = True
            stem = f"{rel.stem}_{rel.suffix.lstrip('.').lower() or 'noext'}"
        candidate, n = named(rel, stem, out_ext), 2
        while str(candidate).casefold() in taken:
            renamed = True
            candidate = named(rel, f"{stem}_{n}", out_ext)
            n += 1
        taken.add(str(candidate).casefold())
        jobs.append(Job(src, outdir / candidate, renamed))
    return jobs, missing, ignored


# --------------------------------------------------------------------------- model sources


def _weights_from_mlflow(uri: str, workdir: Path) -> Path:
    """Download the ``weights`` and ``config`` artifacts of an MLflow pyfunc model (as logged by
    :func:`cajnn.serving.registry.log_pyfunc`) into ``workdir``; returns the weights path with
    its config beside it as ``<stem>.json``. Honours ``MLFLOW_TRACKING_URI``."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        import mlflow

        from cajnn.serving.mlmodel import NotCajnnModelError, cajnn_artifacts
    except ImportError as exc:  # pragma: no cover - both are dependencies
        raise UsageError(f"--model needs mlflow: {exc}") from None

    base = uri.rstrip("/")

    def fetch(rel: str, sub: str) -> Path:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/{rel}", dst_path=str(workdir / sub)))

    try:
        arts = cajnn_artifacts(base, name=uri)
        weights = fetch(arts.weights, "w")
        config = fetch(arts.config, "c") if arts.config else None
    except NotCajnnModelError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # MlflowException, OSError, connection errors, bad YAML
        from mlflow.tracking import get_tracking_uri

        msg = getattr(exc, "message", None) or str(exc)
        raise UsageError(
            f"cannot load model {uri!r} from MLflow (tracking URI {get_tracking_uri()}; set "
            f"MLFLOW_TRACKING_URI, e.g. sqlite:///mlflow/mlflow.db): {msg.strip().splitlines()[0]}"
        ) from None
    if config is not None and config != weights.with_suffix(".json"):
        shutil.copyfile(config, weights.with_suffix(".json"))
    return weights


LOCAL_REGISTRY = "mlflow/mlflow.db"  # where `make run` keeps its MLflow store (relative to the project)
DEFAULT_MODEL_NAME = "cajnn"


def local_champion(name: str = DEFAULT_MODEL_NAME) -> tuple[str, str] | None:
    """(model URI, a line saying which) of the registry's champion, when there is a registry:
    `MLFLOW_TRACKING_URI`, else `make run`'s store in the current folder. None when there is no
    registry or no champion in it."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (
        f"sqlite:///{LOCAL_REGISTRY}" if Path(LOCAL_REGISTRY).is_file() else None
    )
    if uri is None:
        return None
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        from mlflow import MlflowClient

        mv = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(name, "champion")
    except Exception:  # no such model or alias, or no reachable store: there is no champion to use
        return None
    os.environ["MLFLOW_TRACKING_URI"] = uri  # where _weights_from_mlflow downloads it from
    return f"models:/{name}@champion", f"model: the local registry's champion, {name} version {mv.version} ({uri})"


def is_model_uri(model: str) -> bool:
    """An MLflow model URI (`models:/...`, `runs:/...`, `s3://...`, a path) rather than the
    name of a shipped model (letters, digits, '-', '_', '.')."""
    return ":" in model or "/" in model


def load_model(weights: Path | None, model: str | None, workdir: Path, say=None, champion_default: bool = False):
    """The network from a weights file, an MLflow model URI or a shipped model's name; with none
    and `champion_default`, the local registry's champion (:func:`local_champion`), else the
    default shipped model. Which one is said via `say`."""
    from cajnn import shipped
    from cajnn.weights import load_weights

    if weights is not None and model is not None:
        raise UsageError("give one of --weights FILE or --model URI|NAME, not both")
    if weights is None and model is None and not champion_default:
        raise UsageError(
            "give one of --weights FILE or --model URI|NAME (a shipped model: "
            f"{', '.join(shipped.available()) or 'none installed'})"
        )
    line = None
    if weights is None and model is None:
        found = local_champion()
        if found is not None:
            model, line = found
        elif shipped.DEFAULT in shipped.available():
            model = shipped.DEFAULT
            line = f"model: shipped {shipped.DEFAULT} (no registry champion here; `make run` makes one)"
        else:
            raise UsageError(
                "no model: give --weights FILE or --model URI, or run `make run` first (its registry's "
                f"champion, {LOCAL_REGISTRY} or MLFLOW_TRACKING_URI, is used when no model is given)"
            )
    if model is not None and not is_model_uri(model):
        try:
            weights = shipped.weights_path(model)
        except ValueError as exc:
            raise UsageError(f"--model {model}: {exc} (or give an MLflow URI such as models:/cajnn@champion)") from None
        line = line or f"model: shipped {model}"
        model = None
    if line and say is not None:
        say(line)
    path = weights if weights is not None else _weights_from_mlflow(model, workdir)
    try:
        return load_weights(path)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"cannot load weights: {exc}") from None


# --------------------------------------------------------------------------- command


def enhance(
    inputs: Annotated[
        list[Path], typer.Argument(help="image files and/or folders (searched recursively)", show_default=False)
    ],
    outdir: Annotated[
        Path, typer.Option("-o", "--outdir", help="where enhanced images go (created)", show_default=False)
    ],
    weights: Annotated[Path | None, typer.Option(help="a .safetensors file (its .json config beside it)")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="a shipped model's name (cpu-base) or an MLflow model URI, e.g. models:/cajnn@champion "
            "(uses MLFLOW_TRACKING_URI). Default: the local registry's champion, else shipped cpu-base"
        ),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(min=0, help="LR tile size in pixels; 0 = whole image; default: automatic from free memory"),
    ] = None,
    overlap: Annotated[int, typer.Option(min=0, help="LR pixels of context around each tile")] = 16,
    self_ensemble: Annotated[bool, typer.Option(help="8-way self-ensemble (8x slower, a little better)")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="fp32 | bf16 (GPU, or CPU with AVX-512 BF16/AMX) | fp16 (CUDA only)")
    ] = "fp32",
    fmt: Annotated[
        str, typer.Option("--format", help="png | jpeg | webp | auto (keep the input's png, jpeg or webp; others png)")
    ] = "png",
    quality: Annotated[int | None, typer.Option(min=1, max=100, help="JPEG/WebP quality [default: 95]")] = None,
    outscale: Annotated[
        float | None,
        typer.Option(
            help="final scale: one bicubic resize of the x4 result to round(F * input size) (default: x4 as is)"
        ),
    ] = None,
    suffix: Annotated[str, typer.Option(help="appended to each output's name stem, e.g. _x4")] = "",
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="leave outputs that already exist alone (counted)")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print errors only")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for torch [default: torch's]")] = None,
) -> None:
    """Remove JPEG artifacts and upscale each image (x4 for the default model)."""
    opts = Options(
        tile, overlap, self_ensemble, device, dtype, fmt, quality, outscale, suffix, skip_existing, quiet, threads
    )
    try:
        code = _run(inputs, outdir, weights, model, opts)
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)


@dataclass(frozen=True)
class Options:
    tile: int | None
    overlap: int
    self_ensemble: bool
    device: str
    dtype: str
    fmt: str
    quality: int | None
    outscale: float | None
    suffix: str
    skip_existing: bool
    quiet: bool
    threads: int | None


def _cpu_has_amx() -> bool:
    from cajnn.inference import _cpu_flags

    return "amx_bf16" in (_cpu_flags() or ())


def _check(opts: Options) -> str | None:
    """The output suffix of --format (None for auto); raises UsageError for bad options."""
    fmt = opts.fmt.lower()
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"--format {opts.fmt!r}: use one of auto, png, jpeg, webp")
    if opts.quality is not None and fmt == "png":
        raise UsageError("--quality applies to --format jpeg or webp (or auto); PNG is lossless")
    if opts.outscale is not None and not (math.isfinite(opts.outscale) and opts.outscale > 0):
        raise UsageError(f"--outscale {opts.outscale}: must be a number above 0")
    if any(sep in opts.suffix for sep in ("/", "\\", os.sep)) or opts.suffix in (".", ".."):
        raise UsageError(f"--suffix {opts.suffix!r}: must not contain a path separator")
    return OUTPUT_FORMATS[fmt]


def _run(inputs, outdir, weights, model_uri, opts: Options) -> int:
    import torch
    from tqdm import tqdm

    from cajnn.inference import enhance as run
    from cajnn.inference import resolve_device, resolve_dtype

    ext = _check(opts)
    try:
        dev = resolve_device(opts.device)
        amp = resolve_dtype(opts.dtype, dev)  # unknown names fail here, before any work
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None

    def say(line: str) -> None:
        if not opts.quiet:
            tqdm.write(line, file=sys.stderr)

    if amp is not None and dev.type == "cpu" and not _cpu_has_amx():
        say(
            "note: this CPU has AVX-512 BF16 but no AMX; bf16 ran about 1.8x slower than fp32 on "
            "such a CPU in benchmarks/bench_model.py"
        )
    if opts.threads:
        torch.set_num_threads(opts.threads)

    with tempfile.TemporaryDirectory(prefix="cajnn-model-") as tmp:
        net = load_model(weights, model_uri, Path(tmp), say, champion_default=True)

    jobs, missing, ignored = plan_jobs(inputs, outdir, ext, opts.suffix)
    failed: list[tuple[Path, str]] = list(missing)
    for path, reason in missing:
        typer.echo(f"failed {path}: {reason}", err=True)
    for line in unread_report(ignored):
        say(line)
    if not jobs:
        typer.echo("nothing to enhance", err=True)
        return 1
    sources = {j.source.resolve() for j in jobs}
    said: set[str] = set()

    def note(kind: str, path: Path, text: str) -> None:
        if kind not in said:  # each kind once per run: a folder of 500 RGBA images needs one line
            said.add(kind)
            label = "warning" if kind.startswith("alpha") else "note"
            say(f"{label}: {text} (first seen in {path}; said once per run)")

    done = skipped = 0
    quality = opts.quality or DEFAULT_QUALITY
    bar = tqdm(jobs, desc="enhance", unit="img", file=sys.stderr, dynamic_ncols=True, disable=opts.quiet)
    for job in bar:

        def report(reason: str, job=job) -> None:
            failed.append((job.source, reason))
            tqdm.write(f"failed {job.source}: {reason}", file=sys.stderr)

        if job.target.resolve() in sources:
            report(f"output {job.target} would overwrite an input; choose another --outdir or a --suffix")
            continue
        if opts.skip_existing and job.target.exists():
            skipped += 1
            continue
        try:
            kept = read_image(job.source)
        except ImageLoadError as exc:
            report(exc.reason)
            continue
        for kind, text in kept.notes:
            note(kind, job.source, text)
        tiles = None

        def on_tile(i: int, n: int) -> None:
            nonlocal tiles
            if n > 1 and not opts.quiet:
                if tiles is None:
                    tiles = tqdm(total=n, desc="  tiles", unit="tile", leave=False, position=1, file=sys.stderr)
                tiles.update(1)

        try:
            lr = kept.network_input()
            sr = run(
                lr,
                net,
                tile=opts.tile,
                overlap=opts.overlap,
                self_ensemble=opts.self_ensemble,
                device=dev,
                dtype=opts.dtype,
                on_tile=on_tile,
            )
            size = None if opts.outscale is None else output_size(*lr.shape[:2], opts.outscale)
            out = finish(kept, sr, size)
            del sr
            for kind, text in write_image(out, job.target, icc=kept.icc, exif=kept.exif, quality=quality):
                note(kind, job.source, text)
        except (RuntimeError, OSError, ValueError, MemoryError) as exc:
            report(f"{type(exc).__name__}: {exc}")
            continue
        finally:
            if tiles is not None:
                tiles.close()
        done += 1
        if job.renamed:
            say(f"{job.source} -> {job.target} (renamed: name clash)")
    bar.close()
    if not opts.quiet:
        skip_part = f", {skipped} skipped (output exists)" if opts.skip_existing else ""
        typer.echo(f"{done} enhanced into {outdir}{skip_part}, {len(failed)} failed")
        for path, reason in failed:
            typer.echo(f"  failed: {path}: {reason}", err=True)
    return 1 if failed else 0


def register(app: typer.Typer) -> None:
    app.command()(enhance)
