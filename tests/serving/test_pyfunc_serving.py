"""`mlflow models serve -m models:/<name>@champion --env-manager local` answers HTTP requests
with correctly sized images: the README's `curl` example (base64 JPEG in, base64 PNG out) run
as written, a uint8 array sent as JSON lists, and a clear error for a bad image."""

from __future__ import annotations

import io
import json
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.helpers.servers import (
    BIN,
    free_port,
    frozen_set,
    make_weights,
    mlflow_stack,
    register_weights,
    stop,
    tracking,
    wait_http,
)

pytestmark = pytest.mark.integration
NAME = "cajnn-serving"

# The README example, verbatim except for the model name and the port.
README_CURL = """\
curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
  -d "{\\"dataframe_split\\": {\\"columns\\": [\\"image\\"], \\"data\\": [[\\"$(base64 -w0 photo.jpg)\\"]]}}" \\
  | jq -r '.predictions[0].image' | base64 -d > photo_x4.png"""


@pytest.fixture(scope="module")
def served(moto_endpoint, request, tmp_path_factory):
    """Register a model (the first version becomes champion) and serve `@champion`."""
    from cajnn.config import EvaluateConfig

    stack = mlflow_stack(moto_endpoint, request.config)
    root = tmp_path_factory.mktemp("serving")
    frozen_set(root)
    cfg = EvaluateConfig(sets={"tiny": "frozen/tiny"}, qualities=[20], self_ensemble=False, sweep_set="")
    with tracking(stack.mlflow_url):
        rec = register_weights(
            make_weights("bilinear", root / "w" / "cajnn.safetensors"), NAME, "serving-test", cfg, root
        )
    assert rec["champion"] == rec["version"]
    port = free_port()
    log = root / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{NAME}@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
            ],
            cwd=root,
            env=stack.env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    seconds = wait_http(f"http://127.0.0.1:{port}/ping", proc, log, 240, "mlflow models serve")
    print(f"[serving] `mlflow models serve` answered /ping after {seconds:.1f} s")
    yield {"port": port, "root": root}
    stop(proc)


def _post(port: int, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_readme_curl_example_returns_a_4x_png(served, tmp_path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 41, 3), dtype=np.uint8)).save(
        tmp_path / "photo.jpg", quality=40
    )
    cmd = README_CURL.replace(":5001/", f":{served['port']}/")
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "photo_x4.png") as out:
        assert out.format == "PNG" and out.size == (164, 120) and out.mode == "RGB"


def test_uint8_array_as_json_lists(served):
    img = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    status, body = _post(served["port"], {"dataframe_split": {"columns": ["image"], "data": [[img.tolist()]]}})
    assert status == 200, body
    pred = body["predictions"][0]
    assert (pred["width"], pred["height"]) == (20, 28)
    assert np.asarray(pred["image"], dtype=np.uint8).shape == (28, 20, 3)


def test_params_and_bad_input(served):
    import base64

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(buf, "PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    status, body = _post(
        served["port"], {"dataframe_records": [{"image": b64}, {"image": b64}], "params": {"tile": 4, "output": "png"}}
    )
    assert status == 200, json.dumps(body)[:3000]
    assert [(p["width"], p["height"]) for p in body["predictions"]] == [(36, 36), (36, 36)]
    status, body = _post(served["port"], {"dataframe_split": {"columns": ["image"], "data": [["bm90IGFuIGltYWdl"]]}})
    assert status >= 400 and "row 0" in json.dumps(body)
