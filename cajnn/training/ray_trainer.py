"""Training on Ray Train (V2 `TorchTrainer`), fed by Ray Data from the `degrade` shards.

The loop is iteration-based (paper IV-A: Adam, cosine annealing with warm restarts), reports
metrics and checkpoints through `ray.train.report`, and resumes from the latest checkpoint when
the same run (name + storage_path) is started again. MLflow logging happens on rank 0 through
an `MlflowClient` attached to a run that the driver created.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cajnn.archs import build_model
from cajnn.config import TrainConfig, from_dict, to_dict
from cajnn.data.shards import decode_patches, stable_seed
from cajnn.training.augment import augment_batch
from cajnn.training.checkpoint import load_training_state, save_training_state
from cajnn.training.losses import build_loss
from cajnn.training.step import StepGuard, train_step


@dataclass(frozen=True)
class TrainResult:
    """What `fit` leaves behind: the final checkpoint (a `ray.train.Checkpoint`)."""

    checkpoint: Any
    iterations: int
    metrics: dict[str, Any]


def _metric_logger(config: dict[str, Any]):
    """A callable that logs metrics to the driver's MLflow run, or a no-op without one."""
    run_id = config.get("mlflow_run_id")
    if not run_id:
        return lambda metrics, step: None
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config["mlflow_tracking_uri"])

    def log(metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    return log


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs in each Ray Train worker: the paper's recipe, iteration by iteration."""
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = from_dict(TrainConfig, config["train"])
    if config.get("torch_threads"):
        # Ray sets OMP_NUM_THREADS=1 in workers; on CPU give torch the cores we were sized for.
        torch.set_num_threads(int(config["torch_threads"]))
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device()
    torch.manual_seed(stable_seed(cfg.seed, "torch", rank) % 2**63)
    rng = np.random.default_rng(stable_seed(cfg.seed, "numpy", rank))

    net = build_model(cfg.model.preset, **cfg.model.overrides)
    scale = net.config["scale"]
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cfg.restart_every, eta_min=cfg.lr_min
    )
    iteration = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as ckpt_dir:
            meta = load_training_state(ckpt_dir, net, optimizer, scheduler, rng)
        iteration = int(meta["iteration"])
        print(f"[train] resuming from checkpoint at iteration {iteration}")
    elif config.get("init_weights"):
        from cajnn.weights import load_weights

        net.load_state_dict(load_weights(config["init_weights"]).state_dict())
        print(f"[train] warm start from {config['init_weights']}")
    model = ray.train.torch.prepare_model(net)
    loss_fn = build_loss(cfg.loss)
    guard = StepGuard()
    log = _metric_logger(config) if rank == 0 else (lambda metrics, step: None)

    def report(metrics: dict[str, Any], with_checkpoint: bool) -> None:
        if not with_checkpoint:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                save_training_state(tmp, model, optimizer, scheduler, iteration, rng)
            ray.train.report(
                metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None
            )

    if iteration >= cfg.iterations:
        # Already finished (e.g. the DVC outputs were deleted): hand the final state back.
        report({"iteration": iteration}, with_checkpoint=True)
        return

    shard = ray.train.get_dataset_shard("train")
    window = {"loss": 0.0, "steps": 0, "data_s": 0.0, "step_s": 0.0, "samples": 0}
    window_start = time.perf_counter()
    epoch = 0
    model.train()
    while iteration < cfg.iterations:
        batches = shard.iter_batches(
            batch_size=cfg.batch_size,
            batch_format="numpy",
            drop_last=True,
            local_shuffle_buffer_size=max(4 * cfg.batch_size, 256),
            local_shuffle_seed=stable_seed(cfg.seed, "shuffle", rank, epoch, iteration) % 2**31,
        )
        epoch += 1
        got_any = False
        t_data = time.perf_counter()
        for batch in batches:
            got_any = True
            hr_np, lr_np = decode_patches(batch)
            hr, lr = augment_batch(hr_np, lr_np, cfg.crop, scale, rng)
            hr, lr = hr.to(device, non_blocking=True), lr.to(device, non_blocking=True)
            t_step = time.perf_counter()
            window["data_s"] += t_step - t_data
            step_lr = optimizer.param_groups[0]["lr"]
            loss = train_step(model, optimizer, loss_fn, lr, hr, guard, cfg.aux_lr_weight, None, cfg.grad_clip)
            scheduler.step()
            iteration += 1
            window["step_s"] += time.perf_counter() - t_step
            if loss is not None:
                window["loss"] += loss
                window["steps"] += 1
            window["samples"] += len(lr)

            last = iteration >= cfg.iterations
            if iteration % cfg.log_every == 0 or last:
                elapsed = time.perf_counter() - window_start
                metrics = {
                    "iteration": iteration,
                    "loss": window["loss"] / max(window["steps"], 1),
                    "lr": step_lr,
                    "samples_per_s": window["samples"] / max(elapsed, 1e-9),
                    "data_wait_fraction": window["data_s"] / max(window["data_s"] + window["step_s"], 1e-9),
                    "skipped_steps": guard.skipped,
                }
                log({k: v for k, v in metrics.items() if k != "iteration"}, iteration)
                ckpt_now = iteration % cfg.checkpoint_every == 0 or last
                report(metrics, with_checkpoint=ckpt_now)
                if rank == 0:
                    print(
                        f"[train] it {iteration}/{cfg.iterations} loss {metrics['loss']:.4f} "
                        f"lr {metrics['lr']:.2e} {metrics['samples_per_s']:.1f} samples/s"
                        + (" (checkpoint)" if ckpt_now else "")
                    )
                window = {"loss": 0.0, "steps": 0, "data_s": 0.0, "step_s": 0.0, "samples": 0}
                window_start = time.perf_counter()
            elif iteration % cfg.checkpoint_every == 0:
                report({"iteration": iteration}, with_checkpoint=True)
            if last:
                break
            t_data = time.perf_counter()
        if not got_any:
            raise RuntimeError(
                f"the training data yields no batch of {cfg.batch_size}: lower train.batch_size "
                "or add images"
            )


def resolve_use_gpu(setting: str) -> bool:
    """`auto` -> use GPUs when the Ray cluster has any."""
    if setting == "auto":
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0
    return setting == "true"


def fit(
    cfg: TrainConfig,
    run_name: str,
    storage_path: str,
    mlflow_tracking_uri: str | None = None,
    mlflow_run_id: str | None = None,
    init_weights: str | None = None,
    max_failures: int = 2,
) -> TrainResult:
    """Train with a `TorchTrainer` on the Parquet shards under `cfg.data`.

    Starting again with the same `run_name` and `storage_path` resumes from the latest
    checkpoint (Ray Train V2 has no `Trainer.restore`: this is how V2 resumes).
    """
    import ray
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    use_gpu = resolve_use_gpu(cfg.use_gpu)
    data_dir = Path(cfg.data).resolve()
    shards = sorted(str(p) for p in data_dir.glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{data_dir}: no Parquet shards; run the degrade stage first")
    train_ds = ray.data.read_parquet(shards)
    threads = 0 if use_gpu else max(1, (os.cpu_count() or 1) // max(cfg.num_workers, 1))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": to_dict(cfg),
            "torch_threads": threads,
            "mlflow_tracking_uri": mlflow_tracking_uri,
            "mlflow_run_id": mlflow_run_id,
            "init_weights": init_weights,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        ),
        datasets={"train": train_ds},
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} finished without a checkpoint")
    return TrainResult(result.checkpoint, int(result.metrics.get("iteration", cfg.iterations)), dict(result.metrics))
