"""cajnn: joint JPEG compression-artifact reduction and 4x super-resolution (CAJNN, ICPR 2020).

The main names are importable from the package (`cajnn.CAJNN`, `cajnn.enhance`, ...); they are
loaded on first use so that `import cajnn.config` stays light (no torch import).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CAJNN": "cajnn.archs",
    "build_model": "cajnn.archs",
    "PRESETS": "cajnn.archs",
    "enhance": "cajnn.inference",
    "matlab_imresize": "cajnn.degradation",
    "jpeg_compress": "cajnn.degradation",
    "jpeg_encode": "cajnn.degradation",
    "modcrop": "cajnn.degradation",
    "psnr_y": "cajnn.metrics",
    "ssim_y": "cajnn.metrics",
    "save_weights": "cajnn.weights",
    "load_weights": "cajnn.weights",
    "load_rgb": "cajnn.data.image_io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cajnn' has no attribute {name!r}")
