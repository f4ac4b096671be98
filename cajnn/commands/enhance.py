"""`cajnn enhance`: remove JPEG artifacts and upscale the user's own images.

    cajnn enhance photo.jpg more_photos/ -o enhanced/ --weights models/cajnn.safetensors
    cajnn enhance photo.jpg -o enhanced/ --model models:/cajnn@champion

Files and folders (searched recursively; the subfolder structure is kept under OUTDIR). Each
output is written atomically; an unreadable input is reported on its own line while the others
are still enhanced, and the exit code is 1 if any failed (2 for a usage or model error).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from cajnn.data.image_io import IMAGE_SUFFIXES, ImageLoadError, load_rgb, save_rgb

OUTPUT_FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp"}
DEFAULT_QUALITY = {"jpeg": 95, "jpg": 95, "webp": 95}


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


def plan_jobs(inputs: list[Path], outdir: Path, suffix: str) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Map inputs to output paths. A file gives ``OUTDIR/<stem><suffix>``; a folder's images
    (recursive, by suffix, sorted) give ``OUTDIR/<path inside the folder>`` with the suffix
    replaced. Files already under OUTDIR are skipped when scanning folders (so that a rerun with
    OUTDIR inside an input folder does not enhance its own outputs). Name clashes (``a.jpg`` and
    ``a.png``, or the same relative path from two folders) are resolved by adding the source
    suffix (``a_jpg.png``) and, if still needed, a counter (``a_jpg_2.png``), in input order.

    Returns the jobs and the inputs that do not exist (path, reason)."""
    out_resolved = outdir.resolve()
    pairs: list[tuple[Path, Path]] = []  # (source, its path relative to OUTDIR, old suffix)
    missing: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for p in inputs:
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
                and not _is_under(f.resolve(), out_resolved)
            )
            if not found:
                missing.append((p, "folder has no image files (" + ", ".join(sorted(IMAGE_SUFFIXES)) + ")"))
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
    natural: dict[str, int] = {}
    for _src, rel in unique:
        key = str(rel.with_suffix(suffix)).casefold()
        natural[key] = natural.get(key, 0) + 1
    jobs: list[Job] = []
    taken: set[str] = set()
    for src, rel in unique:
        target_rel = rel.with_suffix(suffix)
        renamed = False
        if natural[str(target_rel).casefold()] > 1:
            renamed = True
            tag = rel.suffix.lstrip(".").lower() or "noext"
            target_rel = rel.with_name(f"{rel.stem}_{tag}{suffix}")
        candidate, n = target_rel, 2
        while str(candidate).casefold() in taken:
            renamed = True
            candidate = target_rel.with_name(f"{target_rel.stem}_{n}{suffix}")
            n += 1
        taken.add(str(candidate).casefold())
        jobs.append(Job(src, outdir / candidate, renamed))
    return jobs, missing


# --------------------------------------------------------------------------- model sources

