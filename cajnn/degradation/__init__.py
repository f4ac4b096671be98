"""Degradation model of docs/design.md "Data and degradation" (paper IV-A): MATLAB bicubic x1/4 + JPEG.

`profile` turns a degradation profile of params.yaml (resize kernel, size cap, QF distribution,
chroma subsampling, repeated compression, block-grid offset) into LR images and aligned HR targets.
"""

from .imresize import matlab_imresize, modcrop
from .jpeg import jpeg_compress, jpeg_decode, jpeg_encode

__all__ = ["matlab_imresize", "modcrop", "jpeg_encode", "jpeg_compress", "jpeg_decode"]
