"""Shared orchestration for the DVC stages: parameters, timing, Ray start-up."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cajnn.config import ConfigError, Params, RayConfig, load_params
from cajnn.fetch.files import atomic_dir as staged_dir  # noqa: F401 (re-exported for the stages)

ROOT = Path.cwd()


@contextlib.contextmanager
def stage(name: str) -> Iterator[Params]:
    """Load params, time the stage, turn expected failures into one clear line + exit 1."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    t0 = time.perf_counter()
    try:
        params = load_params(ROOT / "params.yaml")
        yield params
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        if os.environ.get("CAJNN_DEBUG"):
            raise
        print(f"[{name}] error: {exc}  (CAJNN_DEBUG=1 shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"[{name}] done in {time.perf_counter() - t0:.1f} s")


def init_ray(cfg: RayConfig) -> None:
    """Start a local Ray (address `local`) or join a cluster (`auto`, `ray://...`)."""
    import ray

    if ray.is_initialized():
        return
    # The dashboard (ray[default], bound to 127.0.0.1) also hosts the State API that Ray Train
    # V2's PlacementGroupCleaner polls; without it that actor logs errors every second.
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if cfg.address == "local":
        kwargs["num_cpus"] = cfg.num_cpus or os.cpu_count()
    else:
        kwargs["address"] = cfg.address
    ray.init(**kwargs)


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (temp file + rename): a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
