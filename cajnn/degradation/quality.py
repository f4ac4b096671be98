"""The JPEG quality factor behind a file's quantization tables (docs/web-platform-data.md).

A JPEG does not store its quality factor, only its quantization tables. Encoders built on the
IJG library (libjpeg, libjpeg-turbo, Pillow, ImageMagick, most web back-ends) make them from the
example tables of the JPEG standard (ITU-T T.81, Annex K.1) scaled for the quality Q:
``scale = 5000 / Q`` below 50, ``200 - 2 Q`` from 50, each entry ``(base * scale + 50) / 100``
(integer arithmetic) clamped to 1..255. Inverting that is exact for such files; other encoders
(camera firmware, some CDNs, mozjpeg's other tables) are reported as not IJG, with the IJG
quality whose tables are nearest.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

# ITU-T T.81 Annex K.1, natural (row-major) order.
STANDARD_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=np.int64,
)
STANDARD_CHROMA = np.array(
    [
        17,
        18,
        24,
        47,
        99,
        99,
        99,
        99,
        18,
        21,
        26,
        66,
        99,
        99,
        99,
        99,
        24,
        26,
        56,
        99,
        99,
        99,
        99,
        99,
        47,
        66,
        99,
        99,
        99,
        99,
        99,
        99,
        *([99] * 32),
    ],
    dtype=np.int64,
)


def ijg_scale(quality: int) -> int:
    """IJG `jpeg_quality_scaling`: the percentage applied to the standard tables."""
    q = min(max(int(quality), 1), 100)
    return 5000 // q if q < 50 else 200 - 2 * q


@cache
def _ijg_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    scale = ijg_scale(quality)
    return tuple(np.clip((base * scale + 50) // 100, 1, 255) for base in (STANDARD_LUMA, STANDARD_CHROMA))


def ijg_table(quality: int, chroma: bool = False) -> np.ndarray:
    """The 64 entries (natural order) an IJG encoder writes at `quality` (baseline, 1..255)."""
    return _ijg_tables(quality)[1 if chroma else 0].copy()


@dataclass(frozen=True)
class QualityEstimate:
    """What a file's tables say about its quality factor: `quality`, the IJG quality whose
    tables match (`ijg`) or are nearest; `residual`, the mean absolute relative difference of
    the file's entries from that quality's tables (0 for IJG files)."""

    quality: int
    ijg: bool
    residual: float


def estimate_quality(luma: np.ndarray | list[int], chroma: np.ndarray | list[int] | None = None) -> QualityEstimate:
    """The IJG quality factor of a file from its luma (and, when it has colour, chroma) table.

    Exact when the tables are IJG scalings (each quality 1..100 has its own luma table, so
    there is never a tie); otherwise the quality minimising the mean absolute log ratio of the
    entries (scale-free: a table 20 % coarser everywhere is 20 % off at every entry), with
    `ijg=False`.
    """
    tables = [np.asarray(luma, dtype=np.int64).reshape(64)]
    if chroma is not None:
        tables.append(np.asarray(chroma, dtype=np.int64).reshape(64))
    if any(t.min() < 1 for t in tables):
        raise ValueError("quantization table entries must be >= 1")
    for q in range(1, 101):
        if all(np.array_equal(t, _ijg_tables(q)[i]) for i, t in enumerate(tables)):
            return QualityEstimate(q, True, 0.0)
    logs = [np.log(t) for t in tables]
    distance = {
        q: float(np.mean([np.abs(lt - np.log(_ijg_tables(q)[i])).mean() for i, lt in enumerate(logs)]))
        for q in range(1, 101)
    }
    best = min(distance, key=distance.get)
    ref = _ijg_tables(best)
    residual = float(np.mean([np.abs(t - ref[i]).sum() / ref[i].sum() for i, t in enumerate(tables)]))
    return QualityEstimate(best, False, residual)
