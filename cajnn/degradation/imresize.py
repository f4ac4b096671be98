"""MATLAB-compatible bicubic resizing (SPEC "Data and degradation", paper IV-A).

The paper (and the SR test protocol in SPEC "Test protocol") builds LR images with MATLAB's
``imresize(img, 1/4, 'bicubic')``. This module reimplements that algorithm in NumPy:

* cubic convolution kernel with a = -0.5 (Keys), support width 4;
* antialiasing when shrinking: the kernel is stretched by ``1/scale`` (support ``4/scale``)
  and its values are multiplied by ``scale``;
* each output sample ``x`` (1-based) is centred at ``u = x/scale + 0.5*(1 - 1/scale)`` in input
  coordinates; it reads the ``ceil(width) + 2`` input samples starting at
  ``floor(u - width/2)``; the weights of one output sample are normalised to sum to 1;
* out-of-range input indices are mirrored with MATLAB's symmetric rule (``aux = [1:n, n:-1:1]``,
  i.e. the border sample is repeated: ..., 2, 1 | 1, 2, ..., n | n, n-1, ...);
* output size per axis is ``ceil(scale * in_size)`` (MATLAB's rule when a scale is given);
* the resize is separable. MATLAB resizes the dimensions in the order returned by
  ``[~, order] = sort(scale)``, i.e. by increasing scale factor (largest shrink first); ``sort``
  is stable, so with equal factors the rows (height, dim 1) are resized before the columns.
  We do the same.
* the intermediate and final result of each 1-D pass has the class of the input, exactly as
  MATLAB's ``imresizemex`` returns it: for uint8 input, each pass is computed in float64 and then
  rounded half away from zero and saturated to 0..255, so the intermediate image (after the
  first axis) is uint8 too. Float input stays floating point (no clipping).

Known deviations from MATLAB
----------------------------
* Summation order of the weighted sums differs (duplicate mirrored indices are merged before
  multiplying), which changes float results by a few ulp (~1e-13 relative). For uint8 output
  this can only matter when a value lies within ~1e-12 of a .5 rounding boundary.
* Only the ``'bicubic'`` method with a scale factor (scalar or per-axis pair) is provided; no
  ``[rows cols]`` output-size form, no other kernels, no ND (>3 dims) arrays.
* Other integer classes (uint16, int16, ...) are rejected rather than saturated to their range.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp

__all__ = ["matlab_imresize", "modcrop", "cubic"]

ScaleT = Union[float, Sequence[float]]

_KERNEL_WIDTH = 4.0


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5, as in MATLAB's ``imresize`` (support [-2, 2])."""
    absx = np.abs(np.asarray(x, dtype=np.float64))
    absx2 = absx * absx
    absx3 = absx2 * absx
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1.0)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1.0) & (absx <= 2.0))
    return inner + outer


def _contributions(
    in_length: int, out_length: int, scale: float, antialiasing: bool
) -> Tuple[np.ndarray, np.ndarray]:
    """Weights (out_length x P) and 0-based input indices (out_length x P) for one axis.

    Mirrors MATLAB's ``contributions`` sub-function of ``imresize``.
    """
    if scale < 1.0 and antialiasing:
        kernel_width = _KERNEL_WIDTH / scale

        def h(t: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * t)

    else:
        kernel_width = _KERNEL_WIDTH
        h = cubic

    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    p = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p, dtype=np.float64)[None, :]  # 1-based, may be out of range
    weights = h(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)

    # MATLAB: aux = [1:in_length, in_length:-1:1]; indices = aux(mod(indices-1, 2*in_length)+1)
    j = np.mod(indices.astype(np.int64) - 1, 2 * in_length)  # 0-based position in aux
    idx0 = np.where(j < in_length, j, 2 * in_length - 1 - j)
    return weights, idx0


