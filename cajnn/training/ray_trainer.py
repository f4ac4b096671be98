"""Training on Ray Train (V2 `TorchTrainer`) from the `degrade` shards.

A thin adapter around the Ray-free :class:`cajnn.training.trainer.Trainer`: each worker builds
one, feeds it batches, and reports metrics and checkpoints through `ray.train.report`. A small
patch set is decoded once on the driver and handed to every worker through Ray's object store
(each samples all of it with its own rank's RNG); a large one is streamed by Ray Data, each
worker reading its split epoch by epoch. Starting the same run (name + storage_path) again
resumes from its latest checkpoint; a failed worker is restarted from it (`FailureConfig`).
MLflow logging happens on rank 0 through an `MlflowClient` attached to a run that the driver
created, the machine's system metrics too; the driver draws the progress bar
(`cajnn.training.progress`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from cajnn.config import ConfigError, TrainConfig, from_dict, to_dict
from cajnn.data.shards import PatchSet, decode_patches, load_patch_set, stable_seed
from cajnn.training.progress import Poster, progress_bar
from cajnn.training.trainer import Batch, Trainer, in_memory_batches, run
from cajnn.training.validation import ValPair
from cajnn.weights import load_weights

VAL_METRIC = "val_psnr_y"


@dataclass(frozen=True)
class TrainResult:
    """What `fit` leaves behind: the checkpoint to export (a `ray.train.Checkpoint`)."""

    checkpoint: Any
    iterations: int
    metrics: dict[str, Any]


class _MlflowLogger:
    """Rank 0's line to the driver's MLflow run (a no-op without one)."""

    def __init__(self, tracking_uri: str | None, run_id: str | None):
        self.run_id = run_id
        if run_id:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=tracking_uri)

    def metrics(self, values: dict[str, float], step: int) -> None:
        if not self.run_id:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def image(self, image: np.ndarray, step: int) -> None:
        if self.run_id and image is not None:
            self.client.log_image(self.run_id, image, key="val_sample", step=step)


def replica_spread(net: torch.nn.Module) -> float | None:
    """Max - min over the data-parallel workers of a float64 checksum of the parameters (0.0
    when the replicas agree); None without a process group (one worker)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    total = torch.stack([p.detach().double().sum() for p in net.parameters()]).sum().reshape(1).cpu()
    hi, lo = total.clone(), -total.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MAX)
    return float(hi.item() + lo.item())


class _Reporter:
    """The :func:`cajnn.training.trainer.run` callback of a Ray Train worker: MLflow metrics and
    the driver's progress bar at log points; at checkpoint points validation and the checkpoint
    (rank 0) and `ray.train.report` (every worker: it is a barrier)."""

    def __init__(self, rank: int, logger: _MlflowLogger, val_pairs: list[ValPair], poster: Poster):
        self.rank, self.logger, self.val_pairs, self.poster = rank, logger, val_pairs, poster

    def __call__(self, trainer: Trainer, metrics: dict[str, Any] | None, checkpoint_now: bool) -> None:
        import ray.train

        it = trainer.iteration
        metrics = dict(metrics or {"iteration": it})
        if len(metrics) > 1:
            self.logger.metrics({k: v for k, v in metrics.items() if k != "iteration"}, it)
            if self.rank == 0:  # goes to Ray's worker log; the driver shows the progress bar
                print(
                    f"[train] it {it}/{trainer.cfg.iterations} loss {metrics['loss']:.4f} "
                    f"lr {metrics['lr']:.2e} {metrics['samples_per_s']:.1f} samples/s, "
                    f"data wait {metrics['data_wait_fraction']:.1%}",
                    flush=True,
                )
            self.poster.post(force=True, iteration=it, loss=metrics["loss"])
        if not checkpoint_now:
            # No ray.train.report here: each one is a round trip to the Train controller
            # (measured ~0.3 s on 2 cores); metrics already went to MLflow and the progress bar.
            return
        spread = replica_spread(trainer.net)
        if spread is not None:
            metrics["replica_param_spread"] = spread
            self.logger.metrics({"replica_param_spread": spread}, it)
            if spread != 0.0:  # DDP all-reduces gradients: the replicas must stay identical
                raise RuntimeError(
                    f"data-parallel replicas differ at iteration {it} (parameter checksums "
                    f"spread {spread:g}); check that every worker runs the same code and torch"
                )
        if self.rank == 0 and self.val_pairs:
            self.poster.post(force=True, status="validating")
            val, sample = trainer.validate(self.val_pairs)
            metrics.update(val)
            self.logger.metrics(val, it)
            self.logger.image(sample, it)
            self.poster.post(force=True, val_psnr_y=val["val_psnr_y"], status="")
        with tempfile.TemporaryDirectory() as tmp:
            if self.rank == 0:
                trainer.save(tmp, metrics)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if self.rank == 0 else None)


