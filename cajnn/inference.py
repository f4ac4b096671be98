"""Inference: enhance a uint8 RGB image with a CAJNN model, at any size, in bounded memory.

``enhance(image, model)`` runs under ``torch.inference_mode`` with channels-last activations
(oneDNN and cuDNN run 3x3 convolutions fastest in NHWC), and by default cuts large images into
tiles sized from the memory that is available (:func:`plan_tiles`), each run with ``overlap``
LR pixels of extra context on every side so that seams are invisible. Optional: the 8-way
self-ensemble of the paper's Table I ("self-ensembled" rows), bf16 autocast (GPU, or a CPU with
AVX-512 BF16 / AMX), fp16 autocast (CUDA only), and the device (``auto | cpu | cuda``).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from cajnn.archs.memory import estimate_forward_bytes
from cajnn.data.dihedral import DIHEDRAL, dihedral, dihedral_inverse
from cajnn.weights import unwrap_model as _unwrap

#: LR pixels of context added on each side of a tile (discarded after the pass).
DEFAULT_OVERLAP = 16
#: Share of the available memory (RAM on CPU, free GPU memory on CUDA) that automatic tiling
#: plans to use.
MEMORY_FRACTION = 0.5
#: Upper bound of the automatic CPU budget. On a CPU a forward pass streams every activation
#: through DRAM, so windows beyond ~450 x 450 LR pixels buy only the overlap they save
#: (<= 16 % at this size with the default overlap) while costing gigabytes; this keeps the
#: paper network's 1000x750 -> 4000x3000 run under 3 GB resident (benchmarks/bench_model.py).
CPU_MEMORY_CAP = 2 * 2**30
#: Smallest automatic tile (LR pixels): below this the overlap dominates the work.
MIN_AUTO_TILE = 32

DTYPES = {
    "fp32": None,
    "float32": None,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
#: Autocast dtypes whose activations take 2 bytes (the memory estimate of :func:`plan_tiles`).
HALF_DTYPES = (torch.bfloat16, torch.float16)


# --------------------------------------------------------------------------- device and dtype


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` as given.

    Raises ``ValueError`` for anything else and ``RuntimeError`` when CUDA is asked for but
    this torch build or machine has none.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif device in ("cpu", "cuda") or (isinstance(device, str) and device.startswith("cuda:")):
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device {device!r}: {exc}") from None
    else:
        raise ValueError(f"device {device!r}: use auto, cpu, cuda or cuda:N")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise RuntimeError(f"device {str(dev)!r} requested but CUDA is not available ({why}); use --device cpu")
    return dev


@lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX-BF16 in the Linux
    CPU flags) and torch has oneDNN. ``torch.backends.cpu.get_cpu_capability()`` reports only
    ``AVX512`` for such CPUs, so the flags are read from /proc/cpuinfo; elsewhere (macOS,
    Windows) this returns False and bf16 falls back to fp32 with a warning.

    Native support does not mean faster: without AMX (e.g. in VMs that hide it), oneDNN's
    AVX-512 BF16 convolutions ran slower than fp32 on our test CPU (benchmarks/README.md).
    """
    flags = _cpu_flags()
    return bool(flags and {"avx512_bf16", "amx_bf16"} & flags) and torch.backends.mkldnn.is_available()


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``dtype`` (``fp32`` -> None: no autocast; ``bf16`` ->
    ``torch.bfloat16``; ``fp16`` -> ``torch.float16``). bf16 on a CPU without native bf16 (or a
    GPU without it) warns and returns None (fp32). fp16 is for CUDA devices only: on a CPU it
    raises ``ValueError`` (CPU fp16 convolutions are slow and not what bf16 hardware runs);
    it does not touch the GPU, so it can be checked without one. Unknown names raise
    ``ValueError``."""
    if dtype is None or dtype == torch.float32:
        return None
    if dtype == torch.bfloat16:
        dtype = "bf16"
    elif dtype == torch.float16:
        dtype = "fp16"
    if not isinstance(dtype, str) or dtype.lower() not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: use fp32, bf16 or fp16 (CUDA only)")
    amp = DTYPES[dtype.lower()]
    if amp is None:
        return None
    if amp == torch.float16:
        if device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return amp
    if device.type == "cuda":
        ok, where = torch.cuda.is_bf16_supported(), f"GPU {torch.cuda.get_device_name(device)}"
    else:
        ok, where = cpu_supports_bf16(), "this CPU (no avx512_bf16/amx_bf16 flag)"
    if not ok:
        warnings.warn(f"bf16 is not supported natively on {where}; running in fp32", RuntimeWarning, stacklevel=3)
        return None
    return amp


# --------------------------------------------------------------------------- memory and tiles


def available_memory(device: torch.device) -> int:
    """Bytes that can be allocated now: free GPU memory on CUDA, else ``psutil``'s available
    RAM (free + reclaimable page cache), further bounded by a cgroup (container) limit."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    avail = int(psutil.virtual_memory().available)
    limit = _cgroup_headroom()
    return min(avail, limit) if limit is not None else avail


