"""`cajnn ablation queue | report`: the paper's Tables IV and V as DVC experiments
(cajnn/ablation.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

ablation_app = typer.Typer(no_args_is_help=True, help="The paper's ablation grid (Tables IV and V) as DVC experiments.")


def _dvc(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    from cajnn.experiments import dvc_env

    proc = subprocess.run([sys.executable, "-m", "dvc", *args], env=dvc_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        print(f"error: dvc {' '.join(args[:3])} failed:\n{proc.stderr.strip()[-3000:]}", file=sys.stderr)
        raise typer.Exit(1)
    return proc


@ablation_app.command("queue")
def queue(
    seeds: Annotated[str, typer.Option(help="comma-separated seeds (several: the report averages them)")] = "0",
    tables: Annotated[str, typer.Option(help="IV, V or IV,V")] = "IV,V",
    only: Annotated[
        str, typer.Option("--settings", help="only these settings (comma-separated keys, e.g. lambda0,lambda16)")
    ] = "",
    run: Annotated[bool, typer.Option("--run", help="start the queue (`dvc queue start`) and wait for it")] = False,
    jobs: Annotated[
        int, typer.Option(help="queue workers with --run (each experiment uses all CPUs: keep 1 on a laptop)")
    ] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", "-S", help="extra override for every experiment")] = None,
) -> None:
    """Queue one DVC experiment per setting and seed on the preset in use (stages up to evaluate)."""
    from cajnn.ablation import EXP_PREFIX, SETTINGS, queue_args
    from cajnn.config import load_params
    from cajnn.experiments import experiment_overrides, queue_states

    wanted = {t.strip().upper() for t in tables.split(",") if t.strip()}
    if not wanted <= {"IV", "V"}:
        print(f"error: --tables {tables!r}: use IV, V or IV,V", file=sys.stderr)
        raise typer.Exit(2)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        print(f"error: --seeds {seeds!r}: comma-separated integers", file=sys.stderr)
        raise typer.Exit(2) from None
    root = Path.cwd()
    extra = [*experiment_overrides(root, load_params(root / "params.yaml")), *(set_ or [])]
    keys = {k.strip() for k in only.split(",") if k.strip()}
    unknown = keys - {s.key for s in SETTINGS}
    if unknown:
        print(
            f"error: --settings {sorted(unknown)}: known keys are {', '.join(s.key for s in SETTINGS)}", file=sys.stderr
        )
        raise typer.Exit(2)
    settings = [s for s in SETTINGS if s.table in wanted and (not keys or s.key in keys)]
    for s in settings:
        for seed in seed_list:
            _dvc(["exp", "run", *queue_args(s, seed, extra)])
    print(
        f"[ablation] queued {len(settings) * len(seed_list)} experiments ({len(settings)} settings x seeds "
        f"{', '.join(map(str, seed_list))})"
        + ("" if run else "; run them: dvc queue start -j 1, then cajnn ablation report")
    )
    if run:
        _dvc(["queue", "start", "-j", str(jobs)])
        t0, errors = time.monotonic(), 0
        names = {f"{EXP_PREFIX}{s.key}-s{seed}" for s in settings for seed in seed_list}
        while True:
            states = queue_states(root)
            mine = {k: v for k, v in (states or {}).items() if k in names}
            if not mine:  # the queue is busy starting (or the status failed): ask again
                errors += 1
                if errors > 60:
                    print(
                        "error: `dvc queue status` does not list the experiments; see `dvc queue status`",
                        file=sys.stderr,
                    )
                    raise typer.Exit(1)
            elif not any(v in ("Queued", "Running") for v in mine.values()):
                break
            time.sleep(5)
        failed = sum(v == "Failed" for v in mine.values())
        print(
            f"[ablation] queue done in {time.monotonic() - t0:.0f} s"
            + (f"; {failed} failed (dvc queue logs NAME)" if failed else "")
        )


@ablation_app.command("report")
def report(
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("reports/ablation.md"),
    set_name: Annotated[
        str | None, typer.Option("--set", help="evaluation set to compare on (default: the first)")
    ] = None,
) -> None:
    """Write Tables IV and V from the finished `abl-*` experiments (mean over seeds)."""
    from cajnn.ablation import collect
    from cajnn.ablation import report as render
    from cajnn.atomic import write_text_atomic
    from cajnn.config import load_params
    from cajnn.experiments import exp_show, queue_states

    root = Path.cwd()
    params = load_params(root / "params.yaml")
    # a queued or running experiment is listed by `dvc exp show` with the workspace's metrics
    states = queue_states(root) or {}
    unfinished = {k for k, v in states.items() if v != "Success"}
    exps = [e for e in exp_show(root) if e["name"] not in unfinished]
    rows = collect(exps, set_name or next(iter(params.evaluate.sets), None))
    write_text_atomic(out, render(rows, params.preset))
    done = sum(1 for r in rows if r.psnr)
    waiting = sorted(k for k in unfinished if k.startswith("abl-"))
    print(
        f"[ablation] {out}: {done} of {len(rows)} settings have results "
        f"({sum(len(r.psnr) for r in rows)} experiments)"
        + (f"; not finished (left out): {', '.join(f'{k} ({states[k]})' for k in waiting)}" if waiting else "")
    )


def register(app: typer.Typer) -> None:
    app.add_typer(ablation_app, name="ablation")
