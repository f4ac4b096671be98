"""MLflow "model from code" for CAJNN: loaded by `mlflow.pyfunc.load_model` and
`mlflow models serve`. Nothing is pickled: the weights are a safetensors artifact and the
network is rebuilt from its JSON config (`cajnn.weights.load_weights`).

Input: a DataFrame (or a dict of lists) with a column `image`, one row per image, of any size.
A value may be

* a string: base64 of an encoded image (PNG, JPEG, WebP, ...) -- what a serving request sends;
* bytes: the encoded image itself;
* a uint8 array (H, W, 3), (H, W) grey or (H, W, 4) RGBA (alpha dropped), or the same as nested
  lists (a JSON request).

Output: a DataFrame with `image`, `width` and `height` of each enhanced (x4) image. `image` is
base64 PNG for encoded inputs and a uint8 (H, W, 3) array for array inputs (`output` param:
`auto` | `png` | `array`).

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

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

import mlflow

OUTPUTS = ("auto", "png", "array")


def decode_image(value) -> tuple[np.ndarray, bool]:
    """One `image` value -> ((H, W, 3) uint8 RGB, was_encoded)."""
    from PIL import Image, ImageOps

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
        try:
            with Image.open(io.BytesIO(bytes(value))) as img:
                return np.asarray(ImageOps.exif_transpose(img).convert("RGB")), True
        except Image.DecompressionBombError as exc:
            raise ValueError(f"image too large: {exc}") from None
        except OSError as exc:
            raise ValueError(f"cannot decode image bytes: {exc}") from None
    arr = np.asarray(value)
    if arr.dtype == object or arr.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W[, 3|4]) image array, got shape {arr.shape} ({arr.dtype})")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"image array values must be uint8 (0..255), got {arr.dtype}")
        arr = arr.astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.shape[2] != 3:
        raise ValueError(f"image array must have 1, 3 or 4 channels, got {arr.shape[2]}")
    return np.ascontiguousarray(arr), False


def encode_png(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
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
        if isinstance(values, np.ndarray) and (values.dtype == object or values.dtype.kind in "SUO" or values.ndim == 1):
            return list(values)  # one value per row (strings, bytes or arrays)
        return [values]  # a single image array
    raise ValueError(f"input must be a DataFrame or dict with an 'image' column, got {type(model_input).__name__}")


class CAJNNPyfunc(PythonModel):
    def load_context(self, context):
        from cajnn.weights import load_weights

        self.model = load_weights(context.artifacts["weights"]).eval()

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            return self._predict(model_input, params or {})
        except ValueError as exc:  # the request's fault: HTTP 400 with this message
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None

    def _predict(self, model_input, params: dict) -> pd.DataFrame:
        from cajnn.inference import enhance

        output = params.get("output") or "auto"
        if output not in OUTPUTS:
            raise ValueError(f"param output {output!r}: use one of {', '.join(OUTPUTS)}")
        tile = int(params.get("tile") or 0) or None
        self_ensemble = bool(params.get("self_ensemble", False))
        rows = []
        for i, value in enumerate(_images(model_input)):
            try:
                rgb, encoded = decode_image(value)
            except ValueError as exc:
                raise ValueError(f"row {i}: {exc}") from None
            out = enhance(rgb, self.model, tile=tile, self_ensemble=self_ensemble)
            as_png = output == "png" or (output == "auto" and encoded)
            rows.append({"image": encode_png(out) if as_png else out,
                         "width": int(out.shape[1]), "height": int(out.shape[0])})
        return pd.DataFrame(rows, columns=["image", "width", "height"])


mlflow.models.set_model(CAJNNPyfunc())