def _cgroup_headroom() -> int | None:
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            with open(limit_file) as fh:
                raw = fh.read().strip()
            if raw == "max" or int(raw) >= 2**60:
                return None
            with open(usage_file) as fh:
                return max(int(raw) - int(fh.read().strip()), 0)
        except (OSError, ValueError):
            continue
    return None


def default_memory_budget(device: torch.device) -> int:
    """Automatic tiling budget in bytes: ``MEMORY_FRACTION`` of :func:`available_memory`,
    at most ``CPU_MEMORY_CAP`` on a CPU."""
    budget = int(MEMORY_FRACTION * available_memory(device))
    return min(budget, CPU_MEMORY_CAP) if device.type == "cpu" else budget


@dataclass(frozen=True)
class TilePlan:
    """How :func:`enhance` cuts an image: ``tile_h`` x ``tile_w`` LR regions (the whole image
    when ``n_tiles == 1``), each run with ``overlap`` pixels of context per side;
    ``estimated_bytes`` is the planned peak (whole-image buffers + one forward pass) and
    ``budget_bytes`` what it had to fit in (None when the tile was given explicitly)."""

    tile_h: int
    tile_w: int
    overlap: int
    n_tiles: int
    estimated_bytes: int
    budget_bytes: int | None


def _model_config(model: nn.Module) -> dict:
    cfg = getattr(model, "config", None)
    return cfg if isinstance(cfg, dict) else {}


def _image_bytes(h: int, w: int, scale: int, device: torch.device) -> int:
    """Whole-image buffers: the fp32 input tensor and the uint8 output (host side on CUDA)."""
    out = 3 * h * w * scale * scale
    return 12 * h * w + (out if device.type == "cpu" else 0)


