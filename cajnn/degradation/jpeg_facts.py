"""What one served JPEG says about the platform that made it (docs/web-platform-data.md):
its size, chroma subsampling (frame header), quantization tables and the quality factor behind
them (:mod:`cajnn.degradation.quality`), and signs of a second compression
(:mod:`cajnn.degradation.double_jpeg`). Read with Pillow (libjpeg's own header parsing); the
luma plane is decoded without colour conversion, as the encoder saw it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np

from cajnn.degradation.double_jpeg import DoubleEstimate, double_compression
from cajnn.degradation.quality import QualityEstimate, estimate_quality

# (luma horizontal, vertical sampling factor) with chroma at (1, 1) -> the usual name
SUBSAMPLING_NAMES = {(1, 1): "444", (2, 1): "422", (2, 2): "420", (1, 2): "440", (4, 1): "411"}
GRAY = "gray"


class NotAJpegError(ValueError):
    """The file cannot be read as a JPEG; the message says why."""


@dataclass(frozen=True)
class JpegFacts:
    width: int
    height: int
    components: int
    subsampling: str  # 444 | 422 | 420 | 440 | 411 | other | gray
    progressive: bool
    quality: QualityEstimate
    double: DoubleEstimate
    luma_table: list[int] = field(repr=False)
    chroma_table: list[int] | None = field(repr=False)

    @property
    def longest_side(self) -> int:
        return max(self.width, self.height)


def _subsampling(layers: list[tuple]) -> str:
    if len(layers) == 1:
        return GRAY
    if len(layers) != 3 or any((h, v) != (1, 1) for _, h, v, _ in layers[1:]):
        return "other"
    return SUBSAMPLING_NAMES.get((layers[0][1], layers[0][2]), "other")


def read_jpeg_facts(data: bytes) -> JpegFacts:
    """The facts of one JPEG file's bytes; NotAJpegError (with the reason) when it is none or
    cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.format != "JPEG":
                raise NotAJpegError(f"not a JPEG ({im.format} image)")
            tables = getattr(im, "quantization", None) or {}
            if 0 not in tables:
                raise NotAJpegError("JPEG without a luma quantization table")
            layers = list(getattr(im, "layer", []))
            progressive = bool(im.info.get("progressive") or im.info.get("progression"))
            if im.mode == "CMYK" or len(layers) == 4:
                raise NotAJpegError("CMYK/YCCK JPEG (print files, not served web images)")
            im.draft("YCbCr" if im.mode == "RGB" else im.mode, im.size)  # no colour conversion
            plane = np.asarray(im)
    except NotAJpegError:
        raise
    except UnidentifiedImageError:
        raise NotAJpegError("not an image file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise NotAJpegError(f"too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise NotAJpegError(f"cannot decode ({exc})") from None
    luma = [int(v) for v in tables[0]]
    chroma = [int(v) for v in tables[1]] if len(layers) == 3 and 1 in tables else None
    y = plane[..., 0] if plane.ndim == 3 else plane
    return JpegFacts(
        width=im.size[0],
        height=im.size[1],
        components=len(layers),
        subsampling=_subsampling(layers),
        progressive=progressive,
        quality=estimate_quality(luma, chroma),
        double=double_compression(y, luma),
        luma_table=luma,
        chroma_table=chroma,
    )
