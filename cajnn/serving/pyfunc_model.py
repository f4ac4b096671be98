"""MLflow "model from code" for CAJNN: loaded by `mlflow.pyfunc.load_model` and
`mlflow models serve`. Nothing is pickled: the weights are a safetensors artifact and the
network is rebuilt from its JSON config (`cajnn.weights.load_weights`).

Input: a DataFrame (or a dict of lists) with a column `image`, one row per image, of any size.
A value may be

* a string: base64 of an encoded image (PNG, JPEG, WebP, ...) -- what a serving request sends;
* bytes: the encoded image itself;
* a uint8 array (H, W, 3) RGB, (H, W) or (H, W, 1) grey, (H, W, 2) grey + alpha or (H, W, 4)
  RGBA, or the same as nested lists (a JSON request).

An image keeps what `cajnn enhance` keeps (:mod:`cajnn.data.image_meta`, the same code):
transparency (the colour goes through the network, the alpha plane is upscaled on its own),
grayscale, 16-bit depth (PNG), the ICC profile and EXIF (orientation applied once). So an RGBA
PNG comes back as an RGBA PNG, a grey one as grey.

Output: a DataFrame with `image`, `width` and `height` of each enhanced (x4) image. `image` is
base64 PNG for encoded inputs and a uint8 array for array inputs (`output` param: `auto` |
`png` | `array`): (h, w, 3) RGB, (h, w, 4) RGBA, (h, w, 2) grey + alpha or (h, w) grey
(uint16 for a 16-bit PNG input).

Params: `tile` (LR tile in pixels, 0 = automatic), `self_ensemble` (8-way, slower),
`output` (see above).

A bad request (not base64, not an image, an empty string, a decompression bomb, a wrong array
shape, a wrong param) raises an `MlflowException` with INVALID_PARAMETER_VALUE, which
`mlflow models serve` answers with HTTP 400 and the message naming the row and the problem,
instead of a 500 "unexpected error".
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

if TYPE_CHECKING:
    from cajnn.data.image_meta import KeptImage

OUTPUTS = ("auto", "png", "array")


def _read_encoded(data: bytes) -> KeptImage:
    """Encoded image bytes -> what `cajnn enhance` reads of a file (:func:`read_image`)."""
    from cajnn.data.image_io import ImageLoadError
    from cajnn.data.image_meta import read_image

    try:
        return read_image("request", data=data)
    except ImageLoadError as exc:
        what = "image too large" if "decompression bomb" in exc.reason else "cannot decode image bytes"
        raise ValueError(f"{what}: {exc.reason}") from None


def decode_image(value) -> tuple[KeptImage, bool]:
    """One `image` value -> (its :class:`~cajnn.data.image_meta.KeptImage`: colour, alpha, ICC,
    EXIF; was_encoded)."""
    from cajnn.data.image_meta import KeptImage

    if isinstance(value, str):
        if not value.strip():
            raise ValueError("image string is empty")
        try:
            value = base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"image string is not base64: {exc}") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        if not value:
            raise ValueError("image bytes are empty")
        return _read_encoded(bytes(value)), True
    arr = np.asarray(value)
    if arr.dtype == object or arr.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W[, 1|2|3|4]) image array, got shape {arr.shape} ({arr.dtype})")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"image array values must be uint8 (0..255), got {arr.dtype}")
        arr = arr.astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"image array must have 1, 2, 3 or 4 channels, got {channels}")
    if min(arr.shape[:2]) < 1:
        raise ValueError(f"image array is empty: shape {arr.shape}")
    colour = arr[:, :, :1] if channels <= 2 else arr[:, :, :3]
    alpha = np.ascontiguousarray(arr[:, :, -1]) if channels in (2, 4) else None
    return KeptImage(np.ascontiguousarray(colour), alpha), False


def encode_png(image: np.ndarray, icc: bytes | None = None, exif: bytes | None = None) -> str:
    """Base64 PNG of an (H, W[, C]) array (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA; uint8,
    or uint16 for a 16-bit PNG), with the ICC profile and EXIF when given."""
    from PIL import Image

    from cajnn.data.image_meta import png16_bytes

    arr = image if image.ndim == 3 else image[:, :, None]
    if arr.dtype == np.uint16:
        return base64.b64encode(png16_bytes(arr, icc=icc, exif=exif, level=1)).decode("ascii")
    kwargs: dict = {}
    if icc is not None:
        kwargs["icc_profile"] = icc
    if exif is not None:
        kwargs["exif"] = exif
    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG", compress_level=1, **kwargs)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _images(model_input) -> list:
    if isinstance(model_input, pd.DataFrame):
        if "image" not in model_input.columns:
            raise ValueError(f"input needs a column 'image', got {list(model_input.columns)}")
        return list(model_input["image"])
    if isinstance(model_input, dict) and "image" in model_input:
        values = model_input["image"]
        if isinstance(values, (list, tuple, pd.Series)):
            return list(values)
        if isinstance(values, np.ndarray) and (
            values.dtype == object or values.dtype.kind in "SUO" or values.ndim == 1
        ):
            return list(values)  # one value per row (strings, bytes or arrays)
        return [values]  # a single image array
    raise ValueError(f"input must be a DataFrame or dict with an 'image' column, got {type(model_input).__name__}")


class CAJNNPyfunc(PythonModel):
    def load_context(self, context):
        from cajnn.serving.mlmodel import WEIGHTS_ARTIFACT
        from cajnn.weights import load_weights

        self.model = load_weights(context.artifacts[WEIGHTS_ARTIFACT]).eval()

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            return self._predict(model_input, params or {})
        except ValueError as exc:  # the request's fault: HTTP 400 with this message
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None

    def _predict(self, model_input, params: dict) -> pd.DataFrame:
        from cajnn.data.image_meta import finish
        from cajnn.inference import enhance

        output = params.get("output") or "auto"
        if output not in OUTPUTS:
            raise ValueError(f"param output {output!r}: use one of {', '.join(OUTPUTS)}")
        tile = int(params.get("tile") or 0) or None
        self_ensemble = bool(params.get("self_ensemble", False))
        rows = []
        for i, value in enumerate(_images(model_input)):
            try:
                kept, encoded = decode_image(value)
            except ValueError as exc:
                raise ValueError(f"row {i}: {exc}") from None
            sr = enhance(kept.network_input(), self.model, tile=tile, self_ensemble=self_ensemble)
            out = finish(kept, sr)  # alpha upscaled on its own, grey kept: as `cajnn enhance`
            del sr
            as_png = output == "png" or (output == "auto" and encoded)
            if as_png:
                image = encode_png(out, icc=kept.icc, exif=kept.exif)
            else:
                image = out[:, :, 0] if out.shape[2] == 1 else out
            rows.append({"image": image, "width": int(out.shape[1]), "height": int(out.shape[0])})
        return pd.DataFrame(rows, columns=["image", "width", "height"])


mlflow.models.set_model(CAJNNPyfunc())
