"""The training recipe of paper IV-A as a plain object, with no Ray inside.

:class:`Trainer` owns the model, Adam, the cosine schedule with warm restarts, the loss of
eq. 8, the random state and the iteration count; :func:`run` drives it over batches of patch
pairs and calls back at each log and checkpoint point. The Ray Train adapter
(`cajnn.training.ray_trainer`), the benchmarks and the tests drive the same object, so the
plain loop and the Ray path give the same weights for the same seed and data.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cajnn.archs import build_model
from cajnn.config import TrainConfig
from cajnn.data.shards import PatchSet, stable_seed
from cajnn.training.augment import augment_batch
from cajnn.training.checkpoint import load_training_state, save_training_state
from cajnn.training.losses import build_loss, clean_lr_target
from cajnn.training.step import StepGuard, train_step
from cajnn.training.validation import ValPair, validate

Batch = tuple[np.ndarray, np.ndarray]  # (HR, LR) uint8 patches, (N, H, W, 3)


def precision(cfg: TrainConfig, device: torch.device) -> tuple[Callable[[], Any], bool]:
    """(autocast context factory, channels_last) for this device per `amp` / `channels_last`.

    `channels_last: auto` is on everywhere: oneDNN's CPU convolutions and cuDNN both run
    natively in NHWC (measured 1.2-1.5x per training step on 2 CPU cores, `bench_train.py`)."""
    on_gpu = device.type == "cuda"
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and on_gpu)
    channels_last = cfg.channels_last in ("true", "auto")
    if use_bf16:
        return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), channels_last
    return contextlib.nullcontext, channels_last


class Window:
    """Running sums between two log points: mean loss, throughput, data wait."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.steps = 0  # steps with a finite loss
        self.all_steps = 0
        self.samples = 0
        self.data_s = 0.0
        self.step_s = 0.0
        self.start = time.perf_counter()

    def add(self, loss: float | None, samples: int, data_s: float, step_s: float) -> None:
        self.data_s += data_s
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


