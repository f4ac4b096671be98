"""CPU speed and memory of the CAJNN network (issue 3).

    .venv/bin/python benchmarks/bench_model.py               # ~4-6 min on 2 cores, most of it end to end
    .venv/bin/python benchmarks/bench_model.py --skip-memory --size 48   # ~30 s

For each preset (``paper``, ``cpu-small``), thread count and memory layout (channels-last vs
contiguous NCHW) it times forward passes on a ``--size`` x ``--size`` LR input and prints:

* seconds per LR megapixel,
* achieved GFLOP/s: FLOPs of the convolutions (counted analytically by forward hooks on every
  ``nn.Conv2d``: 2 x multiply-accumulates, biases and element-wise ops not counted) divided by the
  wall time of the whole forward pass,
* that rate as a fraction of a dense 3x3 convolution 64 -> 64 (same dtype, threads, layout and
  spatial size) timed in the same run, interleaved with the network so that both see the same
  machine load (the minimum of the repeats is kept for each),
* bf16 autocast time / fp32 time (when the CPU has native bf16),
* per-pixel throughput of the paper network against the window size a tile gives it,
* peak resident memory (and time) of ``cajnn.enhance`` turning a 1000x750 input into 4000x3000
  with the paper network and automatic tiling, measured in a fresh subprocess (ru_maxrss).

Weights are random (the speed and memory of a forward pass do not depend on their values).
OMP_WAIT_POLICY is set to PASSIVE unless ``--omp-wait-policy`` says otherwise: on a shared
machine, OpenMP threads that spin while waiting lose their core to other processes and made
2-thread runs several times slower in our measurements (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--presets", default="paper,cpu-small", help="comma-separated model presets [%(default)s]")
    p.add_argument("--size", type=int, default=64, help="LR side of the timed input (pixels) [%(default)s]")
    p.add_argument("--threads", default="", help="comma-separated torch thread counts [1 and all cores]")
    p.add_argument("--reps", type=int, default=3, help="timed repeats per configuration (min is kept) [%(default)s]")
    p.add_argument(
        "--windows", default="32,64,128", help="window sizes for the paper tile-size table; '' to skip [%(default)s]"
    )
    p.add_argument("--memory-size", default="1000x750", help="WxH of the end-to-end memory run [%(default)s]")
    p.add_argument("--skip-memory", action="store_true", help="skip the end-to-end memory run")
    p.add_argument("--skip-bf16", action="store_true", help="skip the bf16 measurements")
    p.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        choices=["PASSIVE", "ACTIVE", "default"],
        help="OMP_WAIT_POLICY for this process and the memory subprocess [%(default)s]",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = _parse_args()
    if ARGS.omp_wait_policy != "default":  # must precede torch's first OpenMP region
        os.environ.setdefault("OMP_WAIT_POLICY", ARGS.omp_wait_policy)
else:  # imported (tests): defaults, environment untouched
    ARGS = _parse_args([])
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from cajnn.archs import build_model  # noqa: E402

# --------------------------------------------------------------------------- FLOPs


def conv_flops_per_pixel(model: nn.Module, size: int = 16) -> float:
    """FLOPs of all ``nn.Conv2d`` layers per LR input pixel (2 x MACs), counted with forward
    hooks on a meta-device copy (no memory, no compute)."""
    with torch.device("meta"):
        meta = type(model)(**model.config) if hasattr(model, "config") else model
    total = 0

    def hook(mod: nn.Conv2d, _inp, out) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        total += 2 * out.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            meta.eval()(torch.empty(1, getattr(meta, "in_ch", 3), size, size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total / (size * size)


# --------------------------------------------------------------------------- timing helpers


def _fmt(layout: str) -> torch.memory_format:
    return torch.channels_last if layout == "channels_last" else torch.contiguous_format


def _clock(fn, inner: int = 1) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call of ``fn``, over ``inner`` calls."""
    w, c = time.perf_counter(), time.process_time()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - w) / inner, (time.process_time() - c) / inner