def plan_tiles(
    height: int,
    width: int,
    model: nn.Module,
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    self_ensemble: bool = False,
    memory_budget: int | None = None,
) -> TilePlan:
    """Choose the tiling of a ``height`` x ``width`` LR image.

    ``tile=None`` (automatic): the whole image when its estimated peak memory fits in
    ``memory_budget`` (default :func:`default_memory_budget`), else the largest square window
    ``(T + 2*overlap)^2`` that fits, with ``T`` then shrunk to split the image into equal tiles
    (fewer wasted overlap pixels than a fixed grid with a sliver at the end). ``tile=0``: the
    whole image. ``tile=N``: N x N regions, as given. Peak memory per LR pixel comes from the
    model's config (:mod:`cajnn.archs.memory`).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size {height}x{width}: must be at least 1x1")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 0):
        raise ValueError(f"tile {tile!r}: use None (automatic), 0 (whole image) or a positive int")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap {overlap!r}: must be an int >= 0")
    dev = resolve_device(device)
    cfg = _model_config(model)
    scale = int(cfg.get("scale", 4))
    act = 2 if dtype in HALF_DTYPES else 4
    fixed = _image_bytes(height, width, scale, dev) + _param_bytes(model, dev)

    def peak(th: int, tw: int) -> int:
        win_h, win_w = (
            (height, width)
            if (th, tw) == (height, width)
            else (min(th + 2 * overlap, height), min(tw + 2 * overlap, width))
        )
        return fixed + estimate_forward_bytes(cfg, win_h * win_w, act, self_ensemble)

    def made(th: int, tw: int, budget: int | None) -> TilePlan:
        th, tw = min(th, height), min(tw, width)
        n = math.ceil(height / th) * math.ceil(width / tw)
        return TilePlan(th, tw, overlap, n, peak(th, tw), budget)

    if tile is not None:
        return made(tile or height, tile or width, None)
    budget = int(memory_budget) if memory_budget is not None else default_memory_budget(dev)
    if peak(height, width) <= budget:
        return made(height, width, budget)
    t = max(height, width)
    lo, hi = MIN_AUTO_TILE, t  # largest T with peak(T, T) <= budget, by bisection
    if peak(lo, lo) > budget:
        t = lo
    else:
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if peak(mid, mid) <= budget else (lo, mid - 1)
        t = lo
    th = math.ceil(height / math.ceil(height / t))
    tw = math.ceil(width / math.ceil(width / t))
    return made(th, tw, budget)


def _param_bytes(model: nn.Module, device: torch.device) -> int:
    """Bytes of the parameters that still have to be copied to ``device`` (the ones already
    there are part of the memory that is no longer available)."""
    if not isinstance(model, nn.Module):
        return 0
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.device.type != device.type)


# --------------------------------------------------------------------------- forward passes


def _as_rgb_uint8(image) -> np.ndarray:
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    return arr


def _forward(model: nn.Module, x: torch.Tensor, self_ensemble: bool, fmt: torch.memory_format) -> torch.Tensor:
    if not self_ensemble:
        return model(x.contiguous(memory_format=fmt)).float()
    # Mean of the 8 dihedral transforms, each undone on the output (accumulated in fp32).
    out = None
    for k in range(DIHEDRAL):
        y = dihedral_inverse(model(dihedral(x, k).contiguous(memory_format=fmt)).float(), k)
        out = y.clone() if out is None else out.add_(y)
    return out.div_(DIHEDRAL)


def _to_uint8_hwc(y: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8 (rounded, clamped) on the CPU."""
    return y[0].clamp(0, 1).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu()


def _autocast(device: torch.device, amp: torch.dtype | None):
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp)


def enhance(
    image,
    model: nn.Module,
    *,
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    self_ensemble: bool = False,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = "fp32",
    channels_last: bool = True,
    memory_budget: int | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """LR uint8 RGB (``(H, W, 3)`` array or PIL image) -> HR uint8 RGB array of exactly
    ``(scale*H, scale*W, 3)``, C-contiguous.

    Args:
        tile: LR region per forward pass. ``None`` (default): automatic, the whole image if it
            fits ``memory_budget``, else the largest tiles that do (:func:`plan_tiles`);
            ``0``: whole image; ``N``: N x N regions.
        overlap: LR pixels of context added on each side of a tile and discarded after the
            pass (each pass sees at most ``(tile + 2*overlap)^2`` pixels).
        self_ensemble: mean of the 8 flips/rotations, each undone (8x slower).
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``. The model is
            moved there in place.
        dtype: ``fp32``, ``bf16`` (autocast; on a CPU only with AVX-512 BF16 / AMX, else a
            ``RuntimeWarning`` and fp32) or ``fp16`` (autocast, CUDA only: ``ValueError`` on a
            CPU; a non-finite output, i.e. an fp16 overflow, raises ``RuntimeError``).
        channels_last: run in NHWC memory layout (faster on CPU and GPU; results equal up to
            float rounding).
        memory_budget: bytes automatic tiling may plan for (default: half the available
            memory, at most 2 GiB on a CPU).
        on_tile: called as ``on_tile(done, total)`` after each tile (progress reporting).

    The model runs in eval mode under ``torch.inference_mode``; its training flag is restored.
    """
    arr = _as_rgb_uint8(image)
    dev = resolve_device(device)
    amp = resolve_dtype(dtype, dev)
    net = _unwrap(model)
    scale = int(_model_config(net).get("scale", 4))
    h, w = arr.shape[:2]
    plan = plan_tiles(
        h,
        w,
        net,
        tile=tile,
        overlap=overlap,
        device=dev,
        dtype=amp,
        self_ensemble=self_ensemble,
        memory_budget=memory_budget,
    )
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = np.empty((h * scale, w * scale, 3), dtype=np.uint8)
    out_t = torch.from_numpy(out)
    was_training = net.training
    net.eval().to(dev)
    try:
        with torch.inference_mode(), _autocast(dev, amp):
            # HWC memory permuted to NCHW is already channels-last; .float() keeps the strides.
            x = torch.from_numpy(np.array(arr, order="C", copy=True)).to(dev).permute(2, 0, 1)[None].float().div_(255.0)
            done = 0
            for y0 in range(0, h, plan.tile_h):
                for x0 in range(0, w, plan.tile_w):
                    y1, x1 = min(y0 + plan.tile_h, h), min(x0 + plan.tile_w, w)  # region owned
                    ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)  # window with context
                    yb, xb = min(y1 + overlap, h), min(x1 + overlap, w)
                    sr = _forward(net, x[:, :, ya:yb, xa:xb], self_ensemble, fmt)
                    if sr.shape[-2:] != ((yb - ya) * scale, (xb - xa) * scale):
                        raise RuntimeError(
                            f"model returned {tuple(sr.shape)} for a {yb - ya}x{xb - xa} input; "
                            f"expected scale {scale} (model.config['scale'])"
                        )
                    if amp == torch.float16 and not bool(torch.isfinite(sr).all()):
                        raise RuntimeError("fp16 overflowed (non-finite output); use bf16 or fp32")
                    crop = sr[:, :, (y0 - ya) * scale : (y1 - ya) * scale, (x0 - xa) * scale : (x1 - xa) * scale]
                    out_t[y0 * scale : y1 * scale, x0 * scale : x1 * scale].copy_(_to_uint8_hwc(crop))
                    del sr, crop
                    done += 1
                    if on_tile is not None:
                        on_tile(done, plan.n_tiles)
        return out
    finally:
        net.train(was_training)


