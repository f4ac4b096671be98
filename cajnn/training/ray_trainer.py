"""Training on Ray Train (V2 `TorchTrainer`), fed by Ray Data from the `degrade` shards.

The loop is iteration-based (paper IV-A: Adam, cosine annealing with warm restarts), reports
metrics and checkpoints through `ray.train.report`, and resumes from the latest checkpoint when
the same run (name + storage_path) is started again; a failed worker is restarted from it
(`FailureConfig`). MLflow logging happens on rank 0 through an `MlflowClient` attached to a run
that the driver created.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from cajnn.archs import build_model
from cajnn.config import TrainConfig, from_dict, to_dict
from cajnn.data.shards import decode_patches, stable_seed
from cajnn.training.augment import augment_batch
from cajnn.training.checkpoint import load_training_state, save_training_state
from cajnn.training.losses import build_loss, clean_lr_target
from cajnn.training.step import StepGuard, train_step
from cajnn.training.validation import ValPair, validate

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


def _precision(cfg: TrainConfig, device: torch.device) -> tuple[Any, bool]:
    """(autocast context factory, channels_last) for this device per `amp`/`channels_last`."""
    on_gpu = device.type == "cuda"
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and on_gpu)
    channels_last = cfg.channels_last == "true" or (cfg.channels_last == "auto" and on_gpu)
    if use_bf16:
        return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), channels_last
    return contextlib.nullcontext, channels_last


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs in each Ray Train worker: the paper's recipe, iteration by iteration."""
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = from_dict(TrainConfig, config["train"])
    if config.get("torch_threads"):
        # Ray sets OMP_NUM_THREADS=1 in workers; on CPU give torch the cores we were sized for.
        torch.set_num_threads(int(config["torch_threads"]))
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    torch.manual_seed(stable_seed(cfg.seed, "torch", rank) % 2**63)
    rng = np.random.default_rng(stable_seed(cfg.seed, "numpy", rank))

    net = build_model(cfg.model.preset, **cfg.model.overrides)
    scale = net.config["scale"]
    autocast, channels_last = _precision(cfg, device)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cfg.restart_every, eta_min=cfg.lr_min
    )
    iteration = 0
    resumed_from: list[int] = []  # iterations this run was resumed at, carried in checkpoints
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            meta = load_training_state(ckpt_dir, net, optimizer, scheduler, rng)
        iteration = int(meta["iteration"])
        resumed_from = [*meta.get("resumed_from", []), iteration]
        print(f"[train] resuming from checkpoint at iteration {iteration}", flush=True)
    elif config.get("init_weights"):
        from cajnn.weights import load_weights

        net.load_state_dict(load_weights(config["init_weights"]).state_dict())
        print(f"[train] warm start from {config['init_weights']}")
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(net)
    forward_model = torch.compile(model) if cfg.compile else model
    loss_fn = build_loss(cfg.loss)
    guard = StepGuard(max_consecutive=cfg.max_nonfinite)
    logger = _MlflowLogger(config.get("mlflow_tracking_uri"), config.get("mlflow_run_id") if rank == 0 else None)
    if resumed_from:
        logger.metrics({"resumed_from_iteration": iteration}, iteration)
    val_pairs: list[ValPair] = config.get("val_pairs") or []

    def report(metrics: dict[str, Any], with_checkpoint: bool) -> None:
        if not with_checkpoint:
            ray.train.report(metrics)
            return
        if rank == 0 and val_pairs:
            model.eval()
            val, sample = validate(net, val_pairs)
            model.train()
            metrics = {**metrics, **val}
            logger.metrics(val, iteration)
            logger.image(sample, iteration)
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                save_training_state(tmp, model, optimizer, scheduler, iteration, rng,
                                    extra={"optimizer_steps": _optimizer_steps(optimizer), "metrics": metrics,
                                           "resumed_from": resumed_from})
            ray.train.report(
                metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None
            )

    if iteration >= cfg.iterations:
        # Already finished (e.g. the DVC outputs were deleted): hand the final state back.
        report({"iteration": iteration}, with_checkpoint=True)
        return

    shard = ray.train.get_dataset_shard("train")
    window = _Window()
    epoch = 0
    model.train()
    while iteration < cfg.iterations:
        batches = shard.iter_batches(
            batch_size=cfg.batch_size,
            batch_format="numpy",
            drop_last=True,
            local_shuffle_buffer_size=max(4 * cfg.batch_size, 256),
            local_shuffle_seed=stable_seed(cfg.seed, "shuffle", rank, epoch, iteration) % 2**31,
            prefetch_batches=2,
        )
        epoch += 1
        got_any = False
        t_data = time.perf_counter()
        for batch in batches:
            got_any = True
            hr_np, lr_np = decode_patches(batch)
            hr, lr = augment_batch(hr_np, lr_np, cfg.crop, scale, rng)
            clean = clean_lr_target(hr, scale).to(device) if cfg.aux_lr_weight > 0 else None
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            hr = hr.to(device, non_blocking=True)
            lr = lr.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            t_step = time.perf_counter()
            window.data_s += t_step - t_data
            step_lr = optimizer.param_groups[0]["lr"]
            loss = train_step(forward_model, optimizer, loss_fn, lr, hr, guard, cfg.aux_lr_weight, clean,
                              cfg.grad_clip, autocast)
            scheduler.step()
            iteration += 1
            window.add(loss, len(lr), time.perf_counter() - t_step)

            last = iteration >= cfg.iterations
            ckpt_now = iteration % cfg.checkpoint_every == 0 or last
            if iteration % cfg.log_every == 0 or last:
                metrics = {"iteration": iteration, "lr": step_lr, "skipped_steps": guard.skipped, **window.summary()}
                logger.metrics({k: v for k, v in metrics.items() if k != "iteration"}, iteration)
                if rank == 0:
                    print(
                        f"[train] it {iteration}/{cfg.iterations} loss {metrics['loss']:.4f} lr {step_lr:.2e} "
                        f"{metrics['samples_per_s']:.1f} samples/s, data wait {metrics['data_wait_fraction']:.1%}"
                        + (" (checkpoint)" if ckpt_now else "")
                    )
                report(metrics, with_checkpoint=ckpt_now)
                window = _Window()
            elif ckpt_now:
                report({"iteration": iteration}, with_checkpoint=True)
            if last:
                break
            t_data = time.perf_counter()
        if not got_any:
            raise RuntimeError(
                f"the training data yields no batch of {cfg.batch_size}: lower train.batch_size or add images"
            )


