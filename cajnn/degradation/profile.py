"""Degradation profiles: HR -> shrink -> (cap) -> JPEG one or more times, as a platform would.

A :class:`~cajnn.config.ProfileConfig` (from `params.yaml`, `degrade.profiles`) says how; this
module does it. The `paper` profile is the paper's training degradation (IV-A): x1/4 MATLAB
bicubic, QF uniform in 10..100, 4:2:0, the whole LR image compressed once.

The work is split so that the costly, deterministic part runs once per image and only the
random part runs once per draw:

* :func:`prepare` -- modcrop, optional longest-side cap, shrink by ``scale``: the clean LR image
  and the HR target aligned with it (``hr.shape == scale * lr.shape``);
* :func:`draw_plans` -- K random degradations (:class:`JpegPass` sequences: QF and block-grid
  offset of each compression pass) from a seeded generator, so a seed fixes them;
* :func:`apply_plan` -- crop and JPEG-encode/decode the whole LR image pass by pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cajnn.config import ProfileConfig
from cajnn.config.degrade import RESIZE_KERNELS
from cajnn.degradation.imresize import matlab_imresize, modcrop
from cajnn.degradation.jpeg import jpeg_decode, jpeg_encode

__all__ = [
    "Degraded",
    "JpegPass",
    "Prepared",
    "apply_plan",
    "cap_shape",
    "degrade",
    "degrade_image",
    "draw_plans",
    "draw_qualities",
    "fixed_plan",
    "plan_label",
    "prepare",
    "resize_to",
    "shrink",
]


def _pillow_filters() -> dict[str, int]:
    from PIL import Image

    return {
        "pillow_bicubic": Image.Resampling.BICUBIC,
        "pillow_lanczos": Image.Resampling.LANCZOS,
        "pillow_bilinear": Image.Resampling.BILINEAR,
    }


PILLOW_KERNELS = ("pillow_bicubic", "pillow_lanczos", "pillow_bilinear")


@dataclass(frozen=True)
class JpegPass:
    """One compression: crop ``dy`` rows / ``dx`` columns off the top / left (LR pixels), then
    JPEG-encode and decode the whole image at ``quality``."""

    quality: int
    dy: int = 0
    dx: int = 0


Plan = tuple[JpegPass, ...]


@dataclass(frozen=True)
class Prepared:
    """The clean LR image and the HR target aligned with it (``hr = scale x lr`` in size)."""

    hr: np.ndarray
    lr: np.ndarray


@dataclass(frozen=True)
class Degraded:
    """One degradation of one image: HR target, degraded LR (decoded), the last JPEG's bytes,
    and the total offset (rows, cols) cropped off the clean LR image's top-left."""

    hr: np.ndarray
    lr: np.ndarray
    jpeg: bytes
    offset: tuple[int, int]
    plan: Plan


# --- resizing ---------------------------------------------------------------------------------


def resize_to(img: np.ndarray, shape: tuple[int, int], kernel: str) -> np.ndarray:
    """Resize a uint8 image to ``shape`` = (rows, cols) with a profile kernel (antialiased)."""
    if kernel == "matlab_bicubic":
        return matlab_imresize(img, output_shape=shape)
    if kernel not in PILLOW_KERNELS:
        raise ValueError(f"unknown resize kernel {kernel!r}; known: {', '.join(RESIZE_KERNELS)}")
    from PIL import Image

    out = Image.fromarray(np.ascontiguousarray(img)).resize(
        (shape[1], shape[0]), resample=_pillow_filters()[kernel], reducing_gap=None
    )
    return np.asarray(out, dtype=np.uint8)


