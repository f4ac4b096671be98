"""Ray Train overhead: samples/s of the real `train` path (TorchTrainer + Ray Data shards)
against a plain PyTorch loop over the same shards, model, batch and thread count, in one run.

    .venv/bin/python benchmarks/bench_train.py [--preset cpu-small] [--iterations 200] [--batch 8] [--rounds 3]

Defaults are the embedded default's model, batch and crop. Goals (issue 6): Ray Train overhead
<= 10 %, time waiting for data <= 5 % of step time. Every run is timed over its second half
only (start-up and warm-up excluded). Plain and Ray runs alternate (plain, Ray, plain, Ray, ...,
plain; a fresh local Ray per Ray run); each Ray run is compared with the mean of the plain runs
on either side of it and the median of those ratios is reported, so that the speed changes of a
shared VM show up as spread instead of passing for overhead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cajnn.archs import build_model  # noqa: E402
from cajnn.config import DegradeConfig, ModelConfig, TrainConfig  # noqa: E402
from cajnn.data.image_io import save_rgb  # noqa: E402
from cajnn.data.sample import load_sample  # noqa: E402
from cajnn.data.shards import degrade_to_shard, load_patch_folder  # noqa: E402
from cajnn.training.augment import augment_batch  # noqa: E402
from cajnn.training.losses import build_loss  # noqa: E402
from cajnn.training.step import StepGuard, train_step  # noqa: E402


def make_shards(work: Path) -> Path:
    src, out = work / "hr", work / "shards"
    src.mkdir()
    out.mkdir()
    cfg = DegradeConfig(qualities_per_image=2)
    for name in ("astronaut", "rocket", "immunohistochemistry", "motorcycle_left"):
        save_rgb(load_sample(name), src / f"{name}.png")
        degrade_to_shard(str(src / f"{name}.png"), name, str(out), cfg)
    return out


def plain_loop(shards: Path, cfg: TrainConfig, threads: int) -> tuple[float, float, float]:
    """(samples/s, data-wait fraction, seconds per train step) over the second half of a plain
    in-memory loop."""
    torch.set_num_threads(threads)
    hr_all, lr_all = load_patch_folder(shards)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = build_model(cfg.model.preset)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    loss_fn, guard = build_loss("l1"), StepGuard()
    half = cfg.iterations // 2
    data_s = step_s = 0.0
    for it in range(cfg.iterations):
        if it == half:
            t0, data_s, step_s = time.perf_counter(), 0.0, 0.0
        t = time.perf_counter()
        idx = rng.integers(0, len(hr_all), cfg.batch_size)
        hr, lr = augment_batch(hr_all[idx], lr_all[idx], cfg.crop, 4, rng)
        t2 = time.perf_counter()
        train_step(net, opt, loss_fn, lr, hr, guard)
        data_s += t2 - t
        step_s += time.perf_counter() - t2
    elapsed = time.perf_counter() - t0
    steps = cfg.iterations - half
    return steps * cfg.batch_size / elapsed, data_s / (data_s + step_s), step_s / steps


def ray_train(shards: Path, cfg: TrainConfig) -> tuple[float, float, float]:
    """The same three numbers from the `train` stage's own code path (its last log window)."""
    import ray

    from cajnn.training.ray_trainer import fit

    # as pipelines/_common.init_ray starts a local Ray (dashboard included when installed)
    ray.init(num_cpus=os.cpu_count(), log_to_driver=False)
    try:
        m = fit(cfg, "bench", str(shards)).metrics
    finally:
        ray.shutdown()
    return float(m["samples_per_s"]), float(m["data_wait_fraction"]), float(m["step_time_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3, help="plain / Ray / plain rounds [%(default)s]")
    args = ap.parse_args()
    threads = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    rows, ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards = make_shards(work)
        half = args.iterations // 2
        plain_prev = None
        for r in range(args.rounds):
            cfg = TrainConfig(
                model=ModelConfig(preset=args.preset), iterations=args.iterations, batch_size=args.batch,
                crop=args.crop, lr=2e-4, log_every=half, checkpoint_every=args.iterations,
                storage_path=str(work / f"runs{r}"), use_gpu="false", val_sets=[],
            )
            plain_before = plain_prev or plain_loop(shards, cfg, threads)
            ray_row = ray_train(shards, cfg)
            plain_prev = plain_loop(shards, cfg, threads)
            # each Ray run against the mean of the plain runs just before and just after it
            ratios.append(ray_row[0] / ((plain_before[0] + plain_prev[0]) / 2))
            if r == 0:
                rows.append(("plain", r, *plain_before))
            rows += [("Ray Train + Ray Data", r, *ray_row), ("plain", r, *plain_prev)]
    print(f"model {args.preset}, batch {args.batch}, LR crop {args.crop}, {args.iterations} iterations per run, "
          f"{threads} torch threads; second half of each run timed; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{'path':<24}{'round':>6}{'samples/s':>11}{'data wait':>11}{'s/step':>9}")
    for name, r, sps, wait, step in rows:
        print(f"{name:<24}{r:>6}{sps:>11.2f}{wait:>11.1%}{step:>9.3f}")
    ratio = float(np.median(ratios))
    ray_wait = float(np.median([row[3] for row in rows if row[0] != "plain"]))
    plain_sps = [row[2] for row in rows if row[0] == "plain"]
    print(f"Ray Train / plain per round: {', '.join(f'{x:.3f}' for x in ratios)}; median {ratio:.3f}  "
          f"(overhead {1 - ratio:+.1%}; goal <= 10%)")
    print(f"spread of the plain loop over the run: {min(plain_sps):.1f}-{max(plain_sps):.1f} samples/s "
          f"({(max(plain_sps) - min(plain_sps)) / float(np.median(plain_sps)):.0%} of the median: the machine's noise)")
    print(f"Ray Train data wait (median) = {ray_wait:.1%} of step time (goal <= 5%)")


if __name__ == "__main__":
    main()
