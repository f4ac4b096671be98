"""`cajnn params`: the effective parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def params(path: Annotated[Path, typer.Argument()] = Path("params.yaml")) -> None:
    """Print the effective parameters (params.yaml, composed from conf/; checked) as JSON."""
    from cajnn.config import load_params, to_dict

    print(json.dumps(to_dict(load_params(path)), indent=2))


def register(app: typer.Typer) -> None:
    app.command()(params)
