"""Robust image loading shared by every stage and the CLI.

Every image becomes 8-bit RGB (H, W, 3) uint8, or the loader raises :class:`ImageLoadError`
with a reason a user can act on. Callers that process many files catch it, count the file as
skipped with its reason, and carry on: one bad file never stops a batch.

Conversions: EXIF orientation is applied; L/LA/P/CMYK/I;16/I/F modes become RGB; an alpha
channel is composited on **white** (web images with transparency are usually shown on white
pages), so a fully transparent pixel becomes white whatever its stored colour; 16-bit images
are scaled to 8 bits (value * 255 / 65535, rounded). Embedded ICC profiles are not applied
(pixels are taken as sRGB).

Rejected, with a reason: missing, empty, non-image and truncated or corrupt files, images over
``MAX_PIXELS`` (checked from the header, before decoding: decompression bombs) and anything the
decoders fail on.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cajnn.atomic import write_atomic

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
# Pillow's own bomb limit is ~89 MP (warning) / 179 MP (error); an 2K-photo pipeline has no
# business with anything near that, so refuse above this many pixels.
MAX_PIXELS = 64_000_000

_T = TypeVar("_T")


class ImageLoadError(Exception):
    """An input could not be turned into an RGB image; `reason` says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit modes always span 0..65535 (a dark image stays dark); for 32-bit int/float
        # images, whose range Pillow does not define, guess it from the data.
        if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
            peak = 65535.0
        else:
            peak = 255.0
        arr = np.clip(np.rint(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(
    path: str | os.PathLike, use: Callable[[Image.Image], _T], max_pixels: int = MAX_PIXELS, data: bytes | None = None
) -> _T:
    """Decode `path` (first frame) and return ``use(image)``; any failure, in the decoder or in
    `use`, becomes :class:`ImageLoadError` with a reason (the checks of :func:`load_rgb`).
    With `data`, those are the file's bytes (read elsewhere, e.g. on another node) and `path`
    only names it in messages."""
    path = Path(path)
    if data is None:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageLoadError(path, f"cannot read file ({exc.strerror})") from None
    else:
        size = len(data)
    if size == 0:
        raise ImageLoadError(path, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path if data is None else io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageLoadError(path, f"{w}x{h} is over the {max_pixels:,}-pixel limit (decompression bomb?)")
                img.load()
                return use(img)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image file (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(path, f"decompression bomb refused ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(path, f"corrupt or truncated image ({exc})") from None
    except MemoryError:
        raise ImageLoadError(path, "not enough memory to decode the image") from None
    except Exception as exc:  # a decoder bug on a malformed file must not stop a batch either
        raise ImageLoadError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None


def load_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, data: bytes | None = None) -> np.ndarray:
    """Read `path` (or its bytes `data`) as an (H, W, 3) uint8 RGB array, EXIF orientation applied."""
    rgb = open_image(path, lambda img: _to_rgb(ImageOps.exif_transpose(img)), max_pixels, data)
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ImageLoadError(path, f"unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder` (recursive, sorted, by suffix), for deterministic order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def save_rgb(arr: np.ndarray, path: str | os.PathLike, **save_kwargs) -> None:
    """Write an RGB uint8 array atomically, with ordinary permissions (:func:`cajnn.atomic.write_atomic`)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format for suffix {path.suffix!r}")
    write_atomic(path, lambda fh: Image.fromarray(arr).save(fh, format=fmt, **save_kwargs))


def count_unread(path: Path, suffixes: frozenset[str], counts: dict[str, int]) -> bool:
    """Count `path` in `counts` when a folder scan does not read it (hidden, or its suffix is not
    in `suffixes`): by suffix, "(no suffix)" or "hidden". True when it is counted."""
    if path.name.startswith("."):
        counts["hidden"] = counts.get("hidden", 0) + 1
        return True
    if path.suffix.lower() not in suffixes:
        key = path.suffix.lower() or "(no suffix)"
        counts[key] = counts.get(key, 0) + 1
        return True
    return False


def unread_report(counts: dict[str, int]) -> list[str]:
    """One line for the files that are not images, one for the hidden ones: nothing is left out
    of a folder without saying so."""
    lines = []
    other = {k: v for k, v in counts.items() if k != "hidden"}
    if other:
        parts = ", ".join(f"{k} ({v})" for k, v in sorted(other.items(), key=lambda kv: (-kv[1], kv[0])))
        n = sum(other.values())
        what = "files that are not images" if n != 1 else "file that is not an image"
        lines.append(f"skipped {n} {what}: {parts}")
    if counts.get("hidden"):
        n = counts["hidden"]
        lines.append(f"skipped {n} hidden file{'s' * (n != 1)} (name starting with '.')")
    return lines
