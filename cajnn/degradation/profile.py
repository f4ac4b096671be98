"""Degradation profiles (paper IV-A): HR -> shrink (MATLAB bicubic) -> JPEG at a drawn QF.

A profile describes how a web platform treats an upload; the `paper` profile is the paper's
training degradation: x1/4 MATLAB bicubic, QF uniform in 10..100, 4:2:0 chroma subsampling.
"""

from __future__ import annotations

import numpy as np

from cajnn.config import ProfileConfig
from cajnn.degradation.imresize import matlab_imresize, modcrop
from cajnn.degradation.jpeg import jpeg_compress


def draw_qualities(profile: ProfileConfig, k: int, rng: np.random.Generator) -> list[int]:
    """`k` quality factors drawn uniformly from the profile's inclusive QF range."""
    return [int(q) for q in rng.integers(profile.qf_min, profile.qf_max + 1, size=k)]


def shrink(hr: np.ndarray, profile: ProfileConfig) -> np.ndarray:
    """HR (modcropped to the scale) -> clean LR with the profile's resize kernel."""
    return matlab_imresize(modcrop(hr, profile.scale), 1.0 / profile.scale)


def degrade(hr: np.ndarray, profile: ProfileConfig, quality: int) -> np.ndarray:
    """HR uint8 RGB -> JPEG-compressed LR uint8 RGB: the whole image is compressed at once,
    as a web platform does, so the 8x8 block grid is anchored at the image origin."""
    return jpeg_compress(shrink(hr, profile), quality, subsampling=profile.subsampling)