def _streamed_batches(shard: Any, trainer: Trainer) -> Iterator[Batch]:
    """Epoch after epoch of Ray Data batches, locally shuffled (seeded by rank, epoch and
    iteration, so that a resumed run does not replay the first epoch's order)."""
    cfg = trainer.cfg
    epoch = 0
    while True:
        got_any = False
        for batch in shard.iter_batches(
            batch_size=cfg.batch_size,
            batch_format="numpy",
            drop_last=True,
            local_shuffle_buffer_size=max(4 * cfg.batch_size, 256),
            local_shuffle_seed=stable_seed(cfg.seed, "shuffle", trainer.rank, epoch, trainer.iteration) % 2**31,
            prefetch_batches=2,
        ):
            got_any = True
            yield decode_patches(batch)
        if not got_any:
            return
        epoch += 1


def cpu_worker_env(threads: int) -> dict[str, str]:
    """Environment of a CPU Ray Train worker process, set before it starts.

    Ray exports OMP_NUM_THREADS=<CPUs of the actor> (here 1) when it is unset; OpenMP sized for
    one thread stays slower even after `torch.set_num_threads` (the same loop in a Ray task:
    46.8 samples/s with Ray's 1, 51.9 with 2, 58.6 outside Ray; benchmarks/README.md), so the
    worker's OpenMP starts with the torch thread count.
    """
    return {"OMP_NUM_THREADS": str(threads)}


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs in each Ray Train worker: a :class:`Trainer` fed from the object store's patch set
    or from this worker's Ray Data shard."""
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = from_dict(TrainConfig, config["train"])
    if config.get("torch_threads"):
        # Ray sets OMP_NUM_THREADS=1 in workers; on CPU give torch the cores we were sized for.
        torch.set_num_threads(int(config["torch_threads"]))
    rank = ray.train.get_context().get_world_rank()
    trainer = Trainer(cfg, ray.train.torch.get_device(), rank)
    poster = Poster(config.get("progress") if rank == 0 else None)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            trainer.restore(ckpt_dir)
        print(f"[train] resuming from checkpoint at iteration {trainer.iteration}", flush=True)
        poster.post(force=True, iteration=trainer.iteration, resumed_from=trainer.iteration)
    elif config.get("init_weights") is not None:  # the driver read the file: no shared disk needed
        trainer.warm_start(ray.get(config["init_weights"]))
    trainer.prepare(ray.train.torch.prepare_model)
    logger = _MlflowLogger(config.get("mlflow_tracking_uri"), config.get("mlflow_run_id") if rank == 0 else None)
    # Sampled here, not on the driver: this is the machine that trains (and holds the GPU),
    # which on a Ray cluster is not the driver's.
    from cajnn.tracking import system_metrics

    with system_metrics(logger.run_id, config.get("mlflow_tracking_uri")):
        if trainer.resumed_from:
            logger.metrics({"resumed_from_iteration": trainer.iteration}, trainer.iteration)
        report = _Reporter(rank, logger, config.get("val_pairs") or [], poster)
        if trainer.done:
            # Already finished (e.g. the DVC outputs were deleted): hand the final state back.
            report(trainer, None, checkpoint_now=True)
            return
        if config.get("patches") is not None:
            # The whole (small) set from the object store: zero-copy on the driver's node, sent
            # once to another node; every worker samples all of it with its own rank's RNG.
            poster.post(force=True, status="loading patches")
            patches: PatchSet = ray.get(config["patches"])
            poster.post(force=True, status="")
            batches = in_memory_batches(trainer, patches)
        else:
            batches = _streamed_batches(ray.train.get_dataset_shard("train"), trainer)
        # the bar moves every step (Poster sends at most twice a second), not only at log points
        run(trainer, batches, report, on_step=lambda t: poster.post(iteration=t.iteration))


