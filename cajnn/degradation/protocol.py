"""The paper's test-time degradation (IV-B, test protocol): the HR image, modcropped to the
scale, is shrunk with MATLAB's bicubic ``imresize(hr, 1/scale)`` and JPEG-compressed at each QF
with 4:2:0 chroma subsampling.

One home for evaluation, validation during training and the downstream tasks, so that the
numbers they report come from the same inputs. The split into a clean downscale and a
compression lets a caller that scores several QFs shrink each image once; the
:func:`degrade_for_test` composition is bit-identical to doing both in one go.
"""

from __future__ import annotations

import numpy as np

from cajnn.degradation.imresize import matlab_imresize
from cajnn.degradation.jpeg import jpeg_compress

__all__ = ["TEST_SUBSAMPLING", "compress_for_test", "degrade_for_test", "downscale_for_test"]

TEST_SUBSAMPLING = "420"  # the paper's (MATLAB imwrite's) JPEG chroma subsampling


def downscale_for_test(hr: np.ndarray, scale: int) -> np.ndarray:
    """The clean LR image: MATLAB bicubic x1/scale of the (modcropped) HR, in MATLAB's scale form."""
    return matlab_imresize(hr, 1.0 / scale)


def compress_for_test(clean_lr: np.ndarray, quality: int, subsampling: str = TEST_SUBSAMPLING) -> np.ndarray:
    """The JPEG LR input at `quality` of a clean LR image (decoded, uint8)."""
    return jpeg_compress(clean_lr, quality, subsampling=subsampling)


def degrade_for_test(hr: np.ndarray, scale: int, quality: int, subsampling: str = TEST_SUBSAMPLING) -> np.ndarray:
    """Test-time LR input: MATLAB bicubic x1/scale of the modcropped HR, then JPEG."""
    return compress_for_test(downscale_for_test(hr, scale), quality, subsampling)
