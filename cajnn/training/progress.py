"""A training progress bar on the driver, fed by the Ray Train worker through a tiny actor.

Ray Train V2 runs the loop in a worker process and offers the driver no live view of it, and
worker output forwarded to the driver comes back prefixed, duplicated and interleaved with
Ray's own lines. So rank 0 posts its iteration and loss to a :class:`ProgressBoard` actor (a
fire-and-forget call, microseconds) and the driver draws one tqdm bar from it in a thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any


class ProgressBoard:
    """The latest progress a worker posted (run as a zero-CPU Ray actor)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def post(self, state: dict[str, Any]) -> None:
        self.state = {**self.state, **state}

    def read(self) -> dict[str, Any]:
        return self.state


class Poster:
    """Worker side: post at most every `interval` seconds (and always when `force`)."""

    def __init__(self, board: Any, interval: float = 0.5) -> None:
        self.board, self.interval, self.last = board, interval, 0.0

    def post(self, force: bool = False, **state: Any) -> None:
        now = time.monotonic()
        if self.board is not None and (force or now - self.last >= self.interval):
            self.board.post.remote(state)
            self.last = now


def postfix(state: dict[str, Any]) -> str:
    parts = []
    if "loss" in state:
        parts.append(f"loss {state['loss']:.4f}")
    if "val_psnr_y" in state:
        parts.append(f"val {state['val_psnr_y']:.2f} dB")
    if state.get("status"):
        parts.append(state["status"])
    return ", ".join(parts)


@contextlib.contextmanager
def progress_bar(total: int, desc: str = "train", initial_status: str = "starting Ray Train") -> Iterator[Any]:
    """Create a board actor, draw a bar from it while the body runs; yields the actor handle."""
    import ray

    from cajnn.console import progress

    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    bar = progress(total=total, desc=desc, unit="it", postfix=initial_status)
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            try:
                state = ray.get(board.read.remote(), timeout=5)
            except Exception:  # noqa: BLE001 -- a missed refresh is harmless; fit() reports failures
                continue
            update(state)

    def update(state: dict[str, Any]) -> None:
        if "iteration" in state and state["iteration"] > bar.n:
            bar.update(state["iteration"] - bar.n)
        text = postfix(state)
        if text:
            bar.set_postfix_str(text, refresh=False)

    thread = threading.Thread(target=poll, name="train-progress", daemon=True)
    thread.start()
    try:
        yield board
        with contextlib.suppress(Exception):
            update(ray.get(board.read.remote(), timeout=5))
    finally:
        stop.set()
        thread.join(timeout=5)
        bar.close()
        ray.kill(board)
