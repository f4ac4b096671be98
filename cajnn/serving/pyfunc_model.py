"""MLflow "model from code" for CAJNN: loaded by `mlflow.pyfunc.load_model` and
`mlflow models serve`. Nothing is pickled: the weights are a safetensors artifact and the
model is rebuilt from its JSON config.

Request: a DataFrame with a string column `image` holding base64-encoded PNG/JPEG/WebP
bytes (one row per image). Response: a DataFrame with `image` = base64 PNG of the enhanced
image and its `width`/`height`.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from PIL import Image, ImageOps

import mlflow


class CAJNNPyfunc(PythonModel):
    def load_context(self, context):
        from cajnn.weights import load_weights

        self.model = load_weights(context.artifacts["weights"]).eval()

    def predict(self, context, model_input, params=None):
        from cajnn.inference import enhance

        params = params or {}
        rows = []
        for value in model_input["image"]:
            raw = base64.b64decode(value)
            with Image.open(io.BytesIO(raw)) as img:
                rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
            out = enhance(rgb, self.model, tile=params.get("tile") or None,
                          self_ensemble=bool(params.get("self_ensemble", False)))
            buf = io.BytesIO()
            Image.fromarray(out).save(buf, format="PNG")
            rows.append({"image": base64.b64encode(buf.getvalue()).decode("ascii"),
                         "width": out.shape[1], "height": out.shape[0]})
        return pd.DataFrame(rows, columns=["image", "width", "height"])


mlflow.models.set_model(CAJNNPyfunc())
