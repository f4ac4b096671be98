"""`cajnn` command line. Each subcommand lives in its own module under `cajnn.commands`
and is found here by discovery, so adding a command never touches this file."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import cajnn.commands

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="CAJNN: JPEG artifact removal + 4x super-resolution."
)

for _info in sorted(pkgutil.iter_modules(cajnn.commands.__path__), key=lambda m: m.name):
    importlib.import_module(f"cajnn.commands.{_info.name}").register(app)


if __name__ == "__main__":
    app()
