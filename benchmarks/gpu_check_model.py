"""GPU timing of the paper network on Set5-sized inputs (the paper: 0.48 s for all of Set5 on
one Titan Xp). Run through ``benchmarks/gpu_check.sh`` on a GPU machine, or directly:

    PYTHONPATH=. python benchmarks/gpu_check_model.py                  # CUDA, paper network
    PYTHONPATH=. python benchmarks/gpu_check_model.py --device cpu --quick   # smoke test, ~10 s

Set5 HR images are 512x512, 288x288, 256x256, 280x280 and 344x228 (WxH); the LR inputs are a
quarter of that (128x128, 72x72, 64x64, 70x70, 86x57). For each precision (fp32 with TF32
convolutions, PyTorch's default on Ampere and later; strict fp32; bf16 autocast) it warms up on
every size, then times all five images ``--reps`` times (``torch.cuda.synchronize`` around each
image) and reports the median total, for the bare forward pass and for ``cajnn.enhance`` (which
adds the uint8 <-> float conversion and the copies to and from the GPU), plus the peak GPU
memory. Weights are random: the time does not depend on their values. Writes
``$OUT/gpu_check.json`` when ``OUT`` is set (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cajnn.archs import build_model  # noqa: E402
from cajnn.inference import enhance  # noqa: E402

SET5_HR = [(512, 512), (288, 288), (256, 256), (280, 280), (344, 228)]  # (W, H)
PAPER_SET5_SECONDS = 0.48


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CAJNN GPU timing on Set5-sized inputs")
    p.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu [%(default)s]")
    p.add_argument("--preset", default=None, help="model preset [paper; cpu-small with --quick]")
    p.add_argument("--reps", type=int, default=None, help="timed repeats [10; 1 with --quick]")
    p.add_argument("--quick", action="store_true", help="smoke test: cpu-small, 1/4-size inputs, 1 repeat")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch [1 with --quick on a CPU]")
    p.add_argument("--out", type=Path, default=None, help="JSON output path [$OUT/gpu_check.json]")
    return p.parse_args(argv)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _precisions(dev: torch.device) -> list[tuple[str, torch.dtype | None, bool]]:
    """(name, autocast dtype, allow TF32)."""
    if dev.type != "cuda":
        return [("fp32", None, False), ("bf16", torch.bfloat16, False)]
    return [("fp32 (TF32 convs)", None, True), ("fp32 strict", None, False), ("bf16", torch.bfloat16, True)]


def run(args: argparse.Namespace) -> dict:
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available (torch {torch.__version__})")
    if args.threads or (args.quick and dev.type == "cpu"):
        torch.set_num_threads(args.threads or 1)  # tiny CPU passes: extra threads only spin
    preset = args.preset or ("cpu-small" if args.quick else "paper")
    reps = args.reps or (1 if args.quick else 10)
    div = 16 if args.quick else 4
    lr_sizes = [(max(w // div, 8), max(h // div, 8)) for w, h in SET5_HR]
    torch.manual_seed(0)
    model = build_model(preset).eval().to(dev)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in lr_sizes]
    tensors = [
        torch.from_numpy(im)
        .to(dev)
        .permute(2, 0, 1)[None]
        .float()
        .div(255)
        .contiguous(memory_format=torch.channels_last)
        for im in images
    ]
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # sizes repeat: let cuDNN pick its fastest kernels
    results = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "preset": preset,
        "reps": reps,
        "lr_sizes_wh": lr_sizes,
        "paper_set5_seconds_titan_xp": PAPER_SET5_SECONDS,
        "precisions": [],
    }
    for name, amp, tf32 in _precisions(dev):
        if amp is torch.bfloat16 and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            results["precisions"].append({"precision": name, "skipped": "no bf16 on this GPU"})
            continue
        if dev.type == "cuda":
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        ctx = (
            (lambda amp=amp: torch.autocast(dev.type, dtype=amp))
            if amp
            else (lambda: torch.autocast(dev.type, enabled=False))
        )
        per_image: list[list[float]] = [[] for _ in tensors]
        with torch.inference_mode():
            for _ in range(2):  # warm-up: cuDNN autotuning, allocator, lazy init
                for x in tensors:
                    with ctx():
                        model(x)
            _sync(dev)
            for _ in range(reps):
                for i, x in enumerate(tensors):
                    _sync(dev)
                    t = time.perf_counter()
                    with ctx():
                        model(x)
                    _sync(dev)
                    per_image[i].append(time.perf_counter() - t)
        totals = [sum(ts[r] for ts in per_image) for r in range(reps)]
        dtype_name = "bf16" if amp is torch.bfloat16 else "fp32"
        enhance_totals = []
        for _ in range(max(1, reps // 2)):
            _sync(dev)
            t = time.perf_counter()
            for im in images:
                enhance(im, model, device=dev, dtype=dtype_name, tile=0)
            _sync(dev)
            enhance_totals.append(time.perf_counter() - t)
        row = {
            "precision": name,
            "set5_forward_s_median": statistics.median(totals),
            "set5_forward_s_min": min(totals),
            "per_image_ms_median": [round(statistics.median(ts) * 1e3, 3) for ts in per_image],
            "set5_enhance_s_median": statistics.median(enhance_totals),
            "speedup_vs_paper": PAPER_SET5_SECONDS / statistics.median(totals),
        }
        if dev.type == "cuda":
            row["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        results["precisions"].append(row)
    if dev.type == "cuda":
        torch.backends.cudnn.allow_tf32 = True
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    res = run(args)
    print(
        f"{res['preset']} network on {res['device']} (torch {res['torch']}, CUDA {res['cuda']}); "
        f"Set5-sized LR inputs {res['lr_sizes_wh']}; median of {res['reps']} runs; "
        f"paper: {PAPER_SET5_SECONDS} s for Set5 on a Titan Xp"
    )
    print(
        f"{'precision':<18} {'Set5 forward':>13} {'Set5 enhance()':>15} {'vs paper':>9} {'peak GPU mem':>13}"
        "  per image (ms)"
    )
    for r in res["precisions"]:
        if "skipped" in r:
            print(f"{r['precision']:<18} skipped: {r['skipped']}")
            continue
        mem = f"{r['peak_gpu_memory_mib']:.0f} MiB" if "peak_gpu_memory_mib" in r else "-"
        print(
            f"{r['precision']:<18} {r['set5_forward_s_median']:>11.4f} s {r['set5_enhance_s_median']:>13.4f} s "
            f"{r['speedup_vs_paper']:>8.1f}x {mem:>13}  {r['per_image_ms_median']}"
        )
    out = args.out or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
