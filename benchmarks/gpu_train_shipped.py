"""Train the paper network on the shipped model's data on a GPU, for a wall-clock budget, and
score it next to the CPU-trained shipped model (issue: "when a GPU is offered, train the paper
network on the same data for at most 8 minutes of device time and report its held-out gains
next to the CPU model's", plus bf16/fp16 inference on the GPU).

Data: the shipped model's (conf/preset/cpu-base.yaml): scikit-image's sample photos without the
held-out chelsea and coffee, and the 12 nature photographs of Debian's mate-backgrounds, as
``cajnn fetch sample mate-backgrounds --dest DIR`` lays them out (``DIR/sample-train``,
``DIR/mate-nature``, ``DIR/sample-holdout``). Degradation: the project's own
(:mod:`cajnn.degradation.profile`) with the profile the CPU model was trained with
(``paper_lowqf`` of conf/config.yaml: MATLAB bicubic x1/4, JPEG 4:2:0 at a QF drawn from
10, 15, ..., 40, 50, ..., 100 with weights 3 / 2). Every training image is prepared once and
JPEG-compressed at EVERY QF of the profile at start (worker processes, before CUDA starts); the
pool lives on the GPU, and each batch draws per sample an image (uniformly: ``balance: image``),
a QF (the profile's weights), an aligned random crop (LR 32 / HR 128), drops flat crops (HR luma
std < 8, as ``degrade.min_patch_std``) and applies one of the 8 dihedral transforms
(:func:`cajnn.data.dihedral.dihedral`) -- all on the GPU, without a host sync per step.

Training: the paper recipe (presets/paper.yaml): Adam 2e-4 (betas 0.9/0.999), L1, bf16 autocast,
channels-last, cosine annealing to 1e-7 over the TIME budget (``--minutes``, counted from the
first step; training stops cleanly at the budget; the periodic held-out checks do not count).
``--batch auto`` starts at the paper's 36 and moves to 72 / 144 when that buys >= 25 % more
samples per second (the 14.9M network's ~3000 kernel launches per step make small batches
launch-bound on a fast GPU).

Then: the held-out protocol (:func:`cajnn.evaluation.evaluate_sets`: PSNR-Y / SSIM-Y, border 4,
MATLAB bicubic x1/4 + JPEG 4:2:0 at QF 10 / 20 / 40) for bicubic, the GPU model (fp32, x8
self-ensemble, bf16, fp16 and with the fp16-rounded weights that are returned) and
``--cpu-weights``; and an inference precision check: ``cajnn.inference.enhance`` on a 512x512 LR
input in fp32 (TF32 convolutions, PyTorch's default), strict fp32, bf16 and fp16: median seconds
per image and PSNR of each output against the strict fp32 one.

Writes ``$OUT/gpu_train_shipped.json`` (``--out``), rewritten after every phase (so a late crash
still leaves numbers), and the trained weights: one ``.safetensors`` + ``.json`` (``cajnn.weights``
format) when fp32 fits ``--max-file-mib``, else fp16 shards (``<name>.fp16-of-N-K.safetensors``)
that ``--merge-shards`` turns back into one file.

Usage::

    bash benchmarks/gpu_check_shipped.sh --minutes 7      # on the GPU machine (the wrapper passes
                                                           # --data .gpu-data --cpu-weights ...)
    PYTHONPATH=. .venv/bin/python benchmarks/gpu_train_shipped.py --data .gpu-data \\
        --device cpu --model-preset micro --minutes 0.1 --batch 4 --limit-images 3 \\
        --precision-size 32 --eval-every 0 --out /tmp/gts      # smoke test on a CPU, ~1 min
    python benchmarks/gpu_train_shipped.py --merge-shards OUTDIR models/paper-gpu.safetensors
"""

from __future__ import annotations

import os

# Worker processes do the CPU work one image each: no BLAS / OpenMP thread pools inside them.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

