"""Save / load CAJNN weights as safetensors plus a sibling JSON architecture config.

``save_weights(model, "run/model.safetensors")`` writes

* ``run/model.safetensors``: the state dict (contiguous CPU tensors) with string metadata
  ``cajnn_format_version`` and ``cajnn_config`` (the JSON config, for cross-checking);
* ``run/model.json``: ``model.config``, from which :func:`load_weights` rebuilds the network.

Both files are written atomically and fsynced (:mod:`cajnn.atomic`), with ordinary permissions.
Loading never unpickles anything: no ``torch.load``, only safetensors and JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as _safetensors_save
from torch import nn

from .archs.presets import build_from_config
from .atomic import write_bytes_atomic, write_text_atomic

FORMAT_VERSION = "1"
_MAX_LISTED = 10


def config_path_for(path: str | os.PathLike) -> Path:
    """The JSON config path that belongs to weights file ``path`` (suffix replaced by .json)."""
    return Path(path).with_suffix(".json")


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _listed(names: list[str]) -> str:
    more = len(names) - _MAX_LISTED
    return ", ".join(names[:_MAX_LISTED]) + (f" ... (+{more} more)" if more > 0 else "")


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors) and ``model.config`` to the
    sibling ``.json``; returns ``path`` as a :class:`~pathlib.Path`."""
    model = unwrap_model(model)
    path = Path(path)
    json_path = config_path_for(path)
    if json_path == path:
        raise ValueError(f"weights path {path} must not end in .json (the config goes there)")
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise ValueError(f"{type(model).__name__} has no dict .config; cannot save it rebuildably")
    try:
        config_json = json.dumps(config, indent=2, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"model.config is not JSON-serialisable: {exc}") from exc

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "cajnn_format_version": FORMAT_VERSION, "cajnn_config": config_json}
    # fsync: a model costs hours to train, and a power cut must not leave an empty file behind
    write_bytes_atomic(path, _safetensors_save(tensors, metadata=metadata), fsync=True)
    write_text_atomic(json_path, config_json + "\n", fsync=True)  # the string the metadata holds
    return path


def _read_config(json_path: Path, weights_path: Path) -> dict[str, Any]:
    if not json_path.is_file():
        raise FileNotFoundError(
            f"model config {json_path} not found: load_weights needs the JSON config that "
            f"save_weights writes next to {weights_path.name}"
        )
    try:
        config = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"model config {json_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"model config {json_path} must hold a JSON object, got {type(config).__name__}")
    return config


def load_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network (CAJNN, or a baseline named by the config's `arch`) from
    ``<path>.json`` and load ``path`` (safetensors) strictly.

    Returns the model on ``map_location`` in eval mode. Raises ``FileNotFoundError`` when either
    file is missing and ``ValueError`` for a bad config, an unreadable or newer-format weights
    file, or state-dict keys / shapes that do not match the architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    json_path = config_path_for(path)
    config = _read_config(json_path, path)
    try:
        model = build_from_config(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model config {json_path} does not describe a valid network: {exc}") from exc

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc

    version = metadata.get("cajnn_format_version")
    if version is not None and version != FORMAT_VERSION:
        raise ValueError(f"{path} has cajnn_format_version {version!r}; this code reads {FORMAT_VERSION!r}")
    embedded = metadata.get("cajnn_config")
    if embedded is not None and json.loads(embedded) != config:
        raise ValueError(
            f"config mismatch: {json_path} differs from the config embedded in {path} ({embedded.strip()!s})"
        )

    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"state dict in {path} does not match config {json_path}: "
            f"missing keys [{_listed(missing)}]; unexpected keys [{_listed(unexpected)}]"
        )
    bad_shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if bad_shapes:
        raise ValueError(f"shape mismatch loading {path}: {_listed(bad_shapes)}")
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()