def _weights_from_mlflow(uri: str, workdir: Path) -> Path:
    """Download the ``weights`` and ``config`` artifacts of an MLflow pyfunc model (as logged by
    :func:`cajnn.serving.registry.log_pyfunc`) into ``workdir``; returns the weights path with
    its config beside it as ``<stem>.json``. Honours ``MLFLOW_TRACKING_URI``."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        import mlflow
        import yaml
    except ImportError as exc:  # pragma: no cover - both are dependencies
        raise UsageError(f"--model needs mlflow: {exc}") from None

    base = uri.rstrip("/")

    def fetch(rel: str, sub: str) -> Path:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/{rel}", dst_path=str(workdir / sub)))

    try:
        meta = yaml.safe_load(fetch("MLmodel", "meta").read_text(encoding="utf-8")) or {}
        arts = (meta.get("flavors", {}).get("python_function", {}) or {}).get("artifacts", {}) or {}
        weights_rel = (arts.get("weights") or {}).get("path")
        config_rel = (arts.get("config") or {}).get("path")
        if not weights_rel:
            raise UsageError(
                f"{uri} is not a cajnn model: its MLmodel has no 'weights' artifact "
                "(expected a pyfunc logged by cajnn.serving.registry.log_pyfunc)"
            )
        weights = fetch(weights_rel, "w")
        config = fetch(config_rel, "c") if config_rel else None
    except UsageError:
        raise
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


def load_model(weights: Path | None, model_uri: str | None, workdir: Path):
    if (weights is None) == (model_uri is None):
        raise UsageError("give exactly one of --weights FILE or --model URI")
    from cajnn.weights import load_weights

    path = weights if weights is not None else _weights_from_mlflow(model_uri, workdir)
    try:
        return load_weights(path)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"cannot load weights: {exc}") from None


# --------------------------------------------------------------------------- command

def enhance(
    inputs: Annotated[list[Path], typer.Argument(help="image files and/or folders (searched recursively)", show_default=False)],
    outdir: Annotated[Path, typer.Option("-o", "--outdir", help="where enhanced images go (created)", show_default=False)],
    weights: Annotated[Path | None, typer.Option(help="a .safetensors file (its .json config beside it)")] = None,
    model: Annotated[str | None, typer.Option(help="an MLflow model URI, e.g. models:/cajnn@champion (uses MLFLOW_TRACKING_URI)")] = None,
    tile: Annotated[int | None, typer.Option(min=0, help="LR tile size in pixels; 0 = whole image; default: automatic from free memory")] = None,
    overlap: Annotated[int, typer.Option(min=0, help="LR pixels of context around each tile")] = 16,
    self_ensemble: Annotated[bool, typer.Option(help="8-way self-ensemble (8x slower, a little better)")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    dtype: Annotated[str, typer.Option(help="fp32 | bf16 (GPU, or CPU with AVX-512 BF16/AMX)")] = "fp32",
    fmt: Annotated[str, typer.Option("--format", help="png | jpeg | webp")] = "png",
    quality: Annotated[int | None, typer.Option(min=1, max=100, help="JPEG/WebP quality [default: 95]")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for torch [default: torch's]")] = None,
) -> None:
    """Remove JPEG artifacts and upscale each image (x4 for the default model)."""
    try:
        code = _run(inputs, outdir, weights, model, tile, overlap, self_ensemble, device, dtype, fmt, quality, threads)
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if code:
        raise typer.Exit(code)


def _cpu_has_amx() -> bool:
    from cajnn.inference import _cpu_flags

    return "amx_bf16" in (_cpu_flags() or ())


def _run(inputs, outdir, weights, model_uri, tile, overlap, self_ensemble, device, dtype, fmt, quality, threads) -> int:
    import torch
    from tqdm import tqdm

    from cajnn.inference import enhance as run, resolve_device, resolve_dtype

    fmt = fmt.lower()
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of png, jpeg, webp")
    if quality is not None and fmt == "png":
        raise UsageError("--quality applies to --format jpeg or webp (PNG is lossless)")
    save_kwargs = {} if fmt == "png" else {"quality": quality or DEFAULT_QUALITY[fmt]}
    try:
        dev = resolve_device(device)
        amp = resolve_dtype(dtype, dev)  # unknown names fail here, before any work
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None
    if amp is not None and dev.type == "cpu" and not _cpu_has_amx():
        typer.echo("note: this CPU has AVX-512 BF16 but no AMX; bf16 ran about 1.8x slower than fp32 on "
                   "such a CPU in benchmarks/bench_model.py", err=True)
    if threads:
        torch.set_num_threads(threads)

    with tempfile.TemporaryDirectory(prefix="cajnn-model-") as tmp:
        net = load_model(weights, model_uri, Path(tmp))

    jobs, missing = plan_jobs(inputs, outdir, OUTPUT_FORMATS[fmt])
    failed: list[tuple[Path, str]] = list(missing)
    for path, reason in missing:
        typer.echo(f"failed {path}: {reason}", err=True)
    if not jobs:
        typer.echo("nothing to enhance", err=True)
        return 1
    sources = {j.source.resolve() for j in jobs}
    done = 0
    bar = tqdm(jobs, desc="enhance", unit="img", file=sys.stderr, dynamic_ncols=True)
    for job in bar:
        def report(reason: str, job=job) -> None:
            failed.append((job.source, reason))
            tqdm.write(f"failed {job.source}: {reason}", file=sys.stderr)

        if job.target.resolve() in sources:
            report(f"output {job.target} would overwrite an input; choose another --outdir")
            continue
        try:
            img = load_rgb(job.source)
        except ImageLoadError as exc:
            report(exc.reason)
            continue
        tiles = None

        def on_tile(i: int, n: int) -> None:
            nonlocal tiles
            if n > 1:
                if tiles is None:
                    tiles = tqdm(total=n, desc="  tiles", unit="tile", leave=False, position=1, file=sys.stderr)
                tiles.update(1)

        try:
            out = run(img, net, tile=tile, overlap=overlap, self_ensemble=self_ensemble,
                      device=dev, dtype=dtype, on_tile=on_tile)
            save_rgb(out, job.target, **save_kwargs)
        except (RuntimeError, OSError, ValueError, MemoryError) as exc:
            report(f"{type(exc).__name__}: {exc}")
            continue
        finally:
            if tiles is not None:
                tiles.close()
        done += 1
        if job.renamed:
            tqdm.write(f"{job.source} -> {job.target} (renamed: name clash)", file=sys.stderr)
    bar.close()
    typer.echo(f"{done} enhanced into {outdir}, {len(failed)} failed")
    for path, reason in failed:
        typer.echo(f"  failed: {path}: {reason}", err=True)
    return 1 if failed else 0


def register(app: typer.Typer) -> None:
    app.command()(enhance)
