"""Latency and throughput of the documented serving path (issue 15).

    .venv/bin/python benchmarks/bench_serving.py                          # 60 requests, 4 clients, 128 -> 512
    .venv/bin/python benchmarks/bench_serving.py --requests 8 --clients 2  # smoke test
    .venv/bin/python benchmarks/bench_serving.py --make --json serving.json

What it does, end to end, as a user of README "Serving the champion" would:

1. registers `--weights` (default models/cajnn.safetensors, its .json config beside it) in a
   throwaway MLflow store (sqlite + local artifacts in a temporary folder) the way the pipeline
   does: :func:`cajnn.serving.registry.log_pyfunc`, a version of the model ``cajnn``, alias
   ``champion``;
2. serves ``models:/cajnn@champion`` with ``mlflow models serve --env-manager local -h 127.0.0.1
   -p PORT`` (the command `make serve` runs; ``--make`` runs ``make serve SERVE_PORT=PORT`` itself
   with MLFLOW_TRACKING_URI pointing at the throwaway store) and waits for ``/ping``;
3. sends one warm-up request, then ``--requests`` requests from ``--clients`` concurrent clients
   (threads, one HTTP connection per request, the README's JSON body: a base64 ``--size`` x
   ``--size`` JPEG of an embedded sample photo) and checks each answer (200, x4 size);
4. sends three bad requests (bytes that are not an image, an empty string, a decompression bomb
   PNG) expecting HTTP 400 with the message naming the problem, then checks the server still
   answers.

It prints the CPU (``lscpu`` model name and the avx2 / avx512f / avx512_bf16 / amx_bf16 flags)
with the numbers: ok count, latency p50 / p95 / max (seconds, from sending the request to the
whole answer read), requests per second (ok answers over the wall time of the timed batch), the
bad requests' status and message, and whether the server survived; with ``--json PATH`` the
same as JSON. The exit code is 0 when every answer was as expected. The server's process group
is stopped on exit, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.servers import free_port, stop, wait_http  # noqa: E402  (the serving tests' helpers)

BIN = Path(sys.executable).parent
MODEL_NAME = "cajnn"  # what `make serve` serves: models:/cajnn@champion
DEFAULT_WEIGHTS = ROOT / "models" / "cajnn.safetensors"
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=60, help="timed requests [%(default)s]")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (threads) [%(default)s]")
    p.add_argument(
        "--size", type=int, default=128, help="side of the square JPEG sent (the answer is 4x) [%(default)s]"
    )
    p.add_argument("--quality", type=int, default=30, help="JPEG quality of the image sent [%(default)s]")
    p.add_argument(
        "--weights",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help="safetensors weights (config .json beside) [models/cajnn.safetensors]",
    )
    p.add_argument("--port", type=int, default=0, help="port to serve on; 0 = a free one [%(default)s]")
    p.add_argument(
        "--make",
        action="store_true",
        help="start the server with `make serve SERVE_PORT=PORT` "
        "(runs `make setup` first) instead of the `mlflow models serve` command it runs",
    )
    p.add_argument("--start-timeout", type=float, default=300, help="seconds to wait for /ping [%(default)s]")
    p.add_argument("--request-timeout", type=float, default=300, help="client timeout per request, s [%(default)s]")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.requests < 1 or args.clients < 1 or args.size < 1:
        p.error("--requests, --clients and --size must be at least 1")
    return args


# --------------------------------------------------------------------------- the machine


def cpu_info() -> dict:
    """`lscpu`'s model name and the flags that decide the CPU kernels (/proc/cpuinfo as fallback)."""
    model, flags = "", set()
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, env={**os.environ, "LC_ALL": "C"}
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name" and not model:
            model = value.strip()
        elif key.strip() == "Flags":
            flags = set(value.split())
    if not model or not flags:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
        except OSError:
            pass
    return {
        "model_name": model or platform.processor() or "unknown",
        "cpus": os.cpu_count(),
        "flags": {f: f in flags for f in CPU_FLAGS},
    }


def cpu_line(cpu: dict) -> str:
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in cpu["flags"].items())
    return f"CPU: {cpu['model_name']} ({cpu['cpus']} CPUs seen); flags: {flags}"


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# --------------------------------------------------------------------------- the model and the server


def register_champion(weights: Path, store: Path) -> tuple[str, str]:
    """Log `weights` as the pipeline does and make it `cajnn@champion` in a fresh sqlite store
    under `store`; returns (tracking URI, version)."""
    import logging

    import mlflow
    from mlflow import MlflowClient

    from cajnn.serving.registry import CHAMPION, log_pyfunc

    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    exp_id = client.create_experiment("bench-serving", artifact_location=(store / "artifacts").as_uri())
    run = client.create_run(exp_id, run_name="bench-serving")
    model_uri = log_pyfunc(weights, run.info.run_id)
    version = mlflow.register_model(model_uri, MODEL_NAME).version
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    client.set_terminated(run.info.run_id)
    return uri, str(version)


