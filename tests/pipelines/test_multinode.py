"""The pipeline on a Ray cluster of two nodes whose second node cannot see the driver's data.

One machine, two real Ray nodes (`ray start --head` and `ray start --address`). The second
node's processes run in their own mount and PID namespaces (`unshare`) with a private, empty
tmpfs over each of the project's `data/`, `runs/` and `mlflow/` folders: everything the driver
writes there (HR images, patch shards, checkpoints, its MLflow files) is invisible to them, as
on a second machine without a shared disk. As on a real cluster, MLflow is a tracking server
(`mlflow server`, artifacts in a `moto_server` S3) and checkpoints go to S3
(`train.storage_path: s3://...`). Degrade tasks and the training worker ask for a custom
resource only that node has (`ray.task_resources`), so they must run there. Why namespaces:
CI runs as root in a VM without Docker, where mount namespaces are allowed; file permissions
would not hide anything from root.

The same stages on a one-node local Ray give the same patch shards (byte for byte) and the
same trained weights.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from cajnn.weights import load_weights
from tests.helpers.project import copy_project, make_project, project_env, run
from tests.helpers.servers import DUMMY_AWS, ensure_bucket, mlflow_stack

pytestmark = pytest.mark.e2e
RAY = Path(sys.executable).parent / "ray"
NODE2 = "node2"
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount", "--propagation", "private"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _die_with_parent() -> None:
    # If pytest dies, the kernel kills `unshare`; --kill-child then kills the node's whole PID
    # namespace (raylet, workers, object store): nothing is left running.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setsid()


def _node(args: list[str], hide: list[Path], log) -> subprocess.Popen:
    mounts = "".join(f"mount -t tmpfs tmpfs '{h}' && " for h in hide)
    return subprocess.Popen(
        [*UNSHARE, "sh", "-c", mounts + "exec " + " ".join(args)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )


def _isolation_works(folder: Path) -> str | None:
    probe = subprocess.run(
        [*UNSHARE, "sh", "-c", f"mount -t tmpfs tmpfs '{folder}' && test -z \"$(ls -A '{folder}')\""],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else (probe.stderr.strip() or f"exit {probe.returncode}")


def _ports(prefix: str, p: list[int]) -> list[str]:
    return [
        f"--dashboard-agent-listen-port={p[0]}",
        f"--dashboard-agent-grpc-port={p[1]}",
        f"--runtime-env-agent-port={p[2]}",
        f"--metrics-export-port={p[3]}",
        f"--node-manager-port={p[4]}",
        f"--object-manager-port={p[5]}",
        f"--temp-dir={prefix}",
    ]


RUNS_BUCKET = "cajnn-test-ray-runs"


@pytest.fixture(scope="module")
def cluster_project(tmp_path_factory, monkeypatch_module, moto_endpoint, request):
    """A micro project whose `ray.address` is a head + node2 cluster; node2 cannot see data/,
    runs/ or mlflow/; MLflow is a server, checkpoints go to S3."""
    import boto3

    for key, value in DUMMY_AWS.items():  # the driver, the nodes and their workers reach moto S3
        monkeypatch_module.setenv(key, value)
    ensure_bucket(boto3.client("s3", endpoint_url=moto_endpoint), RUNS_BUCKET)
    stack = mlflow_stack(moto_endpoint, request.config)
    project = make_project(
        tmp_path_factory.mktemp("multinode"),
        preset="micro",
        mlflow={"tracking_uri": stack.mlflow_url},
        train={
            "storage_path": f"s3://{RUNS_BUCKET}/{tmp_path_factory.getbasetemp().name}",
            "storage_endpoint_url": moto_endpoint,
        },
    )
    hidden = [project / name for name in ("data", "runs", "mlflow")]
    for folder in hidden:
        folder.mkdir()
        (folder / "visible-to-the-driver").write_text("x")
    data = hidden[0]
    why = _isolation_works(data)
    if why:  # an honest failure, not a skip: the machine CI runs on allows this
        pytest.fail(f"cannot give the second node its own mount namespace here: {why}")
    base = Path(tempfile.mkdtemp(prefix="r2n", dir="/tmp"))  # short: Ray's socket paths < 108 bytes
    # A ~/.ray/auth_token turns token auth on for `ray start --head` only; the nodes and the
    # driver must agree, and a cluster on loopback needs none.
    monkeypatch_module.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch_module.setenv("RAY_USAGE_STATS_ENABLED", "0")
    gcs, client, dash, *p = _free_ports(15)
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats", "--block"]
    head = [
        str(RAY),
        "start",
        "--head",
        f"--port={gcs}",
        "--include-dashboard=false",
        f"--dashboard-port={dash}",
        f"--ray-client-server-port={client}",
        *_ports(f"{base}/h", p[:6]),
        *common,
    ]
    node2 = [
        str(RAY),
        "start",
        f"--address=127.0.0.1:{gcs}",
        f"--resources='{{\"{NODE2}\": 1}}'",
        *_ports(f"{base}/n", p[6:12]),
        *common,
    ]
    logs = [open(base / "head.log", "wb"), open(base / "node2.log", "wb")]
    procs = [_node(head, [], logs[0])]
    t0 = time.monotonic()
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", gcs), 0.5).close()
                break
            except OSError:
                assert procs[0].poll() is None and time.monotonic() - t0 < 90, (base / "head.log").read_text()[-3000:]
                time.sleep(0.2)
        procs.append(_node(node2, hidden, logs[1]))
        probe = [
            sys.executable,
            "-c",
            (
                "import os, sys, time, ray\n"
                f"ray.init(address='127.0.0.1:{gcs}', logging_level='ERROR')\n"
                f"while not ray.cluster_resources().get('{NODE2}'): time.sleep(0.2)\n"
                f"@ray.remote(num_cpus=0.1, resources={{'{NODE2}': 0.01}})\n"
                f"def look(): return sorted(os.listdir('{data}') + os.listdir('{project}/runs')"
                f" + os.listdir('{project}/mlflow'))\n"
                "print(ray.get(look.remote()))\n"
            ),
        ]
        seen = subprocess.run(probe, capture_output=True, text=True, timeout=120)
        assert seen.returncode == 0 and seen.stdout.strip() == "[]", (
            seen.stdout + seen.stderr + (base / "node2.log").read_text()[-2000:]
        )
        for folder in hidden:
            (folder / "visible-to-the-driver").unlink()
        yield {"project": project, "address": f"127.0.0.1:{gcs}", "base": base, "ready_s": time.monotonic() - t0}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for fh in logs:
            fh.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _set(project: Path, section: str, **values) -> None:
    import yaml

    from cajnn.config.compose import write_params

    conf = project / "conf" / "config.yaml"
    config = yaml.safe_load(conf.read_text())
    config[section].update(values)
    conf.write_text(yaml.safe_dump(config, sort_keys=False))
    write_params(project)


def test_degrade_and_train_on_a_node_without_the_drivers_disk_match_one_node(cluster_project, degraded_micro, tmp_path):
    project = cluster_project["project"]
    _set(project, "ray", address=cluster_project["address"], task_resources={NODE2: 1})
    out = run(["dvc", "repro", "train"], project, timeout=600)
    assert "[train] done in" in out, out
    manifest = json.loads((project / "data" / "patches" / "manifest.json").read_text())
    assert manifest["images"] == 7 and manifest["skipped"] == []

    reference = copy_project(degraded_micro, tmp_path)  # the same stages on one local node
    run(["dvc", "repro", "train"], reference, timeout=600)
    ref_manifest = json.loads((reference / "data" / "patches" / "manifest.json").read_text())
    assert manifest["sha256"] == ref_manifest["sha256"]  # every shard byte for byte
    assert sorted(p.name for p in (project / "data" / "patches").iterdir()) == sorted(
        p.name for p in (reference / "data" / "patches").iterdir()
    )
    # the same weights, tensor for tensor (the file's bytes are not: safetensors orders its
    # metadata differently in each process)
    ours, theirs = (load_weights(p / "models" / "cajnn.safetensors").state_dict() for p in (project, reference))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert (
        json.loads((project / "models" / "run.json").read_text())["val_psnr_y"]
        == json.loads((reference / "models" / "run.json").read_text())["val_psnr_y"]
    )


def test_streamed_training_reads_the_drivers_shards_from_the_other_node(cluster_project):
    """`train.feed: stream` (what a patch set over 2 GiB gets): Ray Data reads the `local://`
    shards on the driver's node and the worker on node2 trains on the blocks it is sent."""
    project = cluster_project["project"]
    _set(project, "ray", address=cluster_project["address"], task_resources={NODE2: 1})
    _set(project, "train", feed="stream")
    out = run(["dvc", "repro", "train"], project, timeout=600)
    assert "patches streamed by Ray Data" in out and "[train] done in" in out, out
    assert "degrade" not in re.findall(r"Running stage '(\w+)'", out)  # the same shards as before
    record = json.loads((project / "models" / "run.json").read_text())
    assert record["iterations"] == 12 and math.isfinite(record["val_psnr_y"]), record


def test_a_cluster_refuses_an_mlflow_file_store(cluster_project, tmp_path):
    project = make_project(tmp_path, preset="micro", ray={"address": cluster_project["address"]})
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.train"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env=project_env(),
    )
    assert proc.returncode == 1 and "tracking server every node reaches" in proc.stderr, proc.stderr
    assert not (project / "mlflow").exists()  # refused before anything was created