def resolve_use_gpu(setting: str) -> bool:
    """`auto` -> use GPUs when the Ray cluster has any."""
    if setting == "auto":
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0
    return setting == "true"


def storage(cfg: TrainConfig) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray Train: a local folder, or an s3:// prefix
    (optionally on an S3-compatible endpoint such as MinIO). Credentials come from the
    standard AWS environment/profile chain, never from params.yaml."""
    if not cfg.storage_path.startswith("s3://"):
        return os.path.abspath(cfg.storage_path), None
    if not cfg.storage_endpoint_url:
        return cfg.storage_path, None
    import pyarrow.fs

    url = urlparse(cfg.storage_endpoint_url)
    fs = pyarrow.fs.S3FileSystem(endpoint_override=url.netloc or url.path, scheme=url.scheme or "https")
    return cfg.storage_path[len("s3://") :], fs


def check_cluster_stores(cfg: TrainConfig, tracking_uri: str, ray_address: str) -> str | None:
    """On a Ray cluster (`ray.address` other than `local`) the training workers write to the
    MLflow store and to `storage_path` themselves, from their own machines: an MLflow store in a
    file on the driver's disk (sqlite, file) cannot work there and is refused (ConfigError). A
    local `storage_path` works only on a disk every node mounts (NFS): returned as a note."""
    if ray_address == "local":
        return None
    if tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri:
        raise ConfigError(
            f"mlflow.tracking_uri {tracking_uri!r} is a file on this machine, but ray.address {ray_address!r} is a "
            "cluster whose training workers log to MLflow themselves: use a tracking server every node reaches "
            "(`mlflow.tracking_uri: http://HOST:5000` or MLFLOW_TRACKING_URI; infra/compose.yaml runs one)"
        )
    if not cfg.storage_path.startswith("s3://"):
        return (
            f"train.storage_path {cfg.storage_path!r} is a local folder: on a cluster every node must mount it "
            "at the same path (NFS), else use s3://"
        )
    return None


IN_MEMORY_LIMIT = 2 << 30  # decoded patch bytes below which workers hold the set in memory


def decoded_bytes(shards: list[str]) -> int:
    """Bytes the shards' patch pairs take decoded (from the Parquet footers and one row)."""
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(s).metadata.num_rows for s in shards)
    first = pq.ParquetFile(shards[0]).read_row_group(0, columns=["patch", "scale"]).slice(0, 1).to_pylist()
    if not first:
        return 0
    p, s = int(first[0]["patch"]), int(first[0]["scale"])
    return rows * 3 * p * p * (1 + s * s)