def _paired(net_fn, conv_fn, reps: int, conv_inner: int) -> dict:
    """Time the network and the reference conv alternately, so both see the same machine load;
    keep the minimum of each clock (the run least disturbed by other processes)."""
    net_fn(), conv_fn()  # warm-up: oneDNN primitive creation, allocator
    best = {"net_wall": float("inf"), "net_cpu": float("inf"), "conv_wall": float("inf"), "conv_cpu": float("inf")}
    for _ in range(reps):
        for name, fn, inner in (("net", net_fn, 1), ("conv", conv_fn, conv_inner)):
            wall, cpu = _clock(fn, inner)
            best[f"{name}_wall"] = min(best[f"{name}_wall"], wall)
            best[f"{name}_cpu"] = min(best[f"{name}_cpu"], cpu)
    return best


def _autocast(dtype: str):
    import contextlib

    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def measure(model: nn.Module, size: int, threads: int, layout: str, dtype: str, reps: int) -> dict:
    """Network and dense-conv timings at one setting. Besides wall time, the process CPU time
    (all threads) is kept: on a machine shared with other processes it measures the work our
    threads did while they had a core, i.e. per-core efficiency independent of the load."""
    torch.set_num_threads(threads)
    fmt = _fmt(layout)
    x = torch.rand(1, 3, size, size).contiguous(memory_format=fmt)
    conv = nn.Conv2d(64, 64, 3, padding=1).eval()
    xc = torch.rand(1, 64, size, size).contiguous(memory_format=fmt)
    if dtype == "bf16":  # the reference conv runs natively in bf16 (what autocast gives a conv)
        conv, xc = conv.to(torch.bfloat16), xc.to(torch.bfloat16)

    def net_fn():
        with _autocast(dtype):
            model(x)

    with torch.inference_mode():
        r = _paired(net_fn, lambda: conv(xc), reps, conv_inner=5)
    conv_flops = 2 * 64 * 64 * 9 * size * size
    r["conv_gflops"] = conv_flops / r["conv_wall"] / 1e9
    r["conv_gflops_cpu"] = conv_flops / r["conv_cpu"] / 1e9
    return r


# --------------------------------------------------------------------------- memory run


def memory_child(spec: str) -> None:
    """Runs in a fresh process: enhance a WxH image with the paper network, print JSON."""
    import resource

    from cajnn.inference import enhance, plan_tiles

    w, h, threads = (int(v) for v in spec.split(","))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("paper").eval()
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    img = np.clip(
        np.stack([xx * 255.0 / w, yy * 255.0 / h, 128 + 60 * np.sin(xx / 9.0) * np.cos(yy / 7.0)], -1)
        + rng.normal(0, 8, (h, w, 3)),
        0,
        255,
    ).astype(np.uint8)
    import psutil

    base = psutil.Process().memory_info().rss  # torch, the model and the input, before enhance
    plan = plan_tiles(h, w, model)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    out = enhance(img, model, device="cpu")
    elapsed = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = ru1.ru_maxrss * 1024
    print(
        json.dumps(
            {
                "input": [w, h],
                "output": [out.shape[1], out.shape[0]],
                "seconds": elapsed,
                "cpu_user": ru1.ru_utime - ru0.ru_utime,
                "cpu_sys": ru1.ru_stime - ru0.ru_stime,
                "peak_rss": peak,
                "rss_before": base,
                "tile": [plan.tile_w, plan.tile_h],
                "n_tiles": plan.n_tiles,
                "estimated": plan.estimated_bytes,
                "budget": plan.budget_bytes,
            }
        )
    )


