"""JPEG compression through libjpeg-turbo (docs/design.md "Data and degradation", paper IV-A).

The degradation compresses the whole x1/4 image with a quality factor (paper: 10..100,
test: 10/20/40), 4:2:0 chroma subsampling and the accurate integer ("islow") DCT, through
libjpeg-turbo via PyTurboJPEG 1.8.x (which works with Debian 12's libjpeg-turbo 2.1.5; see docs/design.md
"Stack facts the code depends on"). The accurate-DCT flag is used for both encoding and decoding;
decoding uses libjpeg-turbo's default ("fancy") chroma upsampling.

Subsampling values: ``"444"``, ``"422"``, ``"420"`` and ``"gray"`` (luma only; an RGB input is
converted to Y by libjpeg-turbo and decoded back to R = G = B).
"""

from __future__ import annotations

import threading
from numbers import Integral
from typing import Any

import numpy as np

__all__ = ["jpeg_encode", "jpeg_compress", "SUBSAMPLINGS"]

SUBSAMPLINGS = ("420", "422", "444", "gray")

_INSTALL_HINT = (
    "libjpeg-turbo could not be loaded by PyTurboJPEG. Install the system library with "
    "`apt-get install -y libturbojpeg0` (Debian/Ubuntu) and PyTurboJPEG 1.8.x with "
    "`pip install 'PyTurboJPEG>=1.8,<2'`."
)

_handle: Any | None = None
_handle_lock = threading.Lock()


def _tj_module():
    try:
        import turbojpeg
    except ImportError as exc:  # pragma: no cover - dependency is pinned in the project
        raise RuntimeError(_INSTALL_HINT) from exc
    return turbojpeg


def _get_handle():
    """The process-wide ``TurboJPEG`` object, created on first use.

    PyTurboJPEG creates a fresh libjpeg-turbo handle per call, so sharing this object between
    threads is safe.
    """
    global _handle
    if _handle is None:
        with _handle_lock:
            if _handle is None:
                tj = _tj_module()
                try:
                    _handle = tj.TurboJPEG()
                except (OSError, RuntimeError) as exc:
                    raise RuntimeError(f"{_INSTALL_HINT} (original error: {exc})") from exc
    return _handle


def _check_quality(quality: Any) -> int:
    if isinstance(quality, bool) or not isinstance(quality, Integral) or not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    return int(quality)


def _check_subsampling(subsampling: Any) -> str:
    if subsampling not in SUBSAMPLINGS:
        raise ValueError(f"subsampling must be one of {SUBSAMPLINGS}, got {subsampling!r}")
    return subsampling


def _check_image(img: Any) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {arr.dtype}")
    is_gray = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1)
    if not (is_gray or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"image must be H x W x 3 RGB or H x W (x 1) grayscale, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image must be non-empty, got shape {arr.shape}")
    # libjpeg-turbo reads rows with a fixed pixel pitch: make a C-contiguous copy if needed.
    return np.ascontiguousarray(arr)


def _is_gray_input(arr: np.ndarray) -> bool:
    return arr.ndim == 2 or arr.shape[2] == 1


def jpeg_encode(img: np.ndarray, quality: int, subsampling: str = "420") -> bytes:
    """Encode a uint8 image to JPEG bytes with libjpeg-turbo, accurate DCT (docs/design.md, paper IV-A).

    Args:
        img: H x W x 3 RGB uint8, or H x W / H x W x 1 grayscale uint8. Non-contiguous arrays are
            copied to C order.
        quality: JPEG quality factor, integer in 1..100.
        subsampling: "420" (default, the paper's setting), "422", "444" or "gray". A grayscale
            input always gives a single-component (grayscale) JPEG; chroma subsampling does not
            apply to it, so the value is only validated.

    Raises:
        ValueError: bad quality, subsampling, dtype or shape.
        RuntimeError: libjpeg-turbo cannot be loaded (install ``libturbojpeg0``).
    """
    q = _check_quality(quality)
    sub = _check_subsampling(subsampling)
    arr = _check_image(img)
    tj = _tj_module()
    handle = _get_handle()
    samp = {"420": tj.TJSAMP_420, "422": tj.TJSAMP_422, "444": tj.TJSAMP_444, "gray": tj.TJSAMP_GRAY}
    if _is_gray_input(arr):
        src = arr.reshape(arr.shape[0], arr.shape[1], 1)
        pixel_format, jpeg_samp = tj.TJPF_GRAY, tj.TJSAMP_GRAY
    else:
        src = arr
        pixel_format, jpeg_samp = tj.TJPF_RGB, samp[sub]
    data = handle.encode(
        src, quality=q, pixel_format=pixel_format, jpeg_subsample=jpeg_samp, flags=tj.TJFLAG_ACCURATEDCT
    )
    return bytes(data)


def jpeg_decode(data: bytes, gray: bool = False) -> np.ndarray:
    """Decode JPEG bytes with libjpeg-turbo (accurate DCT) to H x W x 3 RGB (or H x W if ``gray``)."""
    tj = _tj_module()
    handle = _get_handle()
    if gray:
        out = handle.decode(data, pixel_format=tj.TJPF_GRAY, flags=tj.TJFLAG_ACCURATEDCT)
        return out[:, :, 0]
    return handle.decode(data, pixel_format=tj.TJPF_RGB, flags=tj.TJFLAG_ACCURATEDCT)


def jpeg_compress(img: np.ndarray, quality: int, subsampling: str = "420") -> np.ndarray:
    """JPEG encode + decode round trip (the compression step of the degradation, docs/design.md / IV-A).

    Same arguments as :func:`jpeg_encode`. Returns a uint8 array of the input's shape: RGB in ->
    RGB out (R = G = B for ``subsampling="gray"``), H x W (x 1) grayscale in -> same shape out.
    """
    arr = _check_image(img)
    data = jpeg_encode(arr, quality, subsampling)
    if _is_gray_input(arr):
        return jpeg_decode(data, gray=True).reshape(arr.shape)
    return jpeg_decode(data, gray=False)
