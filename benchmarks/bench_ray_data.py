"""Ray Data settings for a streamed training set (`train.feed: stream`), measured side by side.

    python benchmarks/bench_ray_data.py            # ~3-5 minutes on 2 cores
    python benchmarks/bench_ray_data.py --quick    # one round, for a smoke test

What is timed is the training input path of a large run without the model: the patch shards
read as `cajnn.training.ray_trainer.train_dataset` reads them (`local://` Parquet, one read task
per file), split for one Ray Train worker (`streaming_split`, as Ray Train's DataConfig does),
and iterated as `_streamed_batches` iterates them (batches of 16, local shuffle buffer 256,
decoded to float tensors), two epochs, in a fresh Ray per CPU count (`ray.init(num_cpus=N)`,
N = 1 and 2). Settings compared, each against the one the code uses:

- `preserve_order` True (the code: the same seed sees the same batches) vs False;
- read blocks: Ray's default split vs `override_num_blocks` = 4 x the files;
- `target_max_block_size` 128 MiB (Ray's default) vs 8 MiB.

Data: the embedded sample photos degraded as `make run` does (7 shards, ~1,460 patch pairs,
~15 MB), copied 4 times over so that there are 28 shards, as a larger run has many. Rounds
alternate the settings; the median of the rounds counts. The numbers are patch pairs per second
reaching the training loop; the model's own step (0.1-0.3 s per batch of 16 on these 2 cores,
benchmarks/bench_train.py) is what they must keep ahead of.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> (preserve_order, blocks per file, target_max_block_size MiB)
    "as used (ordered)": (True, None, None),
    "unordered": (False, None, None),
    "4 blocks per file": (True, 4, None),
    "8 MiB blocks": (True, None, 8),
}

CHILD = textwrap.dedent(
    """
    import json, os, statistics, sys, time
    sys.path.insert(0, sys.argv[1])
    import ray, ray.data
    from ray.data import ExecutionOptions
    from cajnn.config import RayConfig
    from cajnn.data.shards import decode_patches
    from cajnn.training.ray_trainer import train_dataset
    from pipelines._common import init_ray

    num_cpus, shard_dir, settings, rounds = int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])
    init_ray(RayConfig(address="local", num_cpus=num_cpus))
    shards = sorted(os.path.join(shard_dir, f) for f in os.listdir(shard_dir) if f.endswith(".parquet"))
    ctx = ray.data.DataContext.get_current()
    default_block = ctx.target_max_block_size

    def one(preserve, blocks, block_mib):
        ctx.target_max_block_size = block_mib * 2**20 if block_mib else default_block
        ds = train_dataset(shards)  # sets preserve_order=True and the V1 file datasource
        if blocks:
            ds = ray.data.read_parquet([f"local://{s}" for s in shards], override_num_blocks=blocks * len(shards))
        ctx.execution_options.preserve_order = preserve
        split = ds.streaming_split(1, equal=True)[0]
        rows, t0, first = 0, time.perf_counter(), None
        for epoch in range(2):
            for batch in split.iter_batches(batch_size=16, batch_format="numpy", drop_last=True,
                                            local_shuffle_buffer_size=256, local_shuffle_seed=epoch,
                                            prefetch_batches=2):
                decode_patches(batch)
                rows += 16
                first = first or time.perf_counter() - t0
        return rows / (time.perf_counter() - t0), first

    one(True, None, None)  # warm-up: workers started, modules imported
    out = {name: {"rate": [], "first": []} for name in settings}
    for _ in range(rounds):
        for name, (preserve, blocks, block_mib) in settings.items():
            rate, first = one(preserve, blocks, block_mib)
            out[name]["rate"].append(rate)
            out[name]["first"].append(first)
    ray.shutdown()
    print("RESULT " + json.dumps(out))
    """
)


def make_shards(root: Path, copies: int) -> tuple[Path, int]:
    """The embedded default's patch shards, `copies` times over (distinct file names)."""
    sys.path.insert(0, str(REPO))
    import ray

    from cajnn.config import DegradeConfig, RayConfig, from_dict, load_params, to_dict
    from cajnn.data.image_io import save_rgb
    from cajnn.data.sample import load_sample
    from pipelines._common import init_ray
    from pipelines.degrade import degrade_all, list_items

    src = root / "photos"
    src.mkdir()
    params = load_params(REPO / "params.yaml")
    for name in (
        "astronaut",
        "hubble_deep_field",
        "immunohistochemistry",
        "motorcycle_left",
        "motorcycle_right",
        "retina",
        "rocket",
    ):
        save_rgb(load_sample(name), src / f"{name}.png")
    cfg = from_dict(DegradeConfig, {**to_dict(params.degrade), "inputs": ["photos"]})
    one = root / "one"
    one.mkdir()
    init_ray(RayConfig(address="local", num_cpus=2))
    manifest = degrade_all(list_items(cfg.inputs, root), one, cfg)
    ray.shutdown()
    shards = root / "shards"
    shards.mkdir()
    for c in range(copies):
        for f in one.glob("*.parquet"):
            shutil.copy(f, shards / f"c{c}-{f.name}")
    return shards, manifest["patches"] * copies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one round (smoke test)")
    args = ap.parse_args()
    rounds = 1 if args.quick else 3
    print(f"cajnn bench_ray_data  (cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start)")
    with tempfile.TemporaryDirectory(prefix="bench_ray_data-") as tmp:
        shards, pairs = make_shards(Path(tmp), copies=4)
        n_files = len(list(shards.glob("*.parquet")))
        size = sum(f.stat().st_size for f in shards.glob("*.parquet")) / 1e6
        print(
            f"data: {n_files} shards, {pairs} patch pairs, {size:.0f} MB; 2 epochs per measurement, "
            f"{rounds} rounds, median"
        )
        results = {}
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        for cpus in (1, 2):
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(REPO), str(cpus), str(shards), json.dumps(SETTINGS), str(rounds)],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                raise RuntimeError(f"{cpus} CPU run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            results[cpus] = json.loads(line[len("RESULT ") :])
    base = {c: statistics.median(results[c]["as used (ordered)"]["rate"]) for c in (1, 2)}
    print(
        f"\n{'setting':<20} {'1 CPU pairs/s':>14} {'ratio':>6} {'2 CPUs pairs/s':>15} {'ratio':>6} "
        f"{'first batch 1/2 CPU':>20}"
    )
    for name in SETTINGS:
        r = {c: statistics.median(results[c][name]["rate"]) for c in (1, 2)}
        f = {c: statistics.median(results[c][name]["first"]) for c in (1, 2)}
        print(
            f"{name:<20} {r[1]:>14.0f} {r[1] / base[1]:>6.2f} {r[2]:>15.0f} {r[2] / base[2]:>6.2f} "
            f"{f[1]:>9.2f} s / {f[2]:.2f} s"
        )
    print(f"\n2 CPUs / 1 CPU, as used: {base[2] / base[1]:.2f}; ratios are against 'as used' at the same CPU count")


if __name__ == "__main__":
    main()