def train_dataset(shards: list[str]):
    """The patch shards as a (lazy) Ray Dataset, read in file order."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one training bar, not Ray Data's
    # Otherwise blocks come in the order their read tasks finish, and the same seed would see
    # other batches on each run: training must be reproducible on CPU.
    ctx.execution_options.preserve_order = True
    # `local://`: the read tasks run on the driver's node, where the shards are; the blocks reach
    # the workers through the object store. Ray Data 2.60's newer file datasource (V2) does not
    # keep its file listing and footer reads on that node, so a worker node without the
    # driver's disk fails with FileNotFoundError: the V1 path pins them.
    ctx.use_datasource_v2 = False
    with warnings.catch_warnings():  # Ray 2.60 plans to drop `local://` in 2027: then s3:// shards
        warnings.filterwarnings("ignore", message=".*local://.*deprecated")
        return ray.data.read_parquet([f"local://{os.path.abspath(s)}" for s in shards])


def fit(
    cfg: TrainConfig,
    run_name: str,
    data_dir: str,
    val_pairs: list[ValPair] | None = None,
    mlflow_tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
    max_failures: int = 2,
    progress: bool = True,
    task_resources: dict[str, float] | None = None,
) -> TrainResult:
    """Train with a `TorchTrainer` on the Parquet shards in `data_dir`, with a progress bar.

    Starting again with the same `run_name` and storage resumes from the latest checkpoint
    (Ray Train V2 has no `Trainer.restore`: this is how V2 resumes). Nothing the workers get
    is a path on the driver's disk: the patch set (or the shards' stream), the warm-start
    weights and the validation pairs travel through Ray; checkpoints go to `storage_path`.
    `task_resources`: custom resources each worker asks for (`ray.task_resources`).
    """
    import ray
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchTrainer

    use_gpu = resolve_use_gpu(cfg.use_gpu)
    shards = sorted(os.path.join(data_dir, f) for f in os.listdir(data_dir) if f.endswith(".parquet"))
    if not shards:
        raise FileNotFoundError(f"{data_dir}: no Parquet shards; run the degrade stage first")
    threads = 0 if use_gpu else max(1, (os.cpu_count() or 1) // max(cfg.num_workers, 1))
    storage_path, filesystem = storage(cfg)
    scored = bool(val_pairs)
    in_memory = cfg.feed == "memory" or (cfg.feed == "auto" and decoded_bytes(shards) < IN_MEMORY_LIMIT)
    if progress and not in_memory:
        print(f"[train] patches streamed by Ray Data from {len(shards)} shards (local://, each worker its part)")
    if not in_memory and cfg.balance != "patch":
        print(
            f"[train] note: train.balance {cfg.balance!r} applies to patch sets held in memory; this one is "
            "streamed and sampled by patch",
            file=sys.stderr,
        )
    # A small set goes to the workers through the object store, a large one through Ray Data.
    # No Ray Data for the small set means two fewer Ray processes (its split coordinator and
    # stats actor) for the whole run: every Ray process wakes 100 times a second, and on 2
    # cores each wake-up stalls a torch thread (benchmarks/README.md, bench_train).
    patches_ref = ray.put(load_patch_set(data_dir)) if in_memory else None
    streamed = (
        {}
        if in_memory
        else {
            "datasets": {"train": train_dataset(shards)},
            # the worker's shard iterator keeps the block order too (see train_dataset)
            "dataset_config": ray.train.DataConfig(execution_options=ExecutionOptions(preserve_order=True)),
        }
    )
    bar = progress_bar(cfg.iterations) if progress else contextlib.nullcontext()
    with bar as board:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "train": to_dict(cfg),
                "torch_threads": threads,
                "mlflow_tracking_uri": mlflow_tracking_uri,
                "mlflow_run_id": mlflow_run_id,
                "init_weights": ray.put(load_weights(cfg.init_weights).state_dict()) if cfg.init_weights else None,
                "val_pairs": val_pairs or [],
                "patches": patches_ref,
                "progress": board,
            },
            scaling_config=ray.train.ScalingConfig(
                num_workers=cfg.num_workers,
                use_gpu=use_gpu,
                resources_per_worker={
                    "CPU": cfg.cpus_per_worker,
                    **({"GPU": 1} if use_gpu else {}),
                    **dict(task_resources or {}),
                },
            ),
            run_config=ray.train.RunConfig(
                name=run_name,
                storage_path=storage_path,
                storage_filesystem=filesystem,
                failure_config=ray.train.FailureConfig(max_failures=max_failures),
                worker_runtime_env={"env_vars": cpu_worker_env(threads)} if threads else None,
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=cfg.keep_checkpoints,
                    checkpoint_score_attribute=VAL_METRIC if scored else None,
                    checkpoint_score_order="max",
                ),
            ),
            **streamed,
        )
        result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} finished without a checkpoint")
    chosen = result.checkpoint
    if cfg.export == "best" and scored and result.best_checkpoints:
        chosen = max(result.best_checkpoints, key=lambda cm: cm[1].get(VAL_METRIC, float("-inf")))[0]
    return TrainResult(chosen, int(result.metrics.get("iteration", cfg.iterations)), dict(result.metrics))
