"""Test helpers: images as a web platform serves them."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def served_jpeg(img: np.ndarray, side: int, q: int) -> bytes:
    """`img` shrunk (Pillow Lanczos) to at most `side` on its longest side, JPEG at quality q."""
    im = Image.fromarray(img)
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return buf.getvalue()


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()
