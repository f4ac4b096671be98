"""Signs that a JPEG was compressed twice on the same 8x8 grid (docs/web-platform-data.md).

How: the luma plane as decoded (before colour conversion) is cut into the file's 8x8 blocks and
transformed with the JPEG DCT; divided by the file's luma table, each coefficient sits close to
the integer the last encoder stored. For a singly compressed photo, the histogram of those
integers at a low frequency falls off like a mixture of Laplacians, which is log-convex: no bin
holds clearly more than the geometric mean of its two neighbours. A first compression with
another step on the same grid leaves periodic empty or doubled bins in it (Lukas and Fridrich,
"Estimation of primary quantization matrix in double compressed JPEG images", 2003), so some
bin stands out above its neighbours' geometric mean by more than Poisson noise allows.
`double_compression` counts such peaks over the 9 lowest AC frequencies.

What it cannot see: a second compression at the same quality (nearly idempotent), a first
compression whose grid was moved by cropping or destroyed by resizing (a platform that shrinks
before it compresses leaves no trace of the upload's JPEG), images under 256 blocks, and tables
whose low-frequency steps are 1 (quality above ~95). Those are reported as `unknown`, never as
single. Error rates measured on photographs: the note in docs/web-platform-data.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The 9 lowest AC frequencies in zig-zag order (row, column).
LOW_FREQUENCIES = ((0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0))
MIN_BLOCKS = 256
PEAK_Z = 5.0  # a bin this many Poisson standard deviations above its neighbours' geometric mean
MIN_PEAK_FREQUENCIES = 2  # frequencies with a peak needed to call a file double-compressed
MIN_LOCAL_COUNT = 20  # mean count of a bin and its neighbours below which a bin is not judged


def _dct_matrix() -> np.ndarray:
    n = np.arange(8)
    m = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return m


DCT8 = _dct_matrix()  # orthonormal 8-point DCT-II: the JPEG FDCT of T.81 A.3.3 in 2-D


def block_dct(y: np.ndarray) -> np.ndarray:
    """(n_blocks, 8, 8) DCT coefficients of the whole 8x8 blocks of a luma plane (level-shifted
    by 128, as JPEG does), blocks on the grid starting at the top-left corner."""
    h, w = (y.shape[0] // 8) * 8, (y.shape[1] // 8) * 8
    blocks = y[:h, :w].astype(np.float64).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    return np.einsum("ij,njk,lk->nil", DCT8, blocks - 128.0, DCT8)


@dataclass(frozen=True)
class DoubleEstimate:
    """`verdict`: single | double | unknown; `peak_frequencies`: low frequencies whose
    histogram has a peak; `usable_frequencies`: those that could be read; `reason` when unknown."""

    verdict: str
    peak_frequencies: int
    usable_frequencies: int
    reason: str = ""


def _peak_z(hist: np.ndarray) -> float:
    """Largest excess of a bin over its neighbours' geometric mean, in Poisson standard
    deviations, over the bins whose neighbourhood holds at least MIN_LOCAL_COUNT per bin (the
    sparse tail says nothing; empty bins inside the populated range are the evidence)."""
    best = 0.0
    for k in range(1, len(hist) - 1):
        if hist[k - 1 : k + 2].mean() < MIN_LOCAL_COUNT:
            continue
        expected = np.sqrt((hist[k - 1] + 1.0) * (hist[k + 1] + 1.0))
        best = max(best, (hist[k] - expected) / np.sqrt(expected))
    return float(best)


def double_compression(y: np.ndarray, luma_table: np.ndarray | list[int]) -> DoubleEstimate:
    """Whether the decoded luma plane `y` (uint8, as the decoder produced it) shows a second
    compression on its grid, given the file's luma quantization table (natural order)."""
    table = np.asarray(luma_table, dtype=np.float64).reshape(8, 8)
    coef = block_dct(y)
    if len(coef) < MIN_BLOCKS:
        return DoubleEstimate("unknown", 0, 0, f"{len(coef)} blocks (fewer than {MIN_BLOCKS})")
    peaks = usable = 0
    for u, v in LOW_FREQUENCIES:
        step = table[u, v]
        if step < 2:
            continue  # every integer is a stored value: nothing to see
        k = np.abs(np.rint(coef[:, u, v] / step)).astype(np.int64)
        hist = np.bincount(k)[1:].astype(np.float64)  # bin 0 (the dead zone) is left out
        if np.count_nonzero(hist >= MIN_LOCAL_COUNT) < 2 or len(hist) < 4:
            continue
        usable += 1
        if _peak_z(hist) > PEAK_Z:
            peaks += 1
    if usable < 3:
        return DoubleEstimate(
            "unknown", peaks, usable, "too few readable frequencies (quality too high or image too flat)"
        )
    return DoubleEstimate("double" if peaks >= MIN_PEAK_FREQUENCIES else "single", peaks, usable)