def server_command(args, port: int) -> list[str]:
    if args.make:
        return ["make", "-C", str(ROOT), "serve", f"SERVE_PORT={port}"]
    # what `make serve` runs (Makefile target `serve`), with the venv's mlflow
    return [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL_NAME}@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]


def server_env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_REGISTRY_URI=tracking_uri,
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )  # mlflow starts uvicorn from PATH
    return env


# --------------------------------------------------------------------------- requests


def jpeg_b64(size: int, quality: int) -> tuple[str, int]:
    """Base64 of a `size` x `size` JPEG cut from the embedded sample photo `chelsea`; (b64, bytes)."""
    from PIL import Image

    from cajnn.data.sample import load_sample

    img = Image.fromarray(load_sample("chelsea"))
    scale = max(size / img.width, size / img.height, 1.0)
    if scale > 1.0:
        img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    buf = io.BytesIO()
    img.crop((left, top, left + size, top + size)).save(buf, "JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii"), len(buf.getvalue())


def bomb_b64() -> str:
    """A 16000 x 16000 grey PNG (256 Mpx, 250 KB): over cajnn's 64 Mpx limit and Pillow's own."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (16000, 16000)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def body(value: str) -> bytes:
    # the README's request: {"dataframe_split": {"columns": ["image"], "data": [[<base64>]]}}
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[value]]}}).encode()


def post(url: str, data: bytes, timeout: float) -> tuple[int, dict | str, float]:
    """(HTTP status or 0 for no answer, the JSON answer or an error text, seconds)."""
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except OSError as exc:
        return 0, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    try:
        return status, json.loads(raw), seconds
    except ValueError:
        return status, raw[:300].decode("utf-8", "replace"), seconds


def check_answer(status: int, answer, side: int) -> str | None:
    """None when `answer` is a 200 with one `side` x `side` image, else what is wrong."""
    if status != 200:
        return f"HTTP {status}: {str(answer)[:200]}"
    try:
        pred = answer["predictions"][0]
        size = (int(pred["width"]), int(pred["height"]))
    except (KeyError, IndexError, TypeError, ValueError):
        return f"unexpected answer: {str(answer)[:200]}"
    return None if size == (side, side) else f"answer is {size[0]}x{size[1]}, expected {side}x{side}"


def check_png(value: str, side: int) -> str | None:
    """None when `value` is base64 of a `side` x `side` PNG, else what is wrong."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(base64.b64decode(value))) as im:
            fmt, size = im.format, im.size
    except Exception as exc:  # not base64, not an image
        return f"answer image unreadable: {type(exc).__name__}: {exc}"
    return None if (fmt, size) == ("PNG", (side, side)) else f"answer image is {fmt} {size}, expected PNG {side}x{side}"


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def load_test(url: str, data: bytes, side: int, n: int, clients: int, timeout: float) -> dict:
    pool = ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client")
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def one(_: int) -> None:
        status, answer, seconds = post(url, data, timeout)
        problem = check_answer(status, answer, side)
        with lock:
            (errors.append(problem) if problem else latencies.append(seconds))

    t0 = time.perf_counter()
    try:
        for fut in as_completed([pool.submit(one, i) for i in range(n)]):
            fut.result()
        wall = time.perf_counter() - t0
    finally:  # on Ctrl-C: drop the queued requests; the running ones end when the server stops
        pool.shutdown(wait=False, cancel_futures=True)
    lat = sorted(latencies)
    return {
        "requests": n,
        "clients": clients,
        "ok": len(lat),
        "failed": len(errors),
        "errors": sorted(set(errors))[:5],
        "wall_s": wall,
        "p50_s": percentile(lat, 50),
        "p95_s": percentile(lat, 95),
        "max_s": lat[-1] if lat else float("nan"),
        "mean_s": sum(lat) / len(lat) if lat else float("nan"),
        "req_per_s": len(lat) / wall if wall else 0.0,
    }


def bad_requests(url: str, timeout: float) -> list[dict]:
    cases = [
        ("non-image bytes", base64.b64encode(b"not an image").decode(), "cannot decode image"),
        ("empty string", "", "image string is empty"),
        ("decompression bomb", bomb_b64(), "image too large"),
    ]
    results = []
    for label, value, expected in cases:
        status, answer, seconds = post(url, body(value), timeout)
        message = answer.get("message", "") if isinstance(answer, dict) else str(answer)
        ok = status == 400 and expected in message and "row 0" in message
        results.append(
            {
                "request": label,
                "status": status,
                "message": message[:600],
                "expected": expected,
                "seconds": seconds,
                "ok": ok,
            }
        )
    return results


# --------------------------------------------------------------------------- main


