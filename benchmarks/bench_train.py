"""Ray Train overhead: samples/s of the real `train` path (TorchTrainer + Ray Data shards)
against a plain PyTorch loop over the same shards, model, batch and thread count, in one run.

    .venv/bin/python benchmarks/bench_train.py [--preset cpu-small] [--iterations 60] [--batch 16]

Goals (issue 6): Ray Train overhead <= 10 %, time waiting for data <= 5 % of step time.
Both paths are timed over their second half only (start-up and warm-up excluded).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cajnn.archs import build_model  # noqa: E402
from cajnn.config import DegradeConfig, ModelConfig, TrainConfig  # noqa: E402
from cajnn.data.image_io import save_rgb  # noqa: E402
from cajnn.data.sample import load_sample  # noqa: E402
from cajnn.data.shards import decode_patches, degrade_to_shard  # noqa: E402
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


def plain_loop(shards: Path, cfg: TrainConfig, threads: int) -> tuple[float, float]:
    """(samples/s over the second half, data-wait fraction) of a plain in-memory loop."""
    torch.set_num_threads(threads)
    table = pq.read_table(sorted(shards.glob("*.parquet"))).to_pydict()
    batch_all = {k: np.array(v, dtype=object) if k in ("hr", "lr", "source") else np.array(v) for k, v in table.items()}
    hr_all, lr_all = decode_patches(batch_all)
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
    return (cfg.iterations - half) * cfg.batch_size / elapsed, data_s / (data_s + step_s)


def ray_train(shards: Path, cfg: TrainConfig, work: Path) -> tuple[float, float]:
    import ray

    from cajnn.training.ray_trainer import fit

    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, log_to_driver=False)
    try:
        result = fit(cfg, "bench", str(shards))
    finally:
        ray.shutdown()
    return float(result.metrics["samples_per_s"]), float(result.metrics["data_wait_fraction"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=32)
    args = ap.parse_args()
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shards = make_shards(work)
        half = args.iterations // 2
        cfg = TrainConfig(
            model=ModelConfig(preset=args.preset), iterations=args.iterations, batch_size=args.batch,
            crop=args.crop, lr=2e-4, log_every=half, checkpoint_every=args.iterations,
            storage_path=str(work / "runs"), use_gpu="false", val_sets=[],
        )
        plain_sps, plain_wait = plain_loop(shards, cfg, threads)
        ray_sps, ray_wait = ray_train(shards, cfg, work)
    overhead = 1.0 - ray_sps / plain_sps
    print(f"model {args.preset}, batch {args.batch}, LR crop {args.crop}, {args.iterations} iterations, "
          f"{threads} torch threads; second half of each run timed")
    print(f"{'path':<28}{'samples/s':>12}{'data wait':>12}")
    print(f"{'plain PyTorch loop':<28}{plain_sps:>12.2f}{plain_wait:>11.1%}")
    print(f"{'Ray Train + Ray Data':<28}{ray_sps:>12.2f}{ray_wait:>11.1%}")
    print(f"Ray Train / plain = {ray_sps / plain_sps:.3f}  (overhead {overhead:+.1%}; goal <= 10%)")
    print(f"Ray Train data wait = {ray_wait:.1%} of step time (goal <= 5%)")


if __name__ == "__main__":
    main()
