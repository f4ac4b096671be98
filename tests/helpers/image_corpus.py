"""A corpus of good, awkward and broken image files, built on the fly (no downloads), shared by
the stage and CLI robustness tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients + texture + noise: compresses like a photo, not like white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / w, y * 255.0 / h, 128 + 90 * np.sin(x / (5.0 + seed)) * np.cos(y / 7.0)], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (8-bit RGB) with a tiny bogus IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


# name -> substring expected in the skip reason (for the broken files)
BROKEN = {
    "empty.png": "empty file",
    "text.png": "not an image",
    "random.jpg": "not an image",
    "truncated.png": "corrupt or truncated",
    "truncated.jpg": "corrupt or truncated",
    "bomb.png": "bomb",
    "over_limit.png": "pixel limit",
}


def build_corpus(folder: Path, h: int = 112, w: int = 144) -> dict[str, list[str]]:
    """Write the corpus into `folder`; returns {"good": [...], "broken": [...]} file names.

    Good-but-awkward files: 8-bit RGB PNG, grayscale, LA, palette with transparency, RGBA,
    CMYK JPEG, 16-bit PNG, EXIF-rotated JPEG, TIFF, BMP, a JPEG named .png. Broken: see BROKEN.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rgb = photo_like(h, w)
    good: dict[str, bytes] = {
        "rgb.png": _encoded(Image.fromarray(rgb), "PNG"),
        "gray.png": _encoded(Image.fromarray(rgb[..., 1]), "PNG"),
        "la.png": _encoded(Image.fromarray(np.dstack([rgb[..., 0], np.full((h, w), 200, np.uint8)]), "LA"), "PNG"),
        "rgba.png": _encoded(
            Image.fromarray(np.dstack([rgb, np.linspace(0, 255, w, dtype=np.uint8)[None].repeat(h, 0)]), "RGBA"), "PNG"
        ),
        "cmyk.jpg": _encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95),
        "deep16.png": _encoded(Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), "PNG"),
        "tiff.tif": _encoded(Image.fromarray(photo_like(h, w, 1)), "TIFF"),
        "bitmap.bmp": _encoded(Image.fromarray(photo_like(h, w, 2)), "BMP"),
        "jpeg_named.png": _encoded(Image.fromarray(photo_like(h, w, 3)), "JPEG", quality=90),
    }
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    good["palette.png"] = _encoded(pal, "PNG", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display: stored w x h shows as h x w
    good["rotated.jpg"] = _encoded(Image.fromarray(photo_like(w, h, 4)), "JPEG", quality=92, exif=exif.tobytes())

    png = good["rgb.png"]
    jpg = _encoded(Image.fromarray(rgb), "JPEG", quality=90)
    broken: dict[str, bytes] = {
        "empty.png": b"",
        "text.png": b"this is not an image\n",
        "random.jpg": np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 2],
        "bomb.png": png_header_only(30000, 30000),
        "over_limit.png": png_header_only(9000, 9000),
    }
    assert set(broken) == set(BROKEN)
    for name, data in {**good, **broken}.items():
        (folder / name).write_bytes(data)
    return {"good": sorted(good), "broken": sorted(broken)}
