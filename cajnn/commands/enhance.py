"""`cajnn enhance`: remove JPEG artifacts and upscale the user's own images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cajnn.data.image_io import IMAGE_SUFFIXES, ImageLoadError, load_rgb, save_rgb

OUTPUT_FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


def _inputs(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(p)  # a missing or bad file is reported per file, not here
    return files


def _load_model(weights: Path | None, model_uri: str | None):
    if bool(weights) == bool(model_uri):
        raise typer.BadParameter("give exactly one of --weights FILE or --model URI")
    if weights:
        from cajnn.weights import load_weights

        return load_weights(weights)
    import mlflow
    from cajnn.weights import load_weights

    local = Path(mlflow.artifacts.download_artifacts(f"{model_uri}/artifacts"))
    found = sorted(local.rglob("*.safetensors"))
    if not found:
        raise typer.BadParameter(f"{model_uri} has no safetensors weights")
    return load_weights(found[0])


def enhance(
    inputs: Annotated[list[Path], typer.Argument(help="image files and/or folders")],
    outdir: Annotated[Path, typer.Option("-o", "--outdir", help="where enhanced images go")],
    weights: Annotated[Path | None, typer.Option(help="a .safetensors file (with its .json)")] = None,
    model: Annotated[str | None, typer.Option(help="an MLflow model URI, e.g. models:/cajnn@champion")] = None,
    tile: Annotated[int, typer.Option(help="LR tile size in pixels; 0 = whole image")] = 0,
    self_ensemble: Annotated[bool, typer.Option(help="8-way self-ensemble (slower, a little better)")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    fmt: Annotated[str, typer.Option("--format", help="png | jpeg | webp")] = "png",
) -> None:
    """Remove JPEG artifacts and upscale each image (x4 for the default model)."""
    from tqdm import tqdm

    from cajnn.inference import enhance as run

    if fmt not in OUTPUT_FORMATS:
        raise typer.BadParameter(f"--format {fmt!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    net = _load_model(weights, model)
    files = _inputs(inputs)
    failed: list[tuple[Path, str]] = []
    for path in tqdm(files, desc="enhance", unit="img"):
        try:
            img = load_rgb(path)
        except ImageLoadError as exc:
            failed.append((path, exc.reason))
            tqdm.write(f"skipped {path}: {exc.reason}", file=sys.stderr)
            continue
        out = run(img, net, tile=tile or None, self_ensemble=self_ensemble, device=device)
        save_rgb(out, outdir / (path.stem + OUTPUT_FORMATS[fmt]))
    print(f"{len(files) - len(failed)} enhanced into {outdir}, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(enhance)
