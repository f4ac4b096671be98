"""Shared orchestration for the DVC stages: parameters, timing, Ray start-up."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cajnn.config import ConfigError, Params, RayConfig, load_params

ROOT = Path.cwd()


@contextlib.contextmanager
def stage(name: str) -> Iterator[Params]:
    """Load params, time the stage, turn expected failures into one clear line + exit 1."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    # MLflow's INFO lines (database migrations, signature checks) and its artifact download
    # bars say nothing a user acts on; warnings and errors still show.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    t0 = time.perf_counter()
    try:
        params = load_params(ROOT / "params.yaml")
        yield params
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        if os.environ.get("CAJNN_DEBUG"):
            raise
        print(f"[{name}] error: {exc}  (CAJNN_DEBUG=1 shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as exc:
        ray = sys.modules.get("ray")
        if os.environ.get("CAJNN_DEBUG") or ray is None or not ray.is_initialized():
            raise
        # Ray's errors carry the worker's traceback; its full logs are not on the console.
        print(f"[{name}] failed: {type(exc).__name__}: {exc}\n[{name}] Ray's logs: {ray_logs()}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"[{name}] done in {time.perf_counter() - t0:.1f} s")


def init_ray(cfg: RayConfig) -> None:
    """Start a local Ray (address `local`) or join a cluster (`auto`, `ray://...`), quietly:
    workers' output and Ray's INFO lines stay in Ray's log folder (:func:`ray_logs`)."""
    import ray

    if ray.is_initialized():
        return
    # Token authentication stays on (Ray's default for a local cluster); only its warning on
    # every start, which a local user can do nothing about, is silenced.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # The dashboard (ray[default], bound to 127.0.0.1) also hosts the State API that Ray Train
    # V2's PlacementGroupCleaner polls; without it that actor logs errors every second.
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if cfg.address == "local":
        kwargs["num_cpus"] = cfg.num_cpus or os.cpu_count()
        # The raylet warns once more than 4x this many worker processes exist; a Ray Train run
        # (controller, worker, data coordinator, progress board, ...) passes 8 on 2 CPUs.
        os.environ.setdefault("RAY_worker_maximum_startup_concurrency", str(max(4, kwargs["num_cpus"])))
    else:
        kwargs["address"] = cfg.address
    ray.init(**kwargs)
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"
    ray.data.DataContext.get_current().enable_progress_bars = False  # the stages draw their own


def ray_logs() -> str:
    """Where this Ray session keeps its logs (the workers' output among them)."""
    try:
        from ray._private.worker import global_worker

        return global_worker.node.get_logs_dir_path()
    except Exception:  # noqa: BLE001 -- not connected, or a Ray without that attribute
        return "/tmp/ray/session_latest/logs"
