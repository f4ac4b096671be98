"""Helpers for the registry / serving / retraining integration tests: a real `mlflow server`
(sqlite backend, `--workers 1`, 127.0.0.1) whose artifacts live in a `moto_server` S3 bucket,
started once per test process and shared by the modules that use it (each registers its own
model name), plus small CAJNN models whose quality is known without training.

The S3 endpoint is conftest.py's session fixture `moto_endpoint`; the MLflow server proxies the
artifacts (`--artifacts-destination s3://...`), so clients need only MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
ARTIFACT_BUCKET = "cajnn-test-mlflow-artifacts"
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    moto_url: str
    mlflow_url: str
    workdir: Path
    process: subprocess.Popen

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess that uses this MLflow server (and S3 with dummy keys)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(DUMMY_AWS)
        env.update(
            MLFLOW_TRACKING_URI=self.mlflow_url,
            DVC_NO_ANALYTICS="1",
            RAY_USAGE_STATS_ENABLED="0",
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        env.update(extra)
        return env


_STACK: Stack | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, what: str) -> float:
    """Poll `url` until it answers 200; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            stop(proc)
            raise RuntimeError(f"{what} did not start ({time.monotonic() - t0:.0f} s):\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


def stop(proc: subprocess.Popen) -> None:
    """Stop a server we started in its own session (its workers too)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def mlflow_stack(moto_url: str, config) -> Stack:
    """The shared MLflow server (started on first use, stopped when pytest ends)."""
    global _STACK
    if _STACK is not None and _STACK.process.poll() is None and _STACK.moto_url == moto_url:
        return _STACK
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url,
        **{k.lower(): v for k, v in DUMMY_AWS.items() if k != "AWS_DEFAULT_REGION"},
        region_name=DUMMY_AWS["AWS_DEFAULT_REGION"],
    )
    ensure_bucket(s3, ARTIFACT_BUCKET)
    workdir = Path(tempfile.mkdtemp(prefix="cajnn-mlflow-server-"))
    port = free_port()
    log = workdir / "server.log"
    env = {**os.environ, **DUMMY_AWS, "MLFLOW_S3_ENDPOINT_URL": moto_url}
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{workdir}/mlflow.db",
        "--artifacts-destination",
        f"s3://{ARTIFACT_BUCKET}/mlartifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    seconds = wait_http(url + "/health", proc, log, 180, "mlflow server")
    print(f"[servers] mlflow server on {url} (artifacts in s3://{ARTIFACT_BUCKET} at {moto_url}) up in {seconds:.1f} s")
    _STACK = Stack(moto_url, url, workdir, proc)

    def cleanup(stack=_STACK):
        stop(stack.process)
        shutil.rmtree(stack.workdir, ignore_errors=True)

    config.add_cleanup(cleanup)
    return _STACK


def ensure_bucket(s3, name: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.create_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


@contextlib.contextmanager
def tracking(url: str):
    """Point this process's MLflow client at `url`; restore the previous setting after."""
    import mlflow
    from mlflow.tracking._model_registry import utils as reg_utils
    from mlflow.tracking._tracking_service import utils as trk_utils

    saved = (
        trk_utils._tracking_uri,
        reg_utils._registry_uri,
        {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")},
    )
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    try:
        yield
    finally:
        trk_utils._tracking_uri, reg_utils._registry_uri = saved[0], saved[1]
        for k, v in saved[2].items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- models of known quality


def make_weights(kind: str, path: Path) -> Path:
    """A micro CAJNN saved as safetensors + JSON.

    * ``bilinear``: the last convolution is zero, so the output is exactly the global skip
      (bilinear x4 of the input) -- a decent, deterministic model;
    * ``noisy``: random weights with the last convolution scaled up -- visibly worse.
    """
    import torch

    from cajnn.archs.presets import build_model
    from cajnn.weights import save_weights

    torch.manual_seed(0)
    net = build_model("micro")
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        if kind == "bilinear":
            last.weight.zero_()
            last.bias.zero_()
        elif kind == "noisy":
            last.weight.mul_(40.0)
            last.bias.fill_(0.05)
        else:
            raise ValueError(kind)
    return save_weights(net, path)


def frozen_set(root: Path) -> Path:
    """A tiny frozen evaluation set under `root/frozen/tiny`: two crops of sample photos."""
    from cajnn.data.image_io import save_rgb
    from cajnn.data.sample import load_sample

    folder = root / "frozen" / "tiny"
    save_rgb(load_sample("chelsea")[40:136, 100:228], folder / "chelsea.png")
    save_rgb(load_sample("coffee")[60:156, 200:296], folder / "coffee.png")
    return folder


def register_weights(
    weights: Path, name: str, experiment: str, eval_cfg, root: Path, gate: str | None = None, **cfg_kwargs
) -> dict:
    """Score `weights` on the frozen set, log them as a pyfunc in a new run, register them
    under `name` with the promotion policy (the champion rescored from the registry)."""
    import mlflow

    from cajnn.config import RegisterConfig
    from cajnn.serving.registry import log_pyfunc, register, score_weights

    exp = mlflow.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(experiment)
    run = mlflow.MlflowClient().create_run(exp_id)
    metrics = score_weights(weights, eval_cfg, root)
    uri = log_pyfunc(weights, run.info.run_id)
    record = register(
        uri,
        run.info.run_id,
        metrics,
        RegisterConfig(model_name=name, **cfg_kwargs),
        scorer=lambda w: score_weights(w, eval_cfg, root),
        gate=gate,
    )
    mlflow.MlflowClient().set_terminated(run.info.run_id)
    return record
