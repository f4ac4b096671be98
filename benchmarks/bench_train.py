"""Ray Train overhead: samples/s of the real `train` path (TorchTrainer + the Ray adapter, the
small patch set handed to the worker through the object store) against the same
`cajnn.training.trainer.Trainer` driven by a plain loop without Ray, over the same shards,
model, batch and thread count, in one run.

    .venv/bin/python benchmarks/bench_train.py [--preset P] [--iterations 200] [--batch B] [--crop C] [--rounds 3]

Defaults are the embedded default's model, batch and crop (read from params.yaml). Goals
(issue 12): Ray Train overhead <= 5 %, time waiting for data <= 3 % of step time. Every run is timed over
its second half only (start-up and warm-up excluded). Plain and Ray runs alternate (plain, Ray, plain, Ray, ...,
plain; a fresh local Ray per Ray run); each Ray run is compared with the mean of the plain runs
on either side of it and the median of those ratios is reported, so that the speed changes of a
shared VM show up as spread instead of passing for overhead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cajnn.config import DegradeConfig, ModelConfig, RayConfig, TrainConfig, load_params  # noqa: E402
from cajnn.data.image_io import save_rgb  # noqa: E402
from cajnn.data.sample import load_sample  # noqa: E402
from cajnn.data.shards import degrade_to_shard, load_patch_set  # noqa: E402
from cajnn.training.trainer import Trainer, in_memory_batches, run  # noqa: E402


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
    """(samples/s, data-wait fraction, seconds per train step) over the second half of the
    Ray-free loop: the same `Trainer` the Ray Train workers run, fed from memory."""
    torch.set_num_threads(threads)
    patches = load_patch_set(shards)
    trainer = Trainer(cfg)
    trainer.prepare()
    seen: list[dict] = []
    run(trainer, in_memory_batches(trainer, patches), lambda t, m, ckpt: m and seen.append(m))
    m = seen[-1]
    return float(m["samples_per_s"]), float(m["data_wait_fraction"]), float(m["step_time_s"])


def ray_train(shards: Path, cfg: TrainConfig) -> tuple[float, float, float]:
    """The same three numbers from the `train` stage's own code path (its last log window)."""
    import ray

    from cajnn.training.ray_trainer import fit
    from pipelines._common import init_ray

    init_ray(RayConfig(num_cpus=os.cpu_count()))  # as the train stage starts it
    try:
        m = fit(cfg, "bench", str(shards), progress=False).metrics
    finally:
        ray.shutdown()
    return float(m["samples_per_s"]), float(m["data_wait_fraction"]), float(m["step_time_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = load_params(ROOT / "params.yaml").train
    ap.add_argument("--preset", default=default.model.preset)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--batch", type=int, default=default.batch_size)
    ap.add_argument("--crop", type=int, default=default.crop)
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
                model=ModelConfig(preset=args.preset),
                iterations=args.iterations,
                batch_size=args.batch,
                crop=args.crop,
                lr=2e-4,
                log_every=half,
                checkpoint_every=args.iterations,
                storage_path=str(work / f"runs{r}"),
                use_gpu="false",
                val_sets=[],
            )
            plain_before = plain_prev or plain_loop(shards, cfg, threads)
            ray_row = ray_train(shards, cfg)
            plain_prev = plain_loop(shards, cfg, threads)
            # each Ray run against the mean of the plain runs just before and just after it
            ratios.append(ray_row[0] / ((plain_before[0] + plain_prev[0]) / 2))
            if r == 0:
                rows.append(("plain", r, *plain_before))
            rows += [("Ray Train", r, *ray_row), ("plain", r, *plain_prev)]
    print(
        f"model {args.preset}, batch {args.batch}, LR crop {args.crop}, {args.iterations} iterations per run, "
        f"{threads} torch threads; second half of each run timed; "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"{'path':<24}{'round':>6}{'samples/s':>11}{'data wait':>11}{'s/step':>9}")
    for name, r, sps, wait, step in rows:
        print(f"{name:<24}{r:>6}{sps:>11.2f}{wait:>11.1%}{step:>9.3f}")
    ratio = float(np.median(ratios))
    ray_wait = float(np.median([row[3] for row in rows if row[0] != "plain"]))
    plain_sps = [row[2] for row in rows if row[0] == "plain"]
    print(
        f"Ray Train / plain per round: {', '.join(f'{x:.3f}' for x in ratios)}; median {ratio:.3f}  "
        f"(overhead {1 - ratio:+.1%}; goal <= 5%)"
    )
    print(
        f"spread of the plain loop over the run: {min(plain_sps):.1f}-{max(plain_sps):.1f} samples/s "
        f"({(max(plain_sps) - min(plain_sps)) / float(np.median(plain_sps)):.0%} of the median: the machine's noise)"
    )
    print(f"Ray Train data wait (median) = {ray_wait:.1%} of step time (goal <= 3%)")


if __name__ == "__main__":
    main()
