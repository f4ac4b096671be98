"""GPU check of training at the paper's settings (issue 6): the full CAJNN, batch 36, LR 32 /
HR 128 crops, Adam 2e-4, L1, bf16 autocast and channels-last (the `train` stage's GPU
defaults). Reports iterations/s, peak GPU memory and what 1e6 iterations would take.

    bash benchmarks/gpu_check.sh --train          # on the lent GPU machine
    PYTHONPATH=. python benchmarks/gpu_check_train.py --device cpu --iterations 2 --batch 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from cajnn.archs import build_model
from cajnn.training.losses import build_loss
from cajnn.training.step import StepGuard, train_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=36)
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    net = build_model("paper").to(dev).to(memory_format=torch.channels_last)
    model = torch.compile(net) if args.compile else net
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    loss_fn, guard = build_loss("l1"), StepGuard()
    lr = torch.rand(args.batch, 3, args.crop, args.crop, device=dev).contiguous(memory_format=torch.channels_last)
    hr = torch.rand(args.batch, 3, 4 * args.crop, 4 * args.crop, device=dev)
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if args.dtype == "bf16" else None
    kwargs = {"autocast": autocast} if autocast else {}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        train_step(model, opt, loss_fn, lr, hr, guard, **kwargs)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.iterations):
        train_step(model, opt, loss_fn, lr, hr, guard, **kwargs)
    sync()
    elapsed = time.perf_counter() - t0
    its = args.iterations / elapsed
    result = {
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "dtype": args.dtype,
        "compile": args.compile,
        "batch": args.batch,
        "lr_crop": args.crop,
        "iterations_per_s": round(its, 3),
        "samples_per_s": round(its * args.batch, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if cuda else None,
        "hours_for_1e6_iterations": round(1e6 / its / 3600, 1),
    }
    print(json.dumps(result, indent=2))
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], f"gpu_check_train_{args.dtype}.json"), "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
