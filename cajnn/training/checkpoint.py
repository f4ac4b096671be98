"""Training checkpoints: model, optimizer, scheduler, RNG states and iteration.

Saved with `torch.save` and read back with `torch.load(weights_only=True)`, which refuses
arbitrary pickled objects: a checkpoint holds only tensors, numbers, strings and containers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cajnn.atomic import write_atomic, write_text_atomic

STATE_FILE = "state.pt"
META_FILE = "meta.json"


def save_training_state(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    iteration: int,
    rng: np.random.Generator,
    extra: dict[str, Any] | None = None,
) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    net = getattr(model, "module", model)  # unwrap DDP
    state = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    meta = {
        "iteration": iteration,
        "numpy_rng": rng.bit_generator.state,
        "model_config": getattr(net, "config", {}),
        **(extra or {}),
    }
    # Atomic: an interrupted save (the very event checkpoints exist for) keeps the previous one
    # whole. The meta file keeps its compact format (indent=1, no final newline).
    write_atomic(directory / STATE_FILE, lambda fh: torch.save(state, fh))
    write_text_atomic(directory / META_FILE, json.dumps(meta, indent=1))


def load_training_state(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Restore in place; returns the metadata (iteration, model config, ...)."""
    directory = Path(directory)
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    meta = json.loads((directory / META_FILE).read_text())
    getattr(model, "module", model).load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if rng is not None:
        rng.bit_generator.state = meta["numpy_rng"]
    return meta
