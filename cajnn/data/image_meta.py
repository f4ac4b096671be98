"""What `cajnn enhance` keeps of an image: transparency, grayscale, 16-bit depth, ICC profile, EXIF.

The network sees 8-bit RGB only; everything else is handled around it.

* **Alpha** (RGBA, LA, palette or RGB/L images with a transparent colour): the colour goes through
  the network as stored (also under fully transparent pixels, as other upscalers do), the alpha
  plane is upscaled on its own with MATLAB-style bicubic (:func:`cajnn.degradation.matlab_imresize`,
  the kernel and pixel-centre convention the network's training pairs were made with, so the
  alpha edge lands where the network puts the colour edge; Pillow's bicubic clips its kernel at the
  borders instead), and the two are joined again.
* **Grayscale** (1, L, LA, I;16, I) stays grayscale: the gray plane goes through the network as
  R = G = B and the output is the **mean** of the three output channels, not the luma. The input
  is neutral, so any difference between the channels is the network's error; an equally weighted
  mean averages it down most (luma weights 0.30/0.59/0.11 keep more of the green channel's).
* **16-bit** (I;16 gray; 16-bit RGB, RGBA and gray+alpha PNG and RGB(A) TIFF, which Pillow decodes
  to 8 bits, so these are read with OpenCV): the network sees the image rounded to 8 bits ``q``,
  and the output is ``257 * network output + bicubic(x16 - 257 * q)``: the network's result plus
  the part below 8 bits that the rounding dropped (at most half an 8-bit step, upscaled
  bicubically). This is the bicubic upscale of the 16-bit image plus the network's detail
  (its output minus the bicubic upscale of its 8-bit input, x257), as both are linear, and it
  is within about one 8-bit step of the 8-bit result. 16-bit output is written as 16-bit PNG.
* **Palette** images and GIFs (first frame; other frames of any animation are reported, not
  enhanced) become RGB or RGBA: upscaling makes new colours, so there is no palette to keep.
* **CMYK** becomes RGB, through its ICC profile into sRGB when it has one (the note says which).
* **ICC profile**: carried over to the output as bytes when it fits the output's colour space
  (an RGB profile on RGB output, a gray one on gray output); otherwise dropped, with a note.
* **EXIF**: the orientation is applied to the pixels once, and the output gets the input's EXIF
  (JPEG, PNG and WebP inputs) without the orientation tag; other tags are copied as they are
  (camera, date, GPS...; size tags are not updated). XMP and other metadata are not carried.

Output formats: PNG keeps everything; JPEG has no alpha (composited on white, with a warning) and
no 16-bit samples (written at 8 bits); WebP has no 16-bit samples and no grayscale (written RGB).
Every such loss is returned as a note for the caller to say.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cajnn.atomic import write_atomic, write_bytes_atomic
from cajnn.data.image_io import IMAGE_SUFFIXES, MAX_PIXELS, open_image
from cajnn.degradation.imresize import matlab_imresize

#: Suffixes `cajnn enhance` reads from folders: the pipeline's set plus other formats Pillow reads.
READABLE_SUFFIXES = IMAGE_SUFFIXES | {".gif", ".pbm", ".pnm"}
#: ``--format auto``: these suffixes keep their format; anything else becomes PNG.
KEEP_FORMAT_SUFFIXES = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpeg", ".webp": ".webp"}
ORIENTATION = 0x0112
# Pillow's EXIF orientation -> the same transform on an (H, W, ...) array (for the OpenCV read).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}

Note = tuple[str, str]  # (kind, text): callers say each kind once per run


@dataclass
class KeptImage:
    """An upright input split into what the network sees and what is carried around it."""

    colour: np.ndarray  # (H, W, 1) gray or (H, W, 3) RGB; uint8, or uint16 when 16-bit
    alpha: np.ndarray | None = None  # (H, W), uint8 or uint16
    icc: bytes | None = None
    exif: bytes | None = None  # without the orientation tag
    notes: list[Note] = field(default_factory=list)

    @property
    def gray(self) -> bool:
        return self.colour.shape[2] == 1

    def network_input(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB: 16-bit rounded to 8 bits, gray repeated in R, G and B."""
        c = to_8bit(self.colour)
        return np.ascontiguousarray(np.repeat(c, 3, axis=2) if self.gray else c)


