"""Helpers for end-to-end tests: a temporary copy of the repository run with real DVC."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TOP_LEVEL_SKIP = {".venv", ".git", "data", "models", "reports", "runs", "mlflow", ".pytest_cache"}


def IGNORE(directory: str, names: list[str]) -> set[str]:
    """Copy sources only: no venv, git history, pipeline outputs or caches."""
    skip = {n for n in names if n == "__pycache__"}
    if Path(directory) == REPO:
        skip |= TOP_LEVEL_SKIP & set(names)
    if Path(directory) == REPO / ".dvc":
        skip |= {"tmp", "cache"} & set(names)
    return skip



def project_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.setdefault("GIT_AUTHOR_NAME", "test"); env.setdefault("GIT_AUTHOR_EMAIL", "test@localhost")
    env.setdefault("GIT_COMMITTER_NAME", "test"); env.setdefault("GIT_COMMITTER_EMAIL", "test@localhost")
    return env


def run(args: list[str], cwd: Path, timeout: int = 600, env: dict[str, str] | None = None) -> str:
    """Run `args` in the project's environment (plus `env`); its output, or fail with it."""
    proc = subprocess.run(args, cwd=cwd, env={**project_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def make_project(parent: Path, preset: str = "micro", **sections) -> Path:
    """Copy the sources to `parent/cajnn`, select `preset`, apply section overrides, git init."""
    root = parent / "cajnn"
    shutil.copytree(REPO, root, ignore=IGNORE)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["preset"] = preset
    params["ray"]["num_cpus"] = 2
    for section, values in sections.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "copy"], root)
    return root