class Trainer:
    """One worker's share of the recipe: Adam (lr, betas 0.9/0.999), cosine annealing with
    warm restarts every `restart_every` iterations down to `lr_min`, the pixel loss (+ lambda *
    the auxiliary LR loss of eq. 8), random crops and dihedral augmentation.

    Seeds come from (`cfg.seed`, rank) only. Usage: construct, then optionally :meth:`restore`
    or :meth:`warm_start`, then :meth:`prepare` (layout, DDP wrapper, compile), then
    :meth:`step` per batch; :meth:`save` writes a checkpoint that :meth:`restore` resumes
    exactly (model, optimizer, schedule, RNG states, iteration).
    """

    def __init__(self, cfg: TrainConfig, device: torch.device | str = "cpu", rank: int = 0) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.rank = rank
        torch.manual_seed(stable_seed(cfg.seed, "torch", rank) % 2**63)
        self.rng = np.random.default_rng(stable_seed(cfg.seed, "numpy", rank))
        self.net = build_model(cfg.model.preset, **cfg.model.overrides)
        # a CAR network keeps the LR size; the others upscale (by the data's scale, checked by the loss)
        if (int(self.net.config["scale"]) == 1) != (cfg.task == "car"):
            need = "1" if cfg.task == "car" else "above 1"
            raise ValueError(
                f"train.task {cfg.task!r} needs a network of scale {need}; "
                f"{cfg.model.preset!r} has scale {self.net.config['scale']}"
            )
        self.autocast, self.channels_last = precision(cfg, self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer, T_0=cfg.restart_every, eta_min=cfg.lr_min
        )
        self.loss_fn = build_loss(cfg.loss)
        self.guard = StepGuard(max_consecutive=cfg.max_nonfinite)
        self.iteration = 0
        self.resumed_from: list[int] = []  # iterations this run was resumed at
        self.model: nn.Module = self.net  # what the step runs (DDP / compiled wrapper of net)
        self.window = Window()
        self.step_lr = cfg.lr
        self._last_end: float | None = None

    # -- state ------------------------------------------------------------------------------
    def restore(self, directory: str | Path) -> dict[str, Any]:
        """Resume from a checkpoint written by :meth:`save`; returns its metadata."""
        meta = load_training_state(directory, self.net, self.optimizer, self.scheduler, self.rng)
        self.iteration = int(meta["iteration"])
        self.resumed_from = [*meta.get("resumed_from", []), self.iteration]
        return meta

    def warm_start(self, weights: str | Path | dict[str, torch.Tensor]) -> None:
        """Start from exported weights (a file, or its state dict read elsewhere) for
        fine-tuning; optimizer and schedule start fresh."""
        if not isinstance(weights, dict):
            from cajnn.weights import load_weights

            weights = load_weights(weights).state_dict()
        self.net.load_state_dict(weights)

    def prepare(self, wrap: Callable[[nn.Module], nn.Module] | None = None) -> None:
        """Layout and device, then `wrap` (e.g. Ray Train's `prepare_model`), then compile."""
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        model = wrap(self.net) if wrap else self.net.to(self.device)
        self.model = torch.compile(model) if self.cfg.compile else model
        self.model.train()

    def save(self, directory: str | Path, metrics: dict[str, Any] | None = None) -> None:
        save_training_state(
            directory,
            self.net,
            self.optimizer,
            self.scheduler,
            self.iteration,
            self.rng,
            extra={
                "optimizer_steps": self.optimizer_steps,
                "metrics": metrics or {},
                "resumed_from": self.resumed_from,
            },
        )

    @property
    def optimizer_steps(self) -> int:
        """Adam's own step counter (restored from checkpoints, so it counts across resumes)."""
        return max((int(s["step"]) for s in self.optimizer.state.values() if "step" in s), default=0)

    @property
    def done(self) -> bool:
        return self.iteration >= self.cfg.iterations

    # -- data -------------------------------------------------------------------------------
    def sample(self, patches: PatchSet, p: np.ndarray | None = None) -> Batch:
        """A batch drawn with replacement from in-memory patches, uniformly or with
        probabilities `p` (the trainer's RNG, so a resumed run draws what an uninterrupted one
        would have)."""
        n = len(patches)
        idx = (
            self.rng.integers(0, n, self.cfg.batch_size) if p is None else self.rng.choice(n, self.cfg.batch_size, p=p)
        )
        return patches.hr[idx], patches.lr[idx]

    # -- one iteration ----------------------------------------------------------------------
    def step(self, hr: np.ndarray, lr: np.ndarray) -> float | None:
        """Augment one batch of patch pairs and make one optimisation step (eq. 8); returns the
        loss, or None when the guard skipped a non-finite step."""
        t0 = time.perf_counter()
        waited = t0 - self._last_end if self._last_end is not None else 0.0
        s = hr.shape[1] // lr.shape[1]  # the data's scale; a CAR network's own is 1
        hr_t, lr_t = augment_batch(hr, lr, self.cfg.crop, s, self.rng)
        task = self.cfg.task
        clean = clean_lr_target(hr_t, s) if task != "joint" or self.cfg.aux_lr_weight > 0 else None
        if task == "car":  # JPEG LR -> clean LR
            hr_t, clean = clean, None
        elif task == "sr":  # clean LR -> HR
            lr_t, clean = clean, None
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        clean = clean.to(self.device) if clean is not None else None
        hr_t = hr_t.to(self.device, non_blocking=True)
        lr_t = lr_t.to(self.device, non_blocking=True).contiguous(memory_format=layout)
        t1 = time.perf_counter()
        self.step_lr = self.optimizer.param_groups[0]["lr"]
        loss = train_step(
            self.model,
            self.optimizer,
            self.loss_fn,
            lr_t,
            hr_t,
            self.guard,
            self.cfg.aux_lr_weight,
            clean,
            self.cfg.grad_clip,
            self.autocast,
        )
        self.scheduler.step()
        self.iteration += 1
        self._last_end = time.perf_counter()
        self.window.add(loss, len(lr_t), waited + t1 - t0, self._last_end - t1)
        return loss

    def restart_clock(self) -> None:
        """Count the time until the next step as data wait from now on."""
        self._last_end = time.perf_counter()

    def log_due(self) -> bool:
        return self.iteration % self.cfg.log_every == 0 or self.done

    def checkpoint_due(self) -> bool:
        return self.iteration % self.cfg.checkpoint_every == 0 or self.done

    def window_metrics(self) -> dict[str, float]:
        """The metrics of the iterations since the last call (then a new window starts)."""
        metrics = {
            "iteration": self.iteration,
            "lr": self.step_lr,
            "skipped_steps": self.guard.skipped,
            **self.window.summary(),
        }
        self.window = Window()
        return metrics

    def validate(self, pairs: Sequence[ValPair]) -> tuple[dict[str, float], np.ndarray | None]:
        """PSNR-Y / SSIM-Y on the validation pairs (monitoring only), in eval mode."""
        self.model.eval()
        try:
            return validate(self.net, pairs, task=self.cfg.task)
        finally:
            self.model.train()


Callback = Callable[[Trainer, "dict[str, float] | None", bool], None]


def run(
    trainer: Trainer,
    batches: Iterable[Batch],
    on_event: Callback | None = None,
    on_step: Callable[[Trainer], None] | None = None,
) -> None:
    """Step `trainer` over `batches` until `cfg.iterations`. At each log point and each
    checkpoint point, `on_event(trainer, metrics or None, checkpoint_now)` is called (metrics:
    the window since the last log point, on log points only); `on_step(trainer)` after every
    step (keep it cheap: it is on the hot path)."""
    if trainer.done:
        return
    for hr, lr in batches:
        trainer.step(hr, lr)
        if on_step:
            on_step(trainer)
        log_now, ckpt_now = trainer.log_due(), trainer.checkpoint_due()
        if on_event and (log_now or ckpt_now):
            on_event(trainer, trainer.window_metrics() if log_now else None, ckpt_now)
            trainer.restart_clock()  # logging, validation and checkpoints are not data wait
        if trainer.done:
            return
    raise RuntimeError(
        f"the training data yields no batch of {trainer.cfg.batch_size}: lower train.batch_size or add images"
    )


def in_memory_batches(trainer: Trainer, patches: PatchSet) -> Iterator[Batch]:
    """Endless batches drawn by :meth:`Trainer.sample` from patches held in memory, balanced
    per `train.balance`."""
    if len(patches) < 1:
        return
    p = patches.sampling_weights(trainer.cfg.balance)
    while True:
        yield trainer.sample(patches, p)
