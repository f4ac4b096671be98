"""Models that ship inside the package, trained by this project's own pipeline.

Each one is a folder ``cajnn/shipped/<name>/``:

* ``model.safetensors`` + ``model.json``: the weights and the architecture (read by
  :func:`cajnn.weights.load_weights`, never unpickled);
* ``card.json``: where it came from (preset, parameters, data manifests and their hashes,
  iterations, the MLflow run and DVC experiment) and what it scores on the held-out photos;
* ``MODEL_CARD.md``: the same for people.

:mod:`cajnn.shipped.export` writes such a folder from a finished pipeline run
(``make shipped-model``); docs/shipped-model.md says how ``cpu-base`` was made and what it gives.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT = "cpu-base"  # what `cajnn enhance` uses when there is no registry champion
HERE = Path(__file__).resolve().parent
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
CARD_MD = "MODEL_CARD.md"
MAX_BYTES = 20 * 1024 * 1024  # what one shipped model may add to the package


def available() -> list[str]:
    """Names of the shipped models installed with this package."""
    return sorted(p.parent.name for p in HERE.glob(f"*/{WEIGHTS_FILE}"))


def weights_path(name: str = DEFAULT) -> Path:
    """The weights file of shipped model `name` (its model.json beside it); ValueError when
    there is no such model, naming the ones there are."""
    path = HERE / name / WEIGHTS_FILE
    if "/" in name or name.startswith(".") or not path.is_file():
        have = ", ".join(available()) or "none (this installation has no shipped weights)"
        raise ValueError(f"no shipped model {name!r}; shipped models: {have}")
    return path


def card(name: str = DEFAULT) -> dict:
    """The machine-readable model card (card.json) of shipped model `name`."""
    return json.loads((weights_path(name).parent / CARD_FILE).read_text())