def shrink(hr: np.ndarray, profile: ProfileConfig) -> np.ndarray:
    """HR (modcropped to the scale) -> clean LR with the profile's resize kernel."""
    hr = modcrop(hr, profile.scale)
    if profile.scale == 1:
        return np.array(hr, copy=True)
    if profile.resize == "matlab_bicubic":
        return matlab_imresize(hr, 1.0 / profile.scale)  # the paper's call, MATLAB's scale form
    return resize_to(hr, (hr.shape[0] // profile.scale, hr.shape[1] // profile.scale), profile.resize)


def cap_shape(shape: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(rows, cols) scaled so that the longest side is ``max_side`` (rounded half up), or
    unchanged when it already fits (or there is no cap)."""
    h, w = int(shape[0]), int(shape[1])
    if max_side is None or max(h, w) <= max_side:
        return h, w
    f = max_side / max(h, w)
    return max(1, math.floor(h * f + 0.5)), max(1, math.floor(w * f + 0.5))


def prepare(hr: np.ndarray, profile: ProfileConfig) -> Prepared:
    """HR uint8 RGB -> (aligned HR target, clean LR) per the profile; raises ValueError when the
    image is too small to shrink."""
    s = profile.scale
    if profile.max_side is not None and profile.cap == "before":
        capped = cap_shape(hr.shape[:2], profile.max_side)
        if capped != hr.shape[:2]:
            hr = matlab_imresize(hr, output_shape=capped)  # the ground truth: a clean resize
    if min(hr.shape[:2]) < s:
        raise ValueError(f"{hr.shape[1]}x{hr.shape[0]} is smaller than the x{s} scale factor")
    hr = modcrop(hr, s)
    lr = shrink(hr, profile)
    if profile.max_side is not None and profile.cap == "after":
        capped = cap_shape(lr.shape[:2], profile.max_side)
        if capped != lr.shape[:2]:
            lr = resize_to(lr, capped, profile.resize)  # the platform's own resize, on top
            hr = matlab_imresize(hr, output_shape=(capped[0] * s, capped[1] * s))
    return Prepared(hr=hr, lr=lr)


# --- random draws -----------------------------------------------------------------------------


def _draw_qfs(profile: ProfileConfig, n: int, rng: np.random.Generator) -> list[int]:
    if profile.qf_values is not None:
        values = np.asarray(profile.qf_values, dtype=np.int64)
        weights = np.asarray(profile.qf_weights or [1.0] * len(values), dtype=np.float64)
        return [int(q) for q in rng.choice(values, size=n, p=weights / weights.sum())]
    return [int(q) for q in rng.integers(profile.qf_min, profile.qf_max + 1, size=n)]


def draw_qualities(profile: ProfileConfig, k: int, rng: np.random.Generator) -> list[int]:
    """`k` quality factors drawn from the profile's distribution (uniform range or weighted list)."""
    return _draw_qfs(profile, k, rng)


def draw_plans(profile: ProfileConfig, k: int, rng: np.random.Generator, quality: int | None = None) -> list[Plan]:
    """`k` random degradations of one image, in a fixed order of draws from ``rng``.

    First the K first-pass QFs (so that for the `paper` profile this is exactly K uniform
    integers); then, per draw and pass: the QF of a re-compression (``recompress_quality:
    draw``) and the block-grid offset (dy, dx) when ``grid_offset > 0``. ``quality`` fixes
    every pass's QF instead (offsets are still drawn).
    """
    first = [quality] * k if quality is not None else _draw_qfs(profile, k, rng)
    plans = []
    for i in range(k):
        passes = []
        for p in range(profile.compressions):
            q = first[i]
            if p > 0 and profile.recompress_quality == "draw" and quality is None:
                q = _draw_qfs(profile, 1, rng)[0]
            dy = dx = 0
            if profile.grid_offset:
                dy, dx = (int(v) for v in rng.integers(0, profile.grid_offset + 1, size=2))
            passes.append(JpegPass(int(q), dy, dx))
        plans.append(tuple(passes))
    return plans


def fixed_plan(profile: ProfileConfig, quality: int) -> Plan:
    """Every pass at ``quality``, no grid offset."""
    return tuple(JpegPass(int(quality)) for _ in range(profile.compressions))


def plan_label(plan: Plan) -> str:
    """Compact text of a plan: ``"37"``; ``"90>70"`` for two passes; ``"90@3,5>70@0,2"`` with
    grid offsets (rows, cols cropped before that pass)."""
    return ">".join(f"{p.quality}@{p.dy},{p.dx}" if (p.dy or p.dx) else str(p.quality) for p in plan)


# --- applying ---------------------------------------------------------------------------------


def apply_plan(prep: Prepared, profile: ProfileConfig, plan: Plan) -> Degraded:
    """Crop and compress the whole LR image pass by pass (the HR target is cropped alike)."""
    if not plan:
        raise ValueError("a degradation plan needs at least one JPEG pass")
    s = profile.scale
    lr = prep.lr
    oy = ox = 0
    data = b""
    for p in plan:
        if p.dy or p.dx:
            if p.dy >= lr.shape[0] or p.dx >= lr.shape[1]:
                raise ValueError(
                    f"LR image {lr.shape[1]}x{lr.shape[0]} is too small for a grid offset of ({p.dy}, {p.dx})"
                )
            lr = lr[p.dy :, p.dx :]
            oy, ox = oy + p.dy, ox + p.dx
        data = jpeg_encode(lr, p.quality, profile.subsampling)
        lr = jpeg_decode(data)
    hr = prep.hr[s * oy :, s * ox :] if (oy or ox) else prep.hr
    return Degraded(hr=hr, lr=lr, jpeg=data, offset=(oy, ox), plan=plan)


def degrade_image(hr: np.ndarray, profile: ProfileConfig, plan: Plan) -> Degraded:
    """:func:`prepare` + :func:`apply_plan` for one image and one plan."""
    return apply_plan(prepare(hr, profile), profile, plan)


def degrade(hr: np.ndarray, profile: ProfileConfig, quality: int) -> np.ndarray:
    """HR uint8 RGB -> JPEG-compressed LR uint8 RGB at a fixed QF (every pass, no grid offset).

    The whole image is compressed at once, as a web platform does, so the 8x8 block grid is
    anchored at the image origin. For the `paper` profile this is exactly the paper's
    degradation, MATLAB bicubic x1/4 then JPEG. The matching HR target is
    ``prepare(hr, profile).hr`` (the modcropped HR unless the profile caps the size).
    """
    return degrade_image(hr, profile, fixed_plan(profile, quality)).lr