def to_8bit(arr: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 as ``round(v * 255 / 65535)`` (as :func:`load_rgb` does); uint8 unchanged."""
    if arr.dtype == np.uint8:
        return arr
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)  # v / 257 never ends in .5


# --------------------------------------------------------------------------- reading


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS, data: bytes | None = None) -> KeptImage:
    """Decode `path` (first frame), upright, into a :class:`KeptImage`; raises ``ImageLoadError``.
    With `data`, those are the file's bytes (a served request) and `path` only names it."""
    return open_image(path, lambda img: _keep(img, Path(path), data), max_pixels, data)


def _keep(img: Image.Image, path: Path, data: bytes | None = None) -> KeptImage:
    notes: list[Note] = []
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        notes.append(("frames", f"{frames} frames (animation or pages): only the first is enhanced"))
    icc = img.info.get("icc_profile") or None
    try:  # a broken EXIF block must not cost the image
        orientation = img.getexif().get(ORIENTATION, 1)
        upright = ImageOps.exif_transpose(img)
    except Exception as exc:
        notes.append(("exif", f"unreadable EXIF ({type(exc).__name__}): orientation not applied"))
        orientation, upright = 1, img
    try:
        exif = _exif_without_orientation(img.info.get("exif"))
    except Exception as exc:
        notes.append(("exif-copy", f"EXIF could not be copied ({type(exc).__name__}): the output has none"))
        exif = None
    colour, alpha, icc = _planes(upright, icc, notes)
    ctype = _sixteen_bit_colour_type(img, path, data)
    if ctype is not None and colour.dtype == np.uint8:
        deep = _read_deep(path, orientation, ctype, data)
        if ctype == 4:  # gray + alpha: Pillow gives RGBA with R = G = B
            colour = colour[:, :, :1]
        deep_colour, deep_alpha = deep if deep is not None else (None, None)
        if (
            deep_colour is not None
            and _agrees(deep_colour, colour)
            and (alpha is None) == (deep_alpha is None)
            and (alpha is None or _agrees(deep_alpha, alpha))
        ):
            colour, alpha = deep_colour, deep_alpha
        else:
            notes.append(("depth-read", "16-bit colour could not be read at full depth: enhanced at 8 bits"))
    return KeptImage(np.ascontiguousarray(colour), alpha, _icc_for(icc, colour, notes), exif, notes)


def _exif_without_orientation(raw: bytes | None) -> bytes | None:
    # Only a separate EXIF block (JPEG, PNG, WebP) is carried: a TIFF's tags describe its own file.
    if not raw:
        return None
    exif = Image.Exif()
    exif.load(raw)
    if ORIENTATION in exif:
        del exif[ORIENTATION]
    return exif.tobytes() if len(exif) else None  # sub-IFDs (Exif, GPS) hang off IFD0's tags


def _planes(img: Image.Image, icc: bytes | None, notes: list[Note]):
    """(colour (H, W, 1|3), alpha or None, icc) of a decoded image, in its own depth."""
    if img.mode == "CMYK":
        img, icc = _cmyk_to_rgb(img, icc, notes)
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.has_transparency_data else "RGB")
    elif img.mode in ("L", "RGB") and "transparency" in img.info:  # a transparent colour key
        img = img.convert("LA" if img.mode == "L" else "RGBA")
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit modes span 0..65535; 32-bit int/float have no defined range (as load_rgb guesses)
        if mode.startswith("I;16") or arr.max(initial=0) > 255:
            return np.clip(np.rint(arr), 0, 65535).astype(np.uint16)[:, :, None], None, icc
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)[:, :, None], None, icc
    if mode == "L":
        return np.asarray(img)[:, :, None], None, icc
    if mode in ("LA", "La"):
        la = np.asarray(img.convert("LA"))
        return la[:, :, :1], np.ascontiguousarray(la[:, :, 1]), icc
    if mode in ("RGBA", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"))
        return rgba[:, :, :3], np.ascontiguousarray(rgba[:, :, 3]), icc
    return np.asarray(img.convert("RGB")), None, icc


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None, notes: list[Note]):
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            rgb = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            notes.append(("cmyk", "CMYK converted to sRGB through its ICC profile (the output is RGB)"))
            return rgb, None
        except Exception:  # no littlecms, or a profile it cannot use: fall through to the plain formula
            pass
    notes.append(("cmyk", "CMYK converted to RGB without colour management (the output is RGB, no ICC profile)"))
    return img.convert("RGB"), None


