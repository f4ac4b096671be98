"""`cajnn evaluate`: the paper's test protocol (IV-B) for a weights file or a registered model,
on the same frozen sets as the `evaluate` stage, so models can be compared outside DVC."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer


def evaluate(
    weights: Annotated[Path | None, typer.Option(help="a .safetensors file (with its .json)")] = None,
    model: Annotated[str | None, typer.Option(help="an MLflow model URI, e.g. models:/cajnn@champion")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="folder for table.md, metrics.json, CSVs")] = Path(
        "reports/evaluate-cli"
    ),
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="NAME=FOLDER of HR images (repeatable); default: evaluate.sets of params.yaml"),
    ] = None,
    qualities: Annotated[str, typer.Option(help="comma-separated JPEG quality factors")] = "",
    self_ensemble: Annotated[bool | None, typer.Option(help="also score the 8-way self-ensemble")] = None,
    params: Annotated[Path, typer.Option(help="params.yaml to take the defaults from")] = Path("params.yaml"),
) -> None:
    """Score a model with PSNR-Y / SSIM-Y (bicubic alongside) and write the reports."""
    from cajnn.commands.enhance import UsageError, load_model
    from cajnn.config import EvaluateConfig, load_params
    from cajnn.evaluation import run_protocol, write_reports

    cfg = load_params(params).evaluate if params.is_file() else EvaluateConfig()
    changes: dict = {}
    if set_:
        try:
            changes["sets"] = dict(item.split("=", 1) for item in set_)
        except ValueError:
            raise typer.BadParameter("--set takes NAME=FOLDER") from None
        changes["sweep_set"] = next(iter(changes["sets"]))
    if qualities:
        changes["qualities"] = [int(q) for q in qualities.split(",")]
    if self_ensemble is not None:
        changes["self_ensemble"] = self_ensemble
    cfg = dataclasses.replace(cfg, **changes)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            net = load_model(weights, model, Path(tmp))
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
    try:
        protocol = run_protocol(net, cfg, Path.cwd())
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    write_reports(protocol, out, title=f"CAJNN evaluation of {weights or model}")
    print((out / "table.md").read_text())
    print(f"reports in {out}")


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