def _on_sigterm(signum, frame):  # SIGTERM/SIGHUP as Ctrl-C: the finally blocks stop the server
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_sigterm)
    cpu = cpu_info()
    print(cpu_line(cpu), flush=True)
    weights = args.weights if args.weights.is_absolute() else Path.cwd() / args.weights
    if not weights.is_file() or not weights.with_suffix(".json").is_file():
        missing = weights if not weights.is_file() else weights.with_suffix(".json")
        print(
            f"error: {missing} not found. Get trained weights with `make run` (the pipeline writes "
            "models/cajnn.safetensors and models/cajnn.json), or pass --weights FILE.safetensors "
            "with its .json config beside it.",
            file=sys.stderr,
        )
        return 2

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    import torch

    results: dict = {
        "cpu": cpu,
        "load_average_before": load_average(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mlflow": mlflow.__version__,
        "weights": str(weights),
        "model_config": json.loads(weights.with_suffix(".json").read_text()),
        "size": args.size,
        "quality": args.quality,
    }
    arch = results["model_config"]
    print(
        f"torch {torch.__version__}, mlflow {mlflow.__version__}, weights {weights} "
        f"({arch.get('nf', '?')} features, {arch.get('num_blocks', '?')} blocks); "
        f"load average {' '.join(map(str, results['load_average_before']))}",
        flush=True,
    )

    store = Path(tempfile.mkdtemp(prefix="cajnn-bench-serving-"))
    proc = None
    log = store / "serve.log"
    try:
        t0 = time.perf_counter()
        tracking_uri, version = register_champion(weights, store)
        print(
            f"registered {MODEL_NAME} version {version} as champion in {tracking_uri} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        port = args.port or free_port()
        cmd = server_command(args, port)
        results["server_command"] = " ".join(cmd)
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                cmd,
                cwd=store,
                env=server_env(tracking_uri),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        results["startup_s"] = wait_http(f"{base}/ping", proc, log, args.start_timeout, "the model server")
        print(f"server: {results['server_command']}\n  /ping answered after {results['startup_s']:.1f} s", flush=True)

        url = f"{base}/invocations"
        image, nbytes = jpeg_b64(args.size, args.quality)
        data, side = body(image), 4 * args.size
        status, answer, seconds = post(url, data, args.request_timeout)
        problem = check_answer(status, answer, side)
        if problem is None:
            problem = check_png(answer["predictions"][0]["image"], side)
        results["warmup"] = {"status": status, "seconds": seconds, "problem": problem}
        print(f"warm-up: 1 request, {seconds:.2f} s{'' if problem is None else ' -- ' + problem}", flush=True)

        print(
            f"load: {args.requests} requests from {args.clients} concurrent clients, {args.size}x{args.size} JPEG "
            f"(QF {args.quality}, {nbytes} bytes) -> {side}x{side} PNG ...",
            flush=True,
        )
        load = load_test(url, data, side, args.requests, args.clients, args.request_timeout)
        results["load"] = load
        print(
            f"  ok {load['ok']}/{load['requests']}; latency p50 {load['p50_s']:.3f} s, p95 {load['p95_s']:.3f} s, "
            f"max {load['max_s']:.3f} s (mean {load['mean_s']:.3f} s); {load['req_per_s']:.2f} req/s "
            f"(wall {load['wall_s']:.1f} s)",
            flush=True,
        )
        for err in load["errors"]:
            print(f"  failed: {err}", flush=True)

        print("bad requests (expected: HTTP 400 naming the row and the problem):", flush=True)
        results["bad_requests"] = bad_requests(url, args.request_timeout)
        for r in results["bad_requests"]:
            # MLflow wraps our message: "Failed to predict data '<the input>'. \nError: row 0: ..."
            said = r["message"].rpartition("Error: ")[2] or r["message"]
            print(
                f"  {r['request']:<19} -> {r['status']} {'ok' if r['ok'] else 'UNEXPECTED'}: "
                f"{' '.join(said.split())[:160]}",
                flush=True,
            )

        ping_ok = wait_alive(f"{base}/ping")
        status, answer, seconds = post(url, data, args.request_timeout)
        after_problem = check_answer(status, answer, side)
        results["alive_after"] = {
            "ping": ping_ok,
            "valid_request_status": status,
            "problem": after_problem,
            "process_running": proc.poll() is None,
        }
        alive = ping_ok and after_problem is None and proc.poll() is None
        print(
            f"after: /ping {'200' if ping_ok else 'no answer'}, a valid request {status} ({seconds:.2f} s) -> "
            f"server {'alive' if alive else 'NOT alive'}",
            flush=True,
        )
    except KeyboardInterrupt as exc:
        print(
            f"\ninterrupted ({str(exc) or 'Ctrl-C'}): stopping the server, removing the throwaway store",
            file=sys.stderr,
            flush=True,
        )
        return 130
    except RuntimeError as exc:  # the server did not start (wait_http stopped it)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not stop the clean-up
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            stop(proc)
        shutil.rmtree(store, ignore_errors=True)

    results["load_average_after"] = load_average()
    print(f"load average after: {' '.join(map(str, results['load_average_after']))}")
    results["ok"] = (
        results["warmup"]["problem"] is None
        and load["failed"] == 0
        and all(r["ok"] for r in results["bad_requests"])
        and alive
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results written to {args.json}")
    return 0 if results["ok"] else 1


def wait_alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