def _optimizer_steps(optimizer: torch.optim.Optimizer) -> int:
    """Adam's own step counter (restored from checkpoints, so it counts across resumes)."""
    steps = [int(s["step"]) for s in optimizer.state.values() if "step" in s]
    return max(steps, default=0)


class _Window:
    """Running sums between two log points."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.steps = 0  # steps with a finite loss
        self.all_steps = 0
        self.samples = 0
        self.data_s = 0.0
        self.step_s = 0.0
        self.start = time.perf_counter()

    def add(self, loss: float | None, samples: int, step_s: float) -> None:
        self.step_s += step_s
        self.all_steps += 1
        self.samples += samples
        if loss is not None:
            self.loss += loss
            self.steps += 1

    def summary(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return {
            "loss": self.loss / max(self.steps, 1),
            "samples_per_s": self.samples / elapsed,
            "data_wait_fraction": self.data_s / max(self.data_s + self.step_s, 1e-9),
            "step_time_s": self.step_s / max(self.all_steps, 1),
        }


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
    return cfg.storage_path[len("s3://"):], fs


IN_MEMORY_LIMIT = 1 << 30  # shard bytes below which the patch set is kept in Ray's object store


def train_dataset(shards: list[str]):
    """The patch shards as a Ray Dataset. A small set (the embedded default) is materialized
    once, so that each epoch does not read and decode the Parquet files again (that showed as
    ~20 % data wait at epoch starts); a large one (DIV2K + Flickr2K) is streamed."""
    import ray.data

    ds = ray.data.read_parquet(shards)
    # Otherwise blocks come in the order their read tasks finish, and the same seed would see
    # other batches on each run: training must be reproducible on CPU.
    ds.context.execution_options.preserve_order = True
    if sum(os.path.getsize(s) for s in shards) < IN_MEMORY_LIMIT:
        ds = ds.materialize()
    return ds


def fit(
    cfg: TrainConfig,
    run_name: str,
    data_dir: str,
    val_pairs: list[ValPair] | None = None,
    mlflow_tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
    max_failures: int = 2,
) -> TrainResult:
    """Train with a `TorchTrainer` on the Parquet shards in `data_dir`.

    Starting again with the same `run_name` and storage resumes from the latest checkpoint
    (Ray Train V2 has no `Trainer.restore`: this is how V2 resumes).
    """
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
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": to_dict(cfg),
            "torch_threads": threads,
            "mlflow_tracking_uri": mlflow_tracking_uri,
            "mlflow_run_id": mlflow_run_id,
            "init_weights": os.path.abspath(cfg.init_weights) if cfg.init_weights else None,
            "val_pairs": val_pairs or [],
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.keep_checkpoints,
                checkpoint_score_attribute=VAL_METRIC if scored else None,
                checkpoint_score_order="max",
            ),
        ),
        datasets={"train": train_dataset(shards)},
        # the worker's shard iterator keeps the block order too (see train_dataset)
        dataset_config=ray.train.DataConfig(execution_options=ExecutionOptions(preserve_order=True)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} finished without a checkpoint")
    chosen = result.checkpoint
    if cfg.export == "best" and scored and result.best_checkpoints:
        chosen = max(result.best_checkpoints, key=lambda cm: cm[1].get(VAL_METRIC, float("-inf")))[0]
    return TrainResult(chosen, int(result.metrics.get("iteration", cfg.iterations)), dict(result.metrics))
