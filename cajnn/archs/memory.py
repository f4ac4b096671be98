"""Peak activation memory of a CAJNN forward pass, per LR input pixel (used by the automatic
tiling of :func:`cajnn.inference.enhance`).

The estimate is a liveness analysis of :meth:`CAJNN.forward <cajnn.archs.cajnn_arch.CAJNN.forward>`
in inference mode (no autograd graph), batch 1, counting the tensors that are alive at the same
time in each phase, in elements per LR pixel (``F = nf``, ``G = growth``, ``C = in_ch``,
``s = scale``; an HR tensor of ``k`` channels costs ``k * s^2`` per LR pixel):

* head / context (III-A1): ASPP keeps ``f^L``, its three branch outputs and their concatenation:
  ``7F``; the sequential cascade ``2F``; the non-local block about ``7F`` (its attention runs
  through ``scaled_dot_product_attention``, whose CPU and CUDA kernels do not materialise the
  ``N x N`` matrix; the compute still grows with ``N^2``).
* trunk (III-A2): ``f^L'``, the RRDB input, the dense block's list of features and their
  concatenation (``F + 4G`` each) and the last conv's output: ``5F + 8G``.
* upsampler (III-A3): ``f^L'`` and the trunk sum stay alive; each x r PixelShuffle stage holds
  the conv output and the shuffled copy, ``2 F a`` with ``a`` the area factor after the stage
  (``34F`` for the paper's x4: the dominant term, 8.7 KB per LR pixel in fp32).
* enhancement convs at HR and the bilinear global skip (eq. 5).

Measured against the peak resident set size of real forward passes on this project's CPU
(``benchmarks/bench_model.py`` prints both), the allocator adds 5-40 % on top (more for small
tensors that glibc keeps in its heap), hence :data:`ALLOCATOR_FACTOR` and :data:`ALLOCATOR_SLACK`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Multiplier for allocator overhead and fragmentation (peak RSS / live tensor bytes was
#: 1.05-1.45 in our measurements, the high end only for windows under ~150 x 150 LR pixels).
ALLOCATOR_FACTOR = 1.3
#: Constant allocator slack in bytes (heap fragmentation, oneDNN scratchpads, weight reorders).
ALLOCATOR_SLACK = 32 * 2**20

_PAPER_LIKE = {
    "nf": 64,
    "growth": 32,
    "num_blocks": 20,
    "context": "aspp",
    "upsampler": "pixelshuffle",
    "in_ch": 3,
    "global_skip": True,
}


def _stage_areas(scale: int) -> list[int]:
    return {2: [4], 3: [9], 4: [4, 16]}.get(scale, [scale * scale])


def peak_activation_bytes_per_pixel(
    config: Mapping[str, Any] | None,
    act_bytes: int = 4,
    self_ensemble: bool = False,
) -> float:
    """Live-tensor bytes per LR input pixel at the peak of one forward pass (no allocator
    overhead; see :func:`estimate_forward_bytes`).

    ``config`` is ``CAJNN.config``; a ``None`` or foreign config (a model that is not a CAJNN)
    is treated as the paper network at the config's ``scale`` (default 4), a conservative guess
    for SR networks of that size. ``act_bytes`` is the element size of the activations
    (4 for fp32, 2 under bf16 autocast: convolutions then produce bf16 while the input and the
    bilinear skip stay fp32). ``self_ensemble`` adds the ensemble's accumulator and the
    transformed copies.
    """
    cfg = dict(config or {})
    if not {"nf", "growth", "upsampler", "context"} <= cfg.keys():
        cfg = {**_PAPER_LIKE, "scale": int(cfg.get("scale", 4))}
    f, g, c, s = int(cfg["nf"]), int(cfg["growth"]), int(cfg.get("in_ch", 3)), int(cfg["scale"])
    nb = int(cfg.get("num_blocks", 1))
    e, io = float(act_bytes), 4.0
    hr = s * s

    context = {"aspp": 7 * f, "sequential_atrous": 2 * f, "nonlocal": 7 * f}.get(cfg["context"], f)
    phases = [io * c + e * context]
    phases.append(io * c + e * ((5 * f + 8 * g) if nb > 0 else 2 * f))
    phases.append(io * c + e * 4 * f)  # trunk conv + the sum that feeds the upsampler

    held = io * c + e * 2 * f  # x, f^L' and the trunk sum live through the upsampler
    if cfg["upsampler"] == "pixelshuffle_single":
        up_ch = c
        phases.append(held + e * 2 * c * hr)
    else:
        up_ch = f
        prev = 1
        for area in _stage_areas(s):
            if cfg["upsampler"] == "upconv":  # stage input + interpolated copy + conv output
                phases.append(held + e * f * ((prev if prev > 1 else 0) + 2 * area))
            else:  # conv output + PixelShuffle copy
                phases.append(held + e * 2 * f * area)
            prev = area
    # enhancement convs: upsampler output, conv1 output, conv2 output (x and f^L' still held)
    phases.append(io * c + e * f + e * (up_ch + f + c) * hr)
    # global skip: network output (activation dtype), bilinear upsample and sum in fp32
    phases.append(io * c + e * f + (e + 2 * io) * c * hr)
    peak = max(phases)
    if self_ensemble:  # transformed input, fp32 accumulator, undone output, running sum
        peak += io * c + 3 * io * c * hr
    return peak


def estimate_forward_bytes(
    config: Mapping[str, Any] | None,
    pixels: int,
    act_bytes: int = 4,
    self_ensemble: bool = False,
) -> int:
    """Estimated peak extra resident memory (bytes) of one forward pass over ``pixels`` LR
    pixels: live tensors times :data:`ALLOCATOR_FACTOR` plus :data:`ALLOCATOR_SLACK`."""
    per_px = peak_activation_bytes_per_pixel(config, act_bytes, self_ensemble)
    return int(per_px * pixels * ALLOCATOR_FACTOR + ALLOCATOR_SLACK)
