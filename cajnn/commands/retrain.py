"""`cajnn retrain`: fine-tune the champion when new web-platform degradation data has landed.

    cajnn retrain                                  # source etc. from params.yaml register.retrain
    cajnn retrain --source s3://web-platform/degradation/ --wait 600
    cajnn retrain --check-only                     # only say whether anything is new

`--source` / `--endpoint-url` may also come from CAJNN_RETRAIN_SOURCE / CAJNN_RETRAIN_ENDPOINT_URL
(the scheduled jobs in infra/ use these); S3 credentials are boto3's usual AWS_* variables.

Exit codes: 0 nothing new, or retrained (promoted or not); 1 failed (the new data stays unseen
and is retried next time); 2 bad configuration; 75 another retrain holds the lock.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer


def retrain(
    params: Annotated[Path, typer.Option(help="parameters file (its folder is the project root)")] = Path(
        "params.yaml"
    ),
    source: Annotated[
        str | None,
        typer.Option(
            envvar="CAJNN_RETRAIN_SOURCE", help="s3://bucket/prefix/ or a folder [default: register.retrain.source]"
        ),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            envvar="CAJNN_RETRAIN_ENDPOINT_URL",
            help="S3-compatible endpoint [default: register.retrain.endpoint_url, else AWS_ENDPOINT_URL]",
        ),
    ] = None,
    wait: Annotated[
        float, typer.Option(min=0, help="seconds to wait for a running retrain to finish (0 = exit at once)")
    ] = 0.0,
    force: Annotated[bool, typer.Option(help="run the fine-tuning even if nothing is new")] = False,
    check_only: Annotated[bool, typer.Option(help="only check the source for new data; train nothing")] = False,
) -> None:
    """Check the web-data source; if there is new data, fine-tune the champion, evaluate, register."""
    from cajnn.config import ConfigError
    from cajnn.retrain import EXIT_BUSY, Options, RetrainBusy, RetrainError
    from cajnn.retrain import retrain as run

    try:
        entry = run(
            params, Options(source=source, endpoint_url=endpoint_url, wait=wait, force=force, check_only=check_only)
        )
    except RetrainBusy as exc:
        typer.echo(f"[retrain] {exc}", err=True)
        raise typer.Exit(EXIT_BUSY) from None
    except ConfigError as exc:
        typer.echo(f"[retrain] configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    except RetrainError as exc:
        typer.echo(f"[retrain] error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # MLflow unreachable, S3 errors while downloading, ...: logged, retried next time
        if os.environ.get("CAJNN_DEBUG"):
            raise
        typer.echo(f"[retrain] failed: {type(exc).__name__}: {exc}  (CAJNN_DEBUG=1 shows the traceback)", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(entry, sort_keys=True))


def register(app: typer.Typer) -> None:
    app.command()(retrain)
