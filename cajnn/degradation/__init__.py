"""Degradation model of SPEC "Data and degradation" (paper IV-A): MATLAB bicubic x1/4 + JPEG."""

from .imresize import matlab_imresize, modcrop
from .jpeg import jpeg_compress, jpeg_decode, jpeg_encode

__all__ = ["matlab_imresize", "modcrop", "jpeg_encode", "jpeg_compress", "jpeg_decode"]