def memory_run(spec: str, threads: int) -> dict:
    w, h = (int(v) for v in spec.lower().split("x"))
    res = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--_memory-child",
            f"{w},{h},{threads}",
            "--omp-wait-policy",
            ARGS.omp_wait_policy,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if res.returncode != 0:
        raise RuntimeError(f"memory run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    return "\n".join(out)


def _row(preset: str, dtype: str, layout: str, threads: int, fpp: float, px: int, r: dict) -> dict:
    flops = fpp * px
    return {
        "preset": preset,
        "dtype": dtype,
        "layout": layout,
        "threads": threads,
        "flops_per_px": fpp,
        "t_pass": r["net_wall"],
        "cpu_pass": r["net_cpu"],
        "s_per_mp": r["net_wall"] / px * 1e6,
        "gflops": flops / r["net_wall"] / 1e9,
        "conv_gflops": r["conv_gflops"],
        "fraction": flops / r["net_wall"] / 1e9 / r["conv_gflops"],
        "gflops_cpu": flops / r["net_cpu"] / 1e9,
        "conv_gflops_cpu": r["conv_gflops_cpu"],
        "fraction_cpu": flops / r["net_cpu"] / 1e9 / r["conv_gflops_cpu"],
    }


def main() -> int:
    from cajnn.inference import cpu_supports_bf16

    if ARGS.memory_child:
        memory_child(ARGS.memory_child)
        return 0
    t_start = time.perf_counter()
    cores = os.cpu_count() or 1
    threads = [int(t) for t in ARGS.threads.split(",") if t] or sorted({1, cores})
    bf16_ok = cpu_supports_bf16()
    load0 = os.getloadavg()
    print(
        f"CAJNN CPU benchmark: {_cpu_name()}, {cores} cores; torch {torch.__version__}, "
        f"capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {'yes' if bf16_ok else 'no'}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}"
    )
    print(
        f"load average before: {load0[0]:.2f} (1 min) on {cores} cores"
        + (
            "  <- other processes are using the CPU: wall times are contended; the CPU-time columns are not"
            if load0[0] > 0.5
            else ""
        )
    )
    results: dict = {
        "cpu": _cpu_name(),
        "cores": cores,
        "torch": torch.__version__,
        "size": ARGS.size,
        "native_bf16": bf16_ok,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "rows": [],
        "load_before": load0[0],
    }
    rows: list[dict] = []
    best: dict[str, dict] = {}
    px = ARGS.size * ARGS.size
    torch.manual_seed(0)
    for preset in [p for p in ARGS.presets.split(",") if p]:
        model = build_model(preset).eval()
        fpp = conv_flops_per_pixel(model)
        for thr in threads:
            for layout in ("channels_last", "contiguous"):
                row = _row(
                    preset, "fp32", layout, thr, fpp, px, measure(model, ARGS.size, thr, layout, "fp32", ARGS.reps)
                )
                rows.append(row)
                if preset not in best or row["s_per_mp"] < best[preset]["s_per_mp"]:
                    best[preset] = row
        if bf16_ok and not ARGS.skip_bf16:
            b = best[preset]
            r16 = measure(model, ARGS.size, b["threads"], b["layout"], "bf16", ARGS.reps)
            # fp32 again right after, same threads and layout: the ratio compares like with like
            r32 = measure(model, ARGS.size, b["threads"], b["layout"], "fp32", ARGS.reps)
            row = _row(preset, "bf16", b["layout"], b["threads"], fpp, px, r16)
            row["bf16_over_fp32"] = r16["net_wall"] / r32["net_wall"]
            row["bf16_over_fp32_cpu"] = r16["net_cpu"] / r32["net_cpu"]
            rows.append(row)
    results["rows"] = rows

    print(
        f"\nForward pass on a {ARGS.size}x{ARGS.size} LR input (x4 output), min of {ARGS.reps} runs. Reference "
        "'conv': a dense 3x3 conv 64->64 at the same size, dtype, threads and layout, timed interleaved with "
        "the network.\nGFLOP/s = conv FLOPs (2 x MACs) / wall time; 'per CPU-s' columns divide by the process "
        "CPU time instead (per-core rate, insensitive to other processes); fraction = network / conv."
    )
    print(
        _table(
            [
                "preset",
                "dtype",
                "layout",
                "thr",
                "MFLOP/px",
                "s/LR MP",
                "GFLOP/s",
                "conv",
                "fraction",
                "GFLOP/CPU-s",
                "conv",
                "fraction",
                "bf16/fp32",
            ],
            [
                [
                    r["preset"],
                    r["dtype"],
                    r["layout"],
                    str(r["threads"]),
                    f"{r['flops_per_px'] / 1e6:.2f}",
                    f"{r['s_per_mp']:.1f}",
                    f"{r['gflops']:.1f}",
                    f"{r['conv_gflops']:.1f}",
                    f"{r['fraction']:.2f}",
                    f"{r['gflops_cpu']:.1f}",
                    f"{r['conv_gflops_cpu']:.1f}",
                    f"{r['fraction_cpu']:.2f}",
                    f"{r['bf16_over_fp32']:.2f} ({r['bf16_over_fp32_cpu']:.2f} CPU)" if "bf16_over_fp32" in r else "",
                ]
                for r in rows
            ],
        )
    )
    if not bf16_ok:
        print("bf16: not measured: this CPU has no native bf16 (no avx512_bf16/amx_bf16 flag)")
    for preset, b in best.items():
        print(
            f"fastest fp32 {preset}: {b['threads']} thread(s), {b['layout']}: {b['s_per_mp']:.1f} s per LR "
            f"megapixel, {b['gflops']:.1f} GFLOP/s = {b['fraction']:.2f} of the dense conv "
            f"({b['fraction_cpu']:.2f} by CPU time)"
        )

    windows = [int(v) for v in ARGS.windows.split(",") if v]
    if windows and "paper" in best:
        b = best["paper"]
        model = build_model("paper").eval()
        fpp = conv_flops_per_pixel(model)
        wrows = []
        for win in windows:
            r = _row(
                "paper",
                "fp32",
                b["layout"],
                b["threads"],
                fpp,
                win * win,
                measure(model, win, b["threads"], b["layout"], "fp32", max(1, ARGS.reps - 1)),
            )
            r.update(window=win, tile=win - 32, useful=((win - 32) / win) ** 2 if win > 32 else 0.0)
            wrows.append(r)
        results["windows"] = wrows
        print(
            f"\nPaper network, fp32, {b['threads']} thread(s), {b['layout']}: rate against the window a tile "
            "gives each pass (tile T + default overlap 16 per side = (T+32)^2 window; "
            "useful = T^2 / (T+32)^2 of the work is kept)"
        )
        print(
            _table(
                ["window", "s/window MP", "GFLOP/s", "fraction", "GFLOP/CPU-s", "fraction (CPU)", "tile T", "useful"],
                [
                    [
                        str(r["window"]),
                        f"{r['s_per_mp']:.1f}",
                        f"{r['gflops']:.1f}",
                        f"{r['fraction']:.2f}",
                        f"{r['gflops_cpu']:.1f}",
                        f"{r['fraction_cpu']:.2f}",
                        str(r["tile"]) if r["tile"] > 0 else "-",
                        f"{r['useful']:.2f}",
                    ]
                    for r in wrows
                ],
            )
        )

    if not ARGS.skip_memory:
        thr = best.get("paper", {}).get("threads", threads[-1])
        m = memory_run(ARGS.memory_size, thr)
        results["memory"] = m
        gb = 1e9
        mp = m["input"][0] * m["input"][1] / 1e6
        print(
            f"\nEnd to end: cajnn.enhance, paper network, {m['input'][0]}x{m['input'][1]} -> "
            f"{m['output'][0]}x{m['output'][1]}, CPU fp32, {thr} thread(s), automatic tiling "
            f"({m['n_tiles']} tiles of {m['tile'][0]}x{m['tile'][1]} LR px + 16 px overlap), fresh process"
        )
        print(
            _table(
                [
                    "peak RSS",
                    "RSS before",
                    "enhance's share",
                    "planned",
                    "budget",
                    "goal",
                    "wall",
                    "CPU user+sys",
                    "s/LR MP",
                ],
                [
                    [
                        f"{m['peak_rss'] / gb:.2f} GB",
                        f"{m['rss_before'] / gb:.2f} GB",
                        f"{(m['peak_rss'] - m['rss_before']) / gb:.2f} GB",
                        f"{m['estimated'] / gb:.2f} GB",
                        f"{m['budget'] / gb:.2f} GB",
                        "< 4 GB " + ("met" if m["peak_rss"] < 4e9 else "MISSED"),
                        f"{m['seconds']:.0f} s",
                        f"{m['cpu_user']:.0f}+{m['cpu_sys']:.0f} s",
                        f"{m['seconds'] / mp:.0f}",
                    ]
                ],
            )
        )
    load1 = os.getloadavg()
    results["load_after"] = load1[0]
    print(f"\nload average after: {load1[0]:.2f}; total benchmark time {time.perf_counter() - t_start:.0f} s")
    if ARGS.json:
        ARGS.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