T_IMPORT = time.time()
T0 = float(os.environ.get("GPU_CHECK_T0") or T_IMPORT)  # the wrapper's start, for --deadline

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Only modules without Ray / MLflow / DVC / Hydra / Typer imports (the GPU image has none of
# these): cajnn.config (dataclasses + PyYAML), degradation (numpy + PyTurboJPEG), metrics (scipy),
# archs, weights (safetensors), inference (psutil on CPU only), evaluation.
from cajnn.archs import build_model  # noqa: E402
from cajnn.atomic import write_text_atomic  # noqa: E402
from cajnn.config import ProfileConfig  # noqa: E402
from cajnn.config.base import from_dict, read_yaml  # noqa: E402
from cajnn.data.dihedral import dihedral  # noqa: E402
from cajnn.data.image_io import list_images, load_rgb  # noqa: E402
from cajnn.degradation.imresize import modcrop  # noqa: E402
from cajnn.degradation.jpeg import jpeg_compress  # noqa: E402
from cajnn.degradation.profile import apply_plan, fixed_plan, prepare  # noqa: E402
from cajnn.degradation.protocol import degrade_for_test  # noqa: E402
from cajnn.evaluation import bicubic_method, evaluate_sets  # noqa: E402
from cajnn.inference import enhance  # noqa: E402
from cajnn.metrics import psnr, psnr_y  # noqa: E402
from cajnn.weights import load_weights, save_weights  # noqa: E402

EVAL_QUALITIES = (10, 20, 40)
SCALE = 4
CROP_BORDER = 4


def log(msg: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data",
        type=Path,
        default=Path(".gpu-data"),
        help="folder with sample-train/, mate-nature/, sample-holdout/ [%(default)s]",
    )
    p.add_argument(
        "--train-sets",
        nargs="+",
        default=["sample-train", "mate-nature"],
        help="training image folders under --data [%(default)s]",
    )
    p.add_argument("--holdout", default="sample-holdout", help="held-out folder under --data [%(default)s]")
    p.add_argument(
        "--config",
        type=Path,
        default=ROOT / "conf" / "config.yaml",
        help="YAML holding degrade.profiles [conf/config.yaml]",
    )
    p.add_argument("--profile", default="paper_lowqf", help="training degradation profile [%(default)s]")
    p.add_argument("--limit-images", type=int, default=0, help="use only the N smallest training images (smoke tests)")
    p.add_argument("--workers", type=int, default=None, help="data-prep processes [min(images, CPUs)]; 1 = in-process")
    p.add_argument(
        "--jpeg-vendor",
        type=Path,
        default=None,
        help="folder with turbojpeg.py and libturbojpeg.so.0 to use when present "
        "[<data>/vendor]: the same libjpeg-turbo as the CPU runs, bit-identical LR inputs",
    )
    p.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu [%(default)s]")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads on --device cpu [all CPUs]")
    p.add_argument("--model-preset", default="paper", help="network preset to train [%(default)s]")
    p.add_argument(
        "--minutes", type=float, default=7.0, help="training wall-clock budget from the first step [%(default)s]"
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=9.3,
        help="minutes from the start (GPU_CHECK_T0 of the wrapper) by which everything must be "
        "done; training is shortened to keep --reserve for what follows [%(default)s]",
    )
    p.add_argument(
        "--reserve",
        type=float,
        default=1.0,
        help="minutes kept after training for evaluation, precision check and saving [%(default)s]",
    )
    p.add_argument(
        "--batch", default="auto", help="batch size, or auto: 36, then 72 / 144 if >= 25%% more samples/s [%(default)s]"
    )
    p.add_argument("--batch-candidates", default="36,72,144", help="candidates of --batch auto [%(default)s]")
    p.add_argument("--crop", type=int, default=32, help="LR crop (HR = 4x) [%(default)s]")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate [%(default)s]")
    p.add_argument("--lr-min", type=float, default=1e-7, help="cosine floor [%(default)s]")
    p.add_argument(
        "--min-std", type=float, default=8.0, help="drop crops with HR luma std below this; 0 = keep all [%(default)s]"
    )
    p.add_argument("--amp", choices=["bf16", "fp32"], default="bf16", help="training autocast [%(default)s]")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (compile time counts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-seconds", type=float, default=20.0, help="progress line every N seconds [%(default)s]")
    p.add_argument(
        "--eval-every",
        type=float,
        default=2.0,
        help="held-out PSNR-Y check every N training minutes (clock paused); 0 = off [%(default)s]",
    )
    p.add_argument("--cpu-weights", type=Path, default=None, help="CPU-trained .safetensors to score alongside")
    p.add_argument(
        "--precision-size", type=int, default=512, help="LR side of the precision/timing input [%(default)s]"
    )
    p.add_argument("--precision-reps", type=int, default=5, help="timed runs per dtype [%(default)s]")
    p.add_argument("--no-save", action="store_true", help="do not write the trained weights")
    p.add_argument(
        "--max-file-mib",
        type=float,
        default=15.5,
        help="largest weights file to write (the device returns files <= 16 MiB) [%(default)s]",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder [$OUT, else ./gpu_train_shipped_out]")
    p.add_argument(
        "--merge-shards",
        nargs=2,
        metavar=("DIR", "OUT_SAFETENSORS"),
        default=None,
        help="only merge fp16 weight shards written by a run into one cajnn .safetensors and exit",
    )
    return p.parse_args(argv)


# --------------------------------------------------------------------------- results file


class Results:
    """The JSON document, rewritten atomically after every phase."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {"status": "started", "errors": [], "phases_s": {}}

    def write(self, status: str | None = None) -> None:
        if status:
            self.data["status"] = status
        self.data["elapsed_s"] = round(time.time() - T0, 1)
        # default=str: phases record paths and dtypes; insertion order keeps the phases in order
        write_text_atomic(self.path, json.dumps(self.data, indent=2, default=str) + "\n")

    def error(self, phase: str, exc: BaseException) -> None:
        log(f"ERROR in {phase}: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        self.data["errors"].append(
            {"phase": phase, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        )
        self.write()


# --------------------------------------------------------------------------- JPEG library


def setup_jpeg(vendor: Path | None) -> dict:
    """Make :mod:`cajnn.degradation.jpeg` work on a machine without PyTurboJPEG / libturbojpeg:
    import ``turbojpeg`` (else the vendored copy) and, when a vendored ``libturbojpeg.so.0`` is
    there, use it (the same libjpeg-turbo as the CPU runs: identical JPEG bytes)."""
    from cajnn.degradation import jpeg as cj

    try:
        import turbojpeg

        module = "installed"
    except ImportError:
        if vendor is None or not (vendor / "turbojpeg.py").is_file():
            raise RuntimeError(f"PyTurboJPEG is not installed and {vendor}/turbojpeg.py is missing") from None
        sys.path.insert(0, str(vendor.resolve()))
        import turbojpeg

        module = "vendored"
    lib = vendor / "libturbojpeg.so.0" if vendor is not None else None
    if lib is not None and lib.is_file():
        cj._handle = turbojpeg.TurboJPEG(str(lib.resolve()))
        lib_used = str(lib)
    else:
        cj._get_handle()  # the system library (raises the project's install hint if missing)
        lib_used = "system"
    return {
        "pyturbojpeg": getattr(turbojpeg, "__version__", "?"),
        "module": module,
        "module_file": turbojpeg.__file__,
        "libturbojpeg": lib_used,
    }


# --------------------------------------------------------------------------- data


def load_profile(config: Path, name: str) -> ProfileConfig:
    profiles = (read_yaml(config) or {}).get("degrade", {}).get("profiles", {})
    if name not in profiles:
        raise SystemExit(f"profile {name!r} not in {config} (degrade.profiles: {', '.join(profiles)})")
    prof = from_dict(ProfileConfig, profiles[name], f"degrade.profiles.{name}")
    if prof.compressions != 1 or prof.grid_offset:
        raise SystemExit(f"profile {name!r}: only single-pass profiles without grid offsets are supported here")
    return prof


def profile_qualities(prof: ProfileConfig) -> tuple[list[int], list[float]]:
    """Every QF the profile can draw and its probability (as ``draw_qualities`` draws them)."""
    if prof.qf_values is not None:
        values = [int(q) for q in prof.qf_values]
        weights = [float(w) for w in (prof.qf_weights or [1.0] * len(values))]
    else:
        lo = 10 if prof.qf_min is None else int(prof.qf_min)
        hi = 100 if prof.qf_max is None else int(prof.qf_max)
        values, weights = list(range(lo, hi + 1)), [1.0] * (hi - lo + 1)
    total = sum(weights)
    return values, [w / total for w in weights]


def _prepare_one(job: tuple[str, ProfileConfig, list[int]]) -> tuple[str, np.ndarray, np.ndarray, float]:
    """One training image -> (name, aligned HR, LR at every QF (Q, h, w, 3), seconds)."""
    path, prof, qfs = job
    t = time.perf_counter()
    prep = prepare(load_rgb(path), prof)
    lrs = []
    for q in qfs:
        d = apply_plan(prep, prof, fixed_plan(prof, q))
        assert d.offset == (0, 0) and d.lr.shape == prep.lr.shape
        lrs.append(d.lr)
    return str(path), prep.hr, np.stack(lrs), time.perf_counter() - t


def start_data_prep(paths: list[Path], prof: ProfileConfig, qfs: list[int], workers: int):
    """Fork the workers now (before CUDA starts in this process) and return a getter."""
    jobs = [(str(p), prof, qfs) for p in paths]
    if workers <= 1:
        return None, lambda: [_prepare_one(j) for j in jobs]
    pool = mp.get_context("fork").Pool(workers)
    pending = pool.map_async(_prepare_one, jobs, chunksize=1)

    def get():
        try:
            return pending.get()
        finally:
            pool.close()
            pool.join()

    return pool, get


class GpuPool:
    """All training images on the device, zero-padded to one size: ``hr`` (N, H, W, 3) and
    ``lr`` (N, Q, h, w, 3) uint8; batches are gathered with index tensors (no host sync)."""

    def __init__(self, items, weights: list[float], dev: torch.device, scale: int):
        n = len(items)
        hmax = max(lr.shape[1] for _, _, lr, _ in items)
        wmax = max(lr.shape[2] for _, _, lr, _ in items)
        q = items[0][2].shape[0]
        self.lr = torch.zeros((n, q, hmax, wmax, 3), dtype=torch.uint8, device=dev)
        self.hr = torch.zeros((n, hmax * scale, wmax * scale, 3), dtype=torch.uint8, device=dev)
        sizes = []
        for i, (_, hr, lr, _) in enumerate(items):
            h, w = lr.shape[1:3]
            self.lr[i, :, :h, :w] = torch.from_numpy(np.require(lr, requirements="W")).to(dev)
            self.hr[i, : h * scale, : w * scale] = torch.from_numpy(np.require(hr, requirements="W")).to(dev)
            sizes.append((h, w))
        self.h = torch.tensor([s[0] for s in sizes], device=dev)
        self.w = torch.tensor([s[1] for s in sizes], device=dev)
        self.qf_p = torch.tensor(weights, dtype=torch.float32, device=dev)
        self.n, self.scale, self.dev = n, scale, dev
        self.luma = torch.tensor([0.299, 0.587, 0.114], device=dev)  # as cajnn.data.shards.is_flat
        self.bytes = self.lr.numel() + self.hr.numel()
        self.min_side = min(min(s) for s in sizes)

    def batch(self, b: int, crop: int, min_std: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR, HR) float in [0, 1], NCHW channels-last: image uniform, QF by the profile's
        weights, crop position uniform, flat crops replaced, one dihedral transform per sample."""
        m = 2 * b if min_std > 0 else b  # candidates: flat ones go to the back
        dev, s = self.dev, self.scale
        img = torch.randint(0, self.n, (m,), device=dev, generator=gen)
        qf = torch.multinomial(self.qf_p, m, replacement=True, generator=gen)
        ys = (torch.rand(m, device=dev, generator=gen) * (self.h[img] - crop + 1)).long()
        xs = (torch.rand(m, device=dev, generator=gen) * (self.w[img] - crop + 1)).long()
        a = torch.arange(crop, device=dev)
        ah = torch.arange(crop * s, device=dev)
        lr = self.lr[
            img[:, None, None], qf[:, None, None], (ys[:, None] + a)[:, :, None], (xs[:, None] + a)[:, None, :]
        ]
        hr = self.hr[img[:, None, None], (ys[:, None] * s + ah)[:, :, None], (xs[:, None] * s + ah)[:, None, :]]
        if min_std > 0:
            std = (hr.float() @ self.luma).flatten(1).std(dim=1)
            order = torch.argsort((std < min_std).to(torch.int8), stable=True)[:b]
            lr, hr = lr[order], hr[order]
        lr, hr = lr.permute(0, 3, 1, 2), hr.permute(0, 3, 1, 2)  # NCHW views of NHWC memory
        k = torch.randint(0, 8, (b,), device=dev, generator=gen)
        rows = torch.arange(b, device=dev)
        lr = torch.stack([dihedral(lr, j) for j in range(8)])[k, rows]  # square crops: same shapes
        hr = torch.stack([dihedral(hr, j) for j in range(8)])[k, rows]
        fmt = torch.channels_last
        return (
            lr.float().div_(255.0).contiguous(memory_format=fmt),
            hr.float().div_(255.0).contiguous(memory_format=fmt),
        )


# --------------------------------------------------------------------------- held-out check


class QuickHoldout:
    """Held-out PSNR-Y gain over bicubic at QF 10/20/40 (fp32, whole images) during training."""

    def __init__(self, folder: Path):
        self.pairs = []
        for p in list_images(folder):
            hr = modcrop(load_rgb(p), SCALE)
            for q in EVAL_QUALITIES:
                lr = degrade_for_test(hr, SCALE, q)
                self.pairs.append((q, hr, lr, psnr_y(bicubic_method(SCALE)(lr), hr, crop=CROP_BORDER)))

    def gains(self, net: torch.nn.Module, dev: torch.device) -> dict[str, float]:
        out: dict[int, list[float]] = {}
        bench, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False  # no autotuning
        try:
            for q, hr, lr, bic in self.pairs:
                sr = enhance(lr, net, device=dev, tile=0)
                out.setdefault(q, []).append(psnr_y(sr, hr, crop=CROP_BORDER) - bic)
        finally:
            torch.backends.cudnn.benchmark = bench
        return {f"qf{q}": round(float(np.mean(v)), 4) for q, v in out.items()}


# --------------------------------------------------------------------------- training


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def train(net, model, pool: GpuPool, args, dev, budget_s: float, holdout: QuickHoldout | None, res: Results) -> dict:
    """Train until ``budget_s`` seconds of training time have passed; returns the record."""
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, **({"fused": True} if dev.type == "cuda" else {}))
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed)
    if pool.min_side < args.crop:
        raise ValueError(f"an LR training image is smaller ({pool.min_side} px) than the crop {args.crop}")

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp == "bf16")

    loss_fn = torch.nn.L1Loss()
    rec: dict = {"budget_s": round(budget_s, 1), "log": [], "curve": [], "batch_probe": []}

    def lr_at(t: float) -> float:
        f = min(max(t / budget_s, 0.0), 1.0)
        return args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * f))

    paused = 0.0
    t_start = time.perf_counter()

    def train_time() -> float:
        return time.perf_counter() - t_start - paused

    step = samples = 0
    loss_sum = torch.zeros((), device=dev)
    loss_n = 0

    def one_step(b: int) -> None:
        nonlocal step, samples, loss_sum, loss_n
        for g in opt.param_groups:
            g["lr"] = lr_at(train_time())
        lr_t, hr_t = pool.batch(b, args.crop, args.min_std, gen)
        with autocast():
            out = model(lr_t)
        loss = loss_fn(out.float(), hr_t)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        loss_n += 1
        step += 1
        samples += b

    # --- batch size
    if str(args.batch) == "auto":
        cands = [int(c) for c in str(args.batch_candidates).split(",") if c.strip()]
        best, best_rate = cands[0], 0.0
        for b in cands:
            try:
                for _ in range(3):  # cuDNN autotuning of this shape
                    one_step(b)
                sync(dev)
                t = time.perf_counter()
                reps = 10 if dev.type == "cuda" else 1
                for _ in range(reps):
                    one_step(b)
                sync(dev)
                rate = reps * b / (time.perf_counter() - t)
            except torch.cuda.OutOfMemoryError as exc:  # noqa: PERF203
                rec["batch_probe"].append({"batch": b, "error": str(exc)[:200]})
                opt.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                break
            rec["batch_probe"].append({"batch": b, "samples_per_s": round(rate, 1), "it_per_s": round(rate / b, 2)})
            log(f"batch probe: batch {b}: {rate:.0f} samples/s ({rate / b:.2f} it/s)")
            if best_rate == 0.0 or rate >= 1.25 * best_rate:
                best, best_rate = b, rate
            else:
                break
            if train_time() > 0.2 * budget_s:
                break
        batch = best
    else:
        batch = int(args.batch)
    rec["batch"] = batch
    log(f"training {args.model_preset} at batch {batch} for {budget_s:.0f} s of training time")

    # --- the loop
    next_log = train_time() + args.log_seconds
    next_eval = args.eval_every * 60 if args.eval_every > 0 else float("inf")
    w_t, w_step, w_samples = train_time(), step, samples
    stopped = "budget"
    while True:
        now = train_time()
        if now >= budget_s:
            break
        one_step(batch)
        now = train_time()
        if now >= next_log or now >= budget_s or now >= next_eval:
            mean_loss = float(loss_sum) / max(loss_n, 1)  # the one host sync of the window
            now = train_time()
            dt = max(now - w_t, 1e-9)
            entry = {
                "t": round(now, 1),
                "step": step,
                "samples": samples,
                "loss": round(mean_loss, 5),
                "lr": lr_at(now),
                "it_per_s": round((step - w_step) / dt, 2),
                "samples_per_s": round((samples - w_samples) / dt, 1),
            }
            rec["log"].append(entry)
            log(
                f"step {step:6d}  t {now:6.1f}s  loss {mean_loss:.4f}  lr {entry['lr']:.2e}  "
                f"{entry['it_per_s']:.2f} it/s  {entry['samples_per_s']:.0f} samples/s"
            )
            loss_sum.zero_()
            loss_n = 0
            w_t, w_step, w_samples = now, step, samples
            next_log = now + args.log_seconds
            if not math.isfinite(mean_loss):
                stopped = "diverged (non-finite loss)"
                break
            if now >= next_eval and now < budget_s and holdout is not None:
                t = time.perf_counter()
                gains = holdout.gains(net, dev)
                net.train()
                rec["curve"].append({"t": round(now, 1), "step": step, "gain_db": gains})
                paused += time.perf_counter() - t
                log(
                    f"held-out gain over bicubic at step {step}: {gains} ({time.perf_counter() - t:.1f} s, not counted)"
                )
                next_eval += args.eval_every * 60
                w_t = train_time()
                res.data["train"] = {**rec, "partial": True}
                res.write()
    sync(dev)
    total = train_time()
    rec.update(
        {
            "stopped": stopped,
            "steps": step,
            "samples": samples,
            "train_seconds": round(total, 1),
            "paused_for_checks_s": round(paused, 1),
            "it_per_s": round(step / total, 2),
            "samples_per_s": round(samples / total, 1),
            "final_loss": rec["log"][-1]["loss"] if rec["log"] else None,
        }
    )
    if dev.type == "cuda":
        rec["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return rec


# --------------------------------------------------------------------------- evaluation


def fp16_rounded(net: torch.nn.Module) -> torch.nn.Module:
    """A copy whose weights went through fp16 storage (what --max-file-mib returns)."""
    copy = type(net)(**net.config)
    copy.load_state_dict({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()})
    return copy


def evaluate(net, cpu_net, args, dev, fp16_weights: bool, res: Results) -> dict:
    """The held-out protocol in two passes: the main rows (bicubic, GPU model, CPU model) first,
    then the variants (x8, bf16, fp16, fp16-rounded weights), so that a failing variant cannot
    take the main numbers with it."""
    cuda = dev.type == "cuda"
    overflow: list[str] = []

    def run(model, **kw):
        return lambda lr: enhance(lr, model, device=dev, tile=0, **kw)

    def run_fp16(model, name):
        def fn(lr):
            try:
                return enhance(lr, model, device=dev, tile=0, dtype="fp16")
            except RuntimeError as exc:  # fp16 overflow: a black image, and say so
                overflow.append(f"{name}: {exc}")
                return np.zeros((lr.shape[0] * SCALE, lr.shape[1] * SCALE, 3), np.uint8)

        return fn

    main = {"bicubic": bicubic_method(SCALE), "gpu_model": run(net)}
    if cpu_net is not None:
        main["cpu_model"] = run(cpu_net)
    extra = {"gpu_model_x8": run(net, self_ensemble=True)}
    if cuda:
        extra["gpu_model_bf16"] = run(net, dtype="bf16")
        extra["gpu_model_fp16"] = run_fp16(net, "gpu_model_fp16")
    if fp16_weights:
        extra["gpu_model_fp16_weights"] = run(fp16_rounded(net).to(dev).to(memory_format=torch.channels_last))
    if cpu_net is not None:
        extra["cpu_model_x8"] = run(cpu_net, self_ensemble=True)
        if cuda:
            extra["cpu_model_bf16"] = run(cpu_net, dtype="bf16")
            extra["cpu_model_fp16"] = run_fp16(cpu_net, "cpu_model_fp16")
    folder = args.data / args.holdout
    table: dict = {}
    out = {
        "protocol": "PSNR-Y / SSIM-Y, border 4; MATLAB bicubic x1/4 then JPEG 4:2:0 at each QF "
        "(cajnn.evaluation.evaluate_sets); fp32 whole images unless named bf16/fp16",
        "set": str(folder),
        "images": [p.name for p in list_images(folder)],
        "results": table,
    }

    def add(methods: dict) -> None:
        report = evaluate_sets(methods, {"holdout": folder}, list(EVAL_QUALITIES), SCALE, CROP_BORDER)
        for qf, per in report.results["holdout"].items():
            bic = per["bicubic"].psnr_y
            row = table.setdefault(f"qf{qf}", {})
            for name, r in per.items():
                row[name] = {
                    "psnr_y": round(r.psnr_y, 4),
                    "ssim_y": round(r.ssim_y, 5),
                    "gain_db": round(r.psnr_y - bic, 4),
                    "seconds": round(r.seconds, 3),
                }

    add(main)
    log(
        "held-out: "
        + ", ".join(
            f"{q} {name} {r['gain_db']:+.3f}"
            for q, row in table.items()
            for name, r in row.items()
            if name != "bicubic"
        )
    )
    res.data["evaluation"] = out
    res.write()
    try:
        add({"bicubic": main["bicubic"], **extra})
    except Exception as exc:  # noqa: BLE001
        res.error("evaluation (variants)", exc)
    if overflow:
        out["fp16_overflow"] = overflow[:20]
    lr_sha = {}
    for p in list_images(folder):
        hr = modcrop(load_rgb(p), SCALE)
        for q in EVAL_QUALITIES:
            lr_sha[f"{p.stem}/qf{q}"] = hashlib.sha256(degrade_for_test(hr, SCALE, q).tobytes()).hexdigest()[:16]
    out["holdout_lr_sha256_16"] = lr_sha
    return out


def precision_check(models: dict, lr: np.ndarray, args, dev) -> dict:
    """enhance() per dtype: median seconds per image after 2 warm-up runs (cuDNN heuristics,
    no autotuning, as ``cajnn enhance``), PSNR (RGB) against the strict-fp32 output, peak GPU
    memory."""
    cuda = dev.type == "cuda"
    old_tf32, old_bench = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False  # as `cajnn enhance` runs (PyTorch's default): no autotuning
    if cuda:
        runs = [
            ("fp32_strict", "fp32", False),
            ("fp32_tf32", "fp32", True),
            ("bf16", "bf16", True),
            ("fp16", "fp16", True),
        ]
    else:
        runs = [("fp32_strict", "fp32", False)]
    out: dict = {
        "input": list(lr.shape),
        "reps": args.precision_reps,
        "note": "fp32_tf32 = PyTorch's default on CUDA (cudnn.allow_tf32); PSNR is RGB uint8 against fp32_strict",
    }
    try:
        for name, model in models.items():
            rows, ref = {}, None
            for label, dtype, tf32 in runs:
                torch.backends.cudnn.allow_tf32 = tf32
                try:
                    for _ in range(2):
                        y = enhance(lr, model, device=dev, dtype=dtype, tile=0)
                    if cuda:
                        torch.cuda.reset_peak_memory_stats(dev)
                    times = []
                    for _ in range(args.precision_reps):
                        sync(dev)
                        t = time.perf_counter()
                        y = enhance(lr, model, device=dev, dtype=dtype, tile=0)
                        sync(dev)
                        times.append(time.perf_counter() - t)
                except (RuntimeError, ValueError) as exc:
                    rows[label] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                    log(f"precision {name} {label}: {rows[label]['error']}")
                    continue
                if ref is None:
                    ref = y
                diff = np.abs(y.astype(np.int16) - ref.astype(np.int16))
                rows[label] = {
                    "seconds_median": round(statistics.median(times), 4),
                    "seconds": [round(t, 4) for t in times],
                    "psnr_vs_fp32_strict": None if y is ref else round(psnr(y, ref), 2),
                    "max_abs_diff": int(diff.max()),
                    "pixels_differing_pct": round(100 * float((diff > 0).mean()), 3),
                }
                if cuda:
                    rows[label]["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
                log(
                    f"precision {name} {label}: {rows[label]['seconds_median'] * 1000:.1f} ms/image, "
                    f"PSNR vs fp32 {rows[label]['psnr_vs_fp32_strict']}"
                )
            out[name] = rows
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = old_tf32, old_bench
    return out


def precision_input(items, size: int) -> np.ndarray:
    """A ``size`` x ``size`` JPEG (QF 20, 4:2:0) centre crop of the largest training HR photo."""
    hr = max((it[1] for it in items), key=lambda a: a.shape[0] * a.shape[1])
    if min(hr.shape[:2]) < size:
        hr = np.pad(hr, ((0, max(size - hr.shape[0], 0)), (0, max(size - hr.shape[1], 0)), (0, 0)), mode="reflect")
    y, x = (hr.shape[0] - size) // 2, (hr.shape[1] - size) // 2
    return jpeg_compress(np.ascontiguousarray(hr[y : y + size, x : x + size]), 20, subsampling="420")


# --------------------------------------------------------------------------- weights


def save_returnable(net: torch.nn.Module, out: Path, name: str, max_bytes: int) -> dict:
    """fp32 ``cajnn.weights`` file when it fits ``max_bytes``, else fp16 shards that each do."""
    fp32 = sum(p.numel() * 4 for p in net.state_dict().values())
    margin = min(64 * 1024, max_bytes // 8)  # the safetensors header
    if fp32 + margin <= max_bytes:
        path = save_weights(net, out / f"{name}.safetensors")
        return {"format": "fp32", "files": [path.name, path.with_suffix(".json").name], "bytes": path.stat().st_size}
    from safetensors.torch import save_file

    state = {
        k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in net.state_dict().items()
    }
    shards, cur, size = [], {}, 0
    for k, v in state.items():
        nb = v.numel() * v.element_size()
        if cur and size + nb + margin > max_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += nb
    shards.append(cur)
    config = json.dumps(net.config, indent=2, sort_keys=True)
    files = []
    for i, sh in enumerate(shards):
        f = out / f"{name}.fp16-of-{len(shards)}-{i}.safetensors"
        save_file(sh, str(f), metadata={"cajnn_config": config, "shard": f"{i}/{len(shards)}", "dtype": "fp16"})
        files.append(f.name)
    (out / f"{name}.json").write_text(config + "\n")
    return {
        "format": "fp16 shards",
        "files": files + [f"{name}.json"],
        "fp32_bytes": fp32,
        "merge": f"python benchmarks/gpu_train_shipped.py --merge-shards <dir> models/{name}.safetensors",
    }


def merge_shards(folder: Path, dest: Path) -> None:
    from safetensors import safe_open

    from cajnn.archs import CAJNN

    shards = sorted(folder.glob("*.fp16-of-*.safetensors"))
    if not shards:
        raise SystemExit(f"no *.fp16-of-*.safetensors in {folder}")
    state, config = {}, None
    for f in shards:
        with safe_open(str(f), framework="pt") as fh:
            config = json.loads(fh.metadata()["cajnn_config"])
            state.update({k: fh.get_tensor(k) for k in fh.keys()})
    net = CAJNN(**config)
    net.load_state_dict(state, strict=True)  # fp16 -> fp32 parameters
    save_weights(net, dest)
    print(f"{len(shards)} shards -> {dest} ({sum(v.numel() for v in state.values()) / 1e6:.2f}M parameters)")


# --------------------------------------------------------------------------- summary


def summary(res: dict) -> str:
    lines = []
    ev = res.get("evaluation", {}).get("results")
    tr = res.get("train", {})
    if tr:
        lines.append(
            f"Training: {tr.get('model_preset')} ({tr.get('params_m')}M params), batch {tr.get('batch')}, "
            f"{tr.get('steps')} steps / {tr.get('samples')} samples in {tr.get('train_seconds')} s "
            f"({tr.get('it_per_s')} it/s, {tr.get('samples_per_s')} samples/s), stopped: {tr.get('stopped')}, "
            f"final loss {tr.get('final_loss')}, peak {tr.get('peak_gpu_memory_gib')} GiB"
        )
    if ev:
        qfs = list(ev)
        lines.append("")
        lines.append(
            "Held-out (" + ", ".join(res["evaluation"]["images"]) + "): PSNR-Y gain over bicubic, dB "
            "(border 4; bicubic row: PSNR-Y / SSIM-Y)"
        )
        lines.append(f"{'method':<26}" + "".join(f"{q.upper():>18}" for q in qfs))
        methods = list(ev[qfs[0]])
        for name in methods:
            cells = []
            for q in qfs:
                r = ev[q][name]
                cells.append(
                    f"{r['psnr_y']:.2f} / {r['ssim_y']:.4f}"
                    if name == "bicubic"
                    else f"{r['gain_db']:+.3f} ({r['ssim_y']:.4f})"
                )
            lines.append(f"{name:<26}" + "".join(f"{c:>18}" for c in cells))
        card = res.get("evaluation", {}).get("cpu_card_gain_db")
        if card:
            lines.append(
                f"{'cpu card (its own eval)':<26}"
                + "".join(f"{card.get('holdout/' + q, float('nan')):>+18.3f}" for q in qfs)
            )
    pc = res.get("precision")
    if pc:
        lines.append("")
        lines.append(
            f"Inference precision, enhance() on a {pc['input'][1]}x{pc['input'][0]} LR input "
            f"(median of {pc['reps']}): ms/image | PSNR vs strict fp32 (dB) | max |diff|"
        )
        for name, rows in pc.items():
            if not isinstance(rows, dict) or name in ("note",):
                continue
            for label, r in rows.items():
                if "error" in r:
                    lines.append(f"  {name:<12} {label:<12} {r['error']}")
                else:
                    p = "ref" if r["psnr_vs_fp32_strict"] is None else f"{r['psnr_vs_fp32_strict']:.2f}"
                    lines.append(
                        f"  {name:<12} {label:<12} {1000 * r['seconds_median']:9.1f} ms  {p:>7}  {r['max_abs_diff']:4d}"
                    )
    lines.append("")
    lines.append(
        "phases (s): "
        + ", ".join(f"{k} {v}" for k, v in res.get("phases_s", {}).items())
        + f"; total {res.get('elapsed_s')} s; status {res.get('status')}"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.merge_shards:
        merge_shards(Path(args.merge_shards[0]), Path(args.merge_shards[1]))
        return 0
    out = args.out or Path(os.environ.get("OUT") or "gpu_train_shipped_out")
    out.mkdir(parents=True, exist_ok=True)
    res = Results(out / "gpu_train_shipped.json")
    res.data["args"] = {k: str(v) for k, v in vars(args).items()}
    res.data["phases_s"]["startup"] = round(time.time() - T0, 1)
    t_phase = time.time()

    # --- data prep (fork the workers before CUDA is touched)
    vendor = args.jpeg_vendor if args.jpeg_vendor is not None else args.data / "vendor"
    res.data["jpeg"] = setup_jpeg(vendor)
    prof = load_profile(args.config, args.profile)
    qfs, qf_p = profile_qualities(prof)
    paths = [p for s in args.train_sets for p in list_images(args.data / s)]
    if not paths:
        raise SystemExit(f"no training images in {args.data} / {args.train_sets}")
    if args.limit_images:
        paths = sorted(paths, key=lambda p: p.stat().st_size)[: args.limit_images]
    paths.sort(key=lambda p: -p.stat().st_size)  # largest first: balanced workers
    workers = args.workers or min(len(paths), os.cpu_count() or 1)
    log(
        f"data: {len(paths)} training images x {len(qfs)} QFs ({args.profile}) on {workers} worker(s); "
        f"JPEG {res.data['jpeg']}"
    )
    _pool, get_items = start_data_prep(paths, prof, qfs, workers)

    # --- device and model, while the workers run
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available: run with --device cpu for a smoke test")
    if not cuda:
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    net = build_model(args.model_preset).to(dev).to(memory_format=torch.channels_last).train()
    model = torch.compile(net) if args.compile else net
    n_params = sum(p.numel() for p in net.parameters())
    cpu_net = None
    if args.cpu_weights:
        cpu_net = load_weights(args.cpu_weights, map_location=dev).to(memory_format=torch.channels_last)
    res.data["env"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(dev) if cuda else platform.processor() or "cpu",
        "cpus": os.cpu_count(),
        "cudnn": torch.backends.cudnn.version() if cuda else None,
    }
    res.data["phases_s"]["model_build"] = round(time.time() - t_phase, 1)

    items = get_items()
    log(f"data ready: {len(items)} images, prep {sum(i[3] for i in items):.1f} CPU-s")
    pool = GpuPool(items, qf_p, dev, SCALE)
    res.data["data"] = {
        "profile": args.profile,
        "qf_values": qfs,
        "qf_probabilities": [round(p, 4) for p in qf_p],
        "images": {Path(n).parent.name + "/" + Path(n).name: list(hr.shape[:2]) for n, hr, _, _ in items},
        "pool_mib": round(pool.bytes / 2**20, 1),
        "min_std": args.min_std,
        "crop_lr": args.crop,
    }
    holdout = QuickHoldout(args.data / args.holdout) if args.eval_every > 0 else None
    res.data["phases_s"]["data_prep_incl_model"] = round(time.time() - t_phase, 1)
    res.write("data ready")

    # --- training
    left = args.deadline * 60 - (time.time() - T0) - args.reserve * 60
    budget = min(args.minutes * 60, left)
    if budget < args.minutes * 60:
        log(f"training budget cut to {budget:.0f} s to finish by --deadline {args.deadline} min")
    t_phase = time.time()
    try:
        rec = train(net, model, pool, args, dev, max(budget, 1.0), holdout, res)
        rec.update(
            {
                "model_preset": args.model_preset,
                "params": n_params,
                "params_m": round(n_params / 1e6, 3),
                "amp": args.amp,
                "crop_lr": args.crop,
                "lr": args.lr,
                "compile": args.compile,
            }
        )
        res.data["train"] = rec
    except Exception as exc:  # noqa: BLE001 -- still evaluate / report what there is
        res.error("train", exc)
    res.data["phases_s"]["train"] = round(time.time() - t_phase, 1)
    del pool
    if cuda:
        torch.cuda.empty_cache()
    res.write("trained")
    net.eval()
    torch.backends.cudnn.benchmark = False  # no autotuning per held-out image shape

    # --- weights (before evaluation: they are the main product)
    if not args.no_save:
        t_phase = time.time()
        try:
            res.data["weights"] = save_returnable(net, out, f"{args.model_preset}-gpu", int(args.max_file_mib * 2**20))
            log(f"weights: {res.data['weights']['files']}")
        except Exception as exc:  # noqa: BLE001
            res.error("save", exc)
        res.data["phases_s"]["save"] = round(time.time() - t_phase, 1)
        res.write()

    # --- held-out protocol
    t_phase = time.time()
    try:
        shards = res.data.get("weights", {}).get("format") == "fp16 shards"
        res.data["evaluation"] = evaluate(net, cpu_net, args, dev, shards, res)
        card = args.cpu_weights.parent / "card.json" if args.cpu_weights else None
        if card is not None and card.is_file():
            ev = json.loads(card.read_text()).get("evaluation", {})
            res.data["evaluation"]["cpu_card_gain_db"] = ev.get("gain_over_bicubic_db")
    except Exception as exc:  # noqa: BLE001
        res.error("evaluation", exc)
    res.data["phases_s"]["evaluation"] = round(time.time() - t_phase, 1)
    res.write("evaluated")

    # --- inference precision
    t_phase = time.time()
    try:
        models = {args.model_preset: net}
        if cpu_net is not None:
            models["cpu_model"] = cpu_net
        res.data["precision"] = precision_check(models, precision_input(items, args.precision_size), args, dev)
    except Exception as exc:  # noqa: BLE001
        res.error("precision", exc)
    res.data["phases_s"]["precision"] = round(time.time() - t_phase, 1)
    res.write("complete" if not res.data["errors"] else "complete with errors")
    print("\n" + summary(res.data), flush=True)
    log(f"wrote {res.path}")
    return 0 if not res.data["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