def _sixteen_bit_colour_type(img: Image.Image, path: Path, data: bytes | None = None) -> int | None:
    """PNG colour type (2 RGB, 4 gray+alpha, 6 RGBA) of a 16-bit image Pillow decoded to 8 bits."""
    if img.format == "PNG":
        try:
            if data is not None:
                head = data[:26]
            else:
                with open(path, "rb") as fh:
                    head = fh.read(26)
        except OSError:
            return None
        if head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6):
            return head[25]
    elif img.format == "TIFF" and img.mode in ("RGB", "RGBA"):
        bits = img.tag_v2.get(258)
        if isinstance(bits, tuple) and len(bits) >= 3 and all(b == 16 for b in bits):
            return 6 if img.mode == "RGBA" else 2
    return None


def _read_deep(path: Path, orientation: int, ctype: int, data: bytes | None = None):
    """(colour, alpha) at 16 bits through OpenCV, upright, or None when it cannot."""
    try:
        import cv2

        buf = np.frombuffer(data, dtype=np.uint8) if data is not None else np.fromfile(path, dtype=np.uint8)
        raw = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except Exception:
        return None
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 3:
        return None
    raw = _ORIENT.get(orientation, lambda a: a)(raw)
    if raw.shape[2] == 2:
        colour, alpha = raw[:, :, :1], raw[:, :, 1]
    elif raw.shape[2] in (3, 4):
        colour, alpha = raw[:, :, 2::-1], (raw[:, :, 3] if raw.shape[2] == 4 else None)  # BGR(A) -> RGB
        if ctype == 4:
            colour = colour[:, :, :1]
    else:
        return None
    return np.ascontiguousarray(colour), (None if alpha is None else np.ascontiguousarray(alpha))


def _agrees(deep: np.ndarray, eight: np.ndarray) -> bool:
    # Pillow keeps the high byte; a mismatch means OpenCV read something else (another frame...).
    return deep.shape == eight.shape and int(np.abs((deep >> 8).astype(np.int16) - eight).max(initial=0)) <= 1


def _icc_for(icc: bytes | None, colour: np.ndarray, notes: list[Note]) -> bytes | None:
    space = b"GRAY" if colour.shape[2] == 1 else b"RGB "
    if icc is not None and icc[16:20] != space:
        notes.append(("icc", f"ICC profile for {_space(icc)} dropped: it does not fit the {_space(space)} image"))
        return None
    return icc


def _space(icc_or_space: bytes) -> str:
    raw = icc_or_space[16:20] if len(icc_or_space) > 4 else icc_or_space
    return raw.decode("latin-1").strip() or "?"


# --------------------------------------------------------------------------- output


def output_size(height: int, width: int, outscale: float) -> tuple[int, int]:
    """``round(outscale * size)`` per axis (halves up), at least 1 pixel."""
    return tuple(max(1, math.floor(outscale * n + 0.5)) for n in (height, width))  # type: ignore[return-value]