def _resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool) -> sp.csr_matrix:
    """Sparse (out_length x in_length) matrix applying one axis of the resize."""
    weights, idx0 = _contributions(in_length, out_length, scale, antialiasing)
    rows = np.repeat(np.arange(out_length), weights.shape[1])
    keep = weights.ravel() != 0.0  # MATLAB also drops all-zero weight columns
    mat = sp.coo_matrix(
        (weights.ravel()[keep], (rows[keep], idx0.ravel()[keep])), shape=(out_length, in_length)
    )
    return mat.tocsr()  # duplicate (mirrored) indices are summed here


def _to_input_class(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast a float64 pass result back to the input class the way MATLAB does."""
    if dtype == np.uint8:
        # round half away from zero + saturate; after clipping everything is >= 0
        return np.floor(np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)
    return x.astype(dtype, copy=False)


def _resize_along(x: np.ndarray, axis: int, mat: sp.csr_matrix) -> np.ndarray:
    """Apply ``mat`` along ``axis`` of a float64 array (H x W x C)."""
    moved = np.moveaxis(x, axis, 0)
    shape = moved.shape
    flat = np.ascontiguousarray(moved).reshape(shape[0], -1)
    out = np.asarray(mat @ flat)
    out = out.reshape((mat.shape[0],) + shape[1:])
    return np.moveaxis(out, 0, axis)


def _parse_scale(scale: ScaleT) -> Tuple[float, float]:
    if isinstance(scale, Real) and not isinstance(scale, bool):
        pair = (float(scale), float(scale))
    else:
        try:
            vals = [float(s) for s in scale]  # type: ignore[union-attr]
        except TypeError:
            raise ValueError(f"scale must be a positive number or a (h, w) pair, got {scale!r}") from None
        if len(vals) != 2:
            raise ValueError(f"scale pair must have 2 entries (h, w), got {len(vals)}")
        pair = (vals[0], vals[1])
    for s in pair:
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    return pair


def matlab_imresize(img: np.ndarray, scale: ScaleT, antialiasing: bool = True) -> np.ndarray:
    """Resize like MATLAB ``imresize(img, scale, 'bicubic')`` (SPEC data/test protocol, paper IV-A).

    Args:
        img: H x W or H x W x C array, uint8 or floating point.
        scale: resize factor (e.g. 0.25 for the x1/4 degradation), or an ``(scale_h, scale_w)``
            pair. Output size is ``ceil(scale * size)`` per axis, e.g. 37 x 53 by 1/4 -> 10 x 14.
        antialiasing: stretch the kernel when shrinking (MATLAB's default, True).

    Returns:
        The resized array. uint8 in -> uint8 out (each 1-D pass computed in float64, rounded half
        away from zero and clipped to 0..255, as MATLAB's ``imresizemex``); float in -> same
        float dtype out, not clipped. See the module docstring for the exact algorithm and the
        known deviations.
    """
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"img must be H x W or H x W x C, got shape {arr.shape}")
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"img must be uint8 or floating point, got dtype {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"img must be non-empty, got shape {arr.shape}")
    scales = _parse_scale(scale)
    in_shape = arr.shape[:2]
    out_shape = tuple(int(math.ceil(s * n)) for s, n in zip(scales, in_shape))

    squeeze = arr.ndim == 2
    out = arr[:, :, None] if squeeze else arr
    # MATLAB: [~, order] = sort(scale) -- stable, increasing scale factor first.
    order = sorted(range(2), key=lambda d: scales[d])
    for dim in order:
        mat = _resize_matrix(in_shape[dim], out_shape[dim], scales[dim], antialiasing)
        res = _resize_along(out.astype(np.float64, copy=False), dim, mat)
        out = _to_input_class(res, arr.dtype)
    if squeeze:
        out = out[:, :, 0]
    return np.ascontiguousarray(out)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of ``scale``, dropping rows/columns at the bottom/right.

    This is the "modcrop" of the SR test protocol (SPEC "Test protocol"). Returns a view.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"img must be H x W or H x W x C, got shape {arr.shape}")
    h, w = arr.shape[:2]
    return arr[: h - h % scale, : w - w % scale, ...]
