"""The embedded default data set: the colour photographs that scikit-image ships.

They need no download, so `make run` works offline on a laptop (docs/design.md, "Where data comes from").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _stereo(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return data.stereo_motorcycle()[index]

    return load


def _plain(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


SAMPLE_IMAGES: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _plain("astronaut"),
    "chelsea": _plain("chelsea"),
    "coffee": _plain("coffee"),
    "rocket": _plain("rocket"),
    "motorcycle_left": _stereo(0),
    "motorcycle_right": _stereo(1),
    "hubble_deep_field": _plain("hubble_deep_field"),
    "immunohistochemistry": _plain("immunohistochemistry"),
    "retina": _plain("retina"),
}


def load_sample(name: str) -> np.ndarray:
    """One embedded photograph as (H, W, 3) uint8 RGB."""
    try:
        loader = SAMPLE_IMAGES[name]
    except KeyError:
        raise KeyError(f"unknown sample image {name!r}; known: {', '.join(SAMPLE_IMAGES)}") from None
    return np.ascontiguousarray(loader()[..., :3].astype(np.uint8))