def finish(kept: KeptImage, sr: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Join the network output `sr` ((h, w, 3) uint8 RGB) with what `kept` carries: an
    (h, w, C) array, C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; uint16 when the input was 16-bit.
    With `size` ((rows, cols)) the result is then resized once (MATLAB-style bicubic,
    antialiased when shrinking; colour and alpha alike, not premultiplied)."""
    hr = sr.shape[:2]
    if kept.colour.dtype == np.uint16:
        base = sr.astype(np.float64)
        if kept.gray:
            base = base.mean(axis=2, keepdims=True)
        dropped = kept.colour.astype(np.float64) - 257.0 * to_8bit(kept.colour)  # within +-128
        colour = np.clip(np.rint(257.0 * base + matlab_imresize(dropped, output_shape=hr)), 0, 65535).astype(np.uint16)
    elif kept.gray:
        colour = np.rint(sr.mean(axis=2, keepdims=True)).astype(np.uint8)
    else:
        colour = sr
    planes = [colour]
    if kept.alpha is not None:
        planes.append(_resize(kept.alpha, hr)[:, :, None])
    if any(p.dtype == np.uint16 for p in planes):
        planes = [p.astype(np.uint16) * 257 if p.dtype == np.uint8 else p for p in planes]
    out = planes[0] if len(planes) == 1 else np.concatenate(planes, axis=2)
    if size is not None and tuple(size) != tuple(hr):
        out = _resize(out, tuple(size))
    return np.ascontiguousarray(out)


def _resize(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if arr.dtype == np.uint8:
        return matlab_imresize(arr, output_shape=shape)
    out = matlab_imresize(arr.astype(np.float64), output_shape=shape)  # imresize has no uint16 path
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)


def write_image(
    arr: np.ndarray,
    path: str | Path,
    *,
    icc: bytes | None = None,
    exif: bytes | None = None,
    quality: int | None = None,
) -> list[Note]:
    """Write an (H, W, C) array from :func:`finish` atomically in the format of `path`'s suffix
    (PNG, JPEG or WebP), with `icc` and `exif`; returns what the format could not keep."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format for suffix {path.suffix!r}")
    notes: list[Note] = []
    if fmt != "PNG" and arr.dtype == np.uint16:
        arr = to_8bit(arr)
        notes.append((f"depth-{fmt}", f"{fmt} has no 16-bit samples: written at 8 bits (PNG keeps 16)"))
    if fmt == "JPEG" and arr.shape[2] in (2, 4):
        arr = _on_white(arr)
        notes.append(
            (
                "alpha-jpeg",
                "JPEG has no alpha channel: transparent parts composited on white "
                "(use --format png or webp to keep them)",
            )
        )
    if fmt == "WEBP" and arr.shape[2] in (1, 2):  # WebP has no grayscale: RGB(A) is what it would store
        arr = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    if icc is not None:
        space = b"GRAY" if arr.shape[2] in (1, 2) else b"RGB "
        if icc[16:20] != space:
            notes.append(("icc-out", f"ICC profile for {_space(icc)} dropped: {fmt} output is {_space(space)}"))
            icc = None
    if fmt == "JPEG" and exif is not None and len(exif) > 65_000:  # one JPEG segment holds 64 KiB
        notes.append(("exif-big", "EXIF over 64 KiB dropped: a JPEG segment cannot hold it"))
        exif = None
    if arr.dtype == np.uint16:
        data = png16_bytes(arr, icc=icc, exif=exif)
        write_bytes_atomic(path, data)
        return notes
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    kwargs: dict = {}
    if icc is not None:
        kwargs["icc_profile"] = icc
    if exif is not None:
        kwargs["exif"] = exif
    if quality is not None and fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    write_atomic(path, lambda fh: img.save(fh, format=fmt, **kwargs))
    return notes


def _on_white(arr: np.ndarray) -> np.ndarray:
    colour, alpha = arr[:, :, :-1].astype(np.float64), arr[:, :, -1:].astype(np.float64) / 255.0
    return np.rint(colour * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def png16_bytes(arr: np.ndarray, *, icc: bytes | None = None, exif: bytes | None = None, level: int = 6) -> bytes:
    """A 16-bit PNG of an (H, W, C) uint16 array (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), with
    optional iCCP and eXIf chunks. Pillow has no 16-bit colour modes, so it cannot write these."""
    h, w, c = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(arr, dtype=">u2").view(np.uint8).reshape(h, w * c * 2)
    # Filter "Sub" on every row: differences from the pixel to the left compress like PNG encoders
    # usually manage, where unfiltered 16-bit samples hardly compress; uint8 wraps mod 256 as PNG needs.
    bpp = 2 * c
    sub = rows.copy()
    sub[:, bpp:] -= rows[:, :-bpp]
    scan = np.concatenate([np.ones((h, 1), np.uint8), sub], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))]
    if icc:
        out.append(chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        out.append(chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    out += [chunk(b"IDAT", zlib.compress(scan, level)), chunk(b"IEND", b"")]
    return b"".join(out)
