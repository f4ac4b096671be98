"""Running the pipeline as DVC experiments from code (`cajnn retrain`, `cajnn ablation`).

An experiment that runs outside the checkout (`dvc exp run --temp` or `--queue`) works in a
temporary copy that holds only what git tracks: paths that must reach the checkout's own
stores (a sqlite MLflow store and its artifacts, the Ray checkpoints) are given to it as
absolute `-S` overrides (:func:`experiment_overrides`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from cajnn.config import Params


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def experiment_overrides(root: Path, params: Params) -> list[str]:
    """`-S` overrides that point the temporary copy at the checkout's own stores: a sqlite MLflow
    store and its artifacts, and the Ray checkpoints (so that a rerun after a crash resumes)."""
    from cajnn.tracking import resolve_tracking_uri

    out = []
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        uri = resolve_tracking_uri(params.mlflow, root, create=True)
        if uri.startswith("sqlite:///"):
            out.append(f"mlflow.tracking_uri={uri}")
            if "://" not in params.mlflow.artifact_location:
                out.append(f"mlflow.artifact_location={(root / params.mlflow.artifact_location).resolve()}")
    if "://" not in params.train.storage_path and not Path(params.train.storage_path).is_absolute():
        out.append(f"train.storage_path={(root / params.train.storage_path).resolve()}")
    return out


def run_experiment(
    root: Path,
    name: str,
    overrides: list[str],
    log_path: Path,
    echo: Callable[[str], None],
    copy_paths: tuple[str, ...] = (),
) -> int:
    """`dvc exp run --temp -f -n NAME -S ...` (every stage, even when no parameter changed:
    new data may sit behind an unchanged `local:` path), output streamed to `echo` and to
    `log_path`; `copy_paths`: git-ignored files the temporary copy needs."""
    env = dvc_env()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dvc", "exp", "run", "--temp", "-f", "-n", name]
    for path in copy_paths:
        cmd += ["-C", path]
    for o in overrides:
        cmd += ["-S", o]
    with log_path.open("w") as log:
        log.write(f"$ {' '.join(cmd)}  (cwd {root}, {_now()})\n")
        proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            echo(line.rstrip("\n"))
        return proc.wait()


def experiment_file(root: Path, name: str, path: str) -> str:
    """A git-tracked file as the named DVC experiment committed it."""
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/exps/"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    ref = next((r for r in refs if r.rsplit("/", 1)[-1] == name), None)
    if ref is None:
        raise FileNotFoundError(f"experiment {name!r} not found among the DVC experiments ({len(refs)} refs)")
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=root, capture_output=True, text=True, check=True).stdout


def dvc_env() -> dict[str, str]:
    """The environment for `python -m dvc` children: this venv's bin first (stages run
    `python -m ...`), no analytics."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def exp_show(root: Path) -> list[dict]:
    """`dvc exp show --json --all-commits`'s experiments as flat rows: name, rev, params
    (params.yaml) and metrics (every metrics file, merged)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json", "--all-commits"],
        cwd=root,
        env=dvc_env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dvc exp show failed: {proc.stderr.strip()[-2000:]}")
    rows = []
    for commit in json.loads(proc.stdout or "[]"):
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                metrics: dict = {}
                for m in (data.get("metrics") or {}).values():
                    metrics.update(m.get("data") or {})
                rows.append(
                    {
                        "name": exp.get("name") or rev.get("name"),
                        "rev": rev.get("rev"),
                        "params": params,
                        "metrics": metrics,
                    }
                )
    return rows


def queue_states(root: Path) -> dict[str, str] | None:
    """`dvc queue status` as {experiment name: Queued | Running | Success | Failed}, or None when
    the command failed (e.g. while the queue is starting)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "queue", "status"], cwd=root, env=dvc_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        return None
    return {
        parts[1]: parts[-1]
        for parts in (line.split() for line in proc.stdout.splitlines())
        if len(parts) >= 3 and parts[-1] in ("Queued", "Running", "Success", "Failed")
    }
