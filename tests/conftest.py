"""Shared fixtures: one thread for tiny torch work; a real HTTP file server (Range support) and a
real `moto_server` S3 endpoint on 127.0.0.1, one of each per session, stopped at teardown."""

import os

# Never phone home from tests (DVC analytics, MLflow/Ray usage stats).
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Ray Train's controller polls its workers every 2 s by default, so each short test run waits
# up to 2 s at start and at the end for nothing; project copies inherit this environment.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers.file_server import FileServer
from tests.helpers.servers import DUMMY_AWS, free_port


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: extra threads only add overhead, and OpenMP spin-waiting is very slow on
    a busy 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def _file_server():
    server = FileServer()
    server.thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_server(_file_server) -> FileServer:
    _file_server.reset()
    yield _file_server
    _file_server.reset()


def _moto_exe() -> str:
    local = Path(sys.executable).parent / "moto_server"
    return str(local) if local.exists() else (shutil.which("moto_server") or "moto_server")


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    """`moto_server -H 127.0.0.1 -p PORT` as a subprocess; yields its endpoint URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {**os.environ, **DUMMY_AWS}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [_moto_exe(), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=fh, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(url + "/moto-api/", timeout=1)
            break
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Dummy credentials in the environment only (no ~/.aws files, no instance metadata)."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key, value in DUMMY_AWS.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


@pytest.fixture(scope="session")
def degraded_micro(tmp_path_factory) -> Path:
    """A micro project with `fetch` and `degrade` run and dvc.lock committed, made once: tests
    about later stages start from a copy (`tests.helpers.project.copy_project`) instead of
    fetching and degrading again (~12 s each). Tests about fetch and degrade make their own."""
    from tests.helpers.project import make_project, run

    root = make_project(tmp_path_factory.mktemp("degraded-micro"), preset="micro")
    run(["dvc", "repro", "degrade"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "fetch and degrade"], root)
    return root


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`), files that run pipelines go first: each process takes
    the next whole file (`--dist loadfile`, module fixtures shared), and the many short files
    then fill the gaps, instead of two multi-minute files starting last and running alone.
    A plain `pytest` keeps the collection order."""
    if not hasattr(config, "workerinput"):
        return
    cost = {}
    for item in items:
        rank = 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("integration") else 2
        cost[item.path] = min(cost.get(item.path, rank), rank)
    items.sort(key=lambda item: cost[item.path])  # stable: a file's tests keep their order