def enhance_many(
    images: list[np.ndarray],
    model: nn.Module,
    *,
    multiple: int = 16,
    batch_size: int = 32,
    device: str | torch.device = "auto",
) -> list[np.ndarray]:
    """Many small LR images (word crops, thumbnails) -> their HR images, in batches.

    Each image is padded (edge pixels repeated) to a multiple of `multiple` on each side, so
    that images of similar size share one shape: batched, and compiled once by oneDNN instead
    of once per shape (per-image calls of :func:`enhance` on 500 differently sized words spent
    most of their time there). The padding is cut off the output; pixels near the right and
    bottom edges see repeated edge pixels instead of the image border, as a tile's edge does."""
    if not images:
        return []
    dev = resolve_device(device)
    net = _unwrap(model)
    scale = int(_model_config(net).get("scale", 4))
    arrays = [_as_rgb_uint8(img) for img in images]
    buckets: dict[tuple[int, int], list[int]] = {}
    for i, a in enumerate(arrays):
        buckets.setdefault((-(-a.shape[0] // multiple) * multiple, -(-a.shape[1] // multiple) * multiple), []).append(i)
    out: list[np.ndarray | None] = [None] * len(arrays)
    was_training = net.training
    net.eval().to(dev)
    try:
        with torch.inference_mode():
            for (ph, pw), idx in buckets.items():
                for start in range(0, len(idx), batch_size):
                    part = idx[start : start + batch_size]
                    batch = np.stack(
                        [
                            np.pad(
                                arrays[i],
                                ((0, ph - arrays[i].shape[0]), (0, pw - arrays[i].shape[1]), (0, 0)),
                                mode="edge",
                            )
                            for i in part
                        ]
                    )
                    x = torch.from_numpy(batch).to(dev).permute(0, 3, 1, 2).float().div_(255.0)
                    y = net(x.contiguous(memory_format=torch.channels_last)).float()
                    y = y.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                    for k, i in enumerate(part):
                        h, w = arrays[i].shape[:2]
                        out[i] = np.ascontiguousarray(y[k, : h * scale, : w * scale])
        return out  # type: ignore[return-value]
    finally:
        net.train(was_training)


__all__ = [
    "CPU_MEMORY_CAP",
    "DEFAULT_OVERLAP",
    "DTYPES",
    "HALF_DTYPES",
    "MEMORY_FRACTION",
    "TilePlan",
    "available_memory",
    "cpu_supports_bf16",
    "default_memory_budget",
    "enhance",
    "enhance_many",
    "plan_tiles",
    "resolve_device",
    "resolve_dtype",
]
