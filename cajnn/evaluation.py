"""The paper's test protocol (IV-B) on folders of HR images.

HR is modcropped to the scale; LR = MATLAB bicubic x1/scale then JPEG at each QF (4:2:0);
methods are scored by PSNR-Y / SSIM-Y with a `crop`-pixel border removed: bicubic (MATLAB
bicubic upscaling of the JPEG input) and CAJNN (optionally self-ensembled).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from cajnn.config import ProfileConfig
from cajnn.data.image_io import ImageLoadError, list_images, load_rgb
from cajnn.degradation.imresize import matlab_imresize, modcrop
from cajnn.degradation.jpeg import jpeg_compress
from cajnn.inference import enhance
from cajnn.metrics import psnr_y, ssim_y


@dataclass
class SetResult:
    """Mean scores of one method on one set at one QF."""

    psnr_y: float
    ssim_y: float
    images: int
    seconds: float


@dataclass
class EvalReport:
    # results[set][qf][method] -> SetResult
    results: dict[str, dict[int, dict[str, SetResult]]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)


def degrade_for_test(hr: np.ndarray, scale: int, quality: int, subsampling: str = "420") -> np.ndarray:
    """Test-time LR input: MATLAB bicubic x1/scale of the modcropped HR, then JPEG."""
    return jpeg_compress(matlab_imresize(hr, 1.0 / scale), quality, subsampling=subsampling)


def evaluate_sets(
    methods: dict[str, Callable[[np.ndarray], np.ndarray]],
    sets: dict[str, str | Path],
    qualities: list[int],
    scale: int = 4,
    crop: int = 4,
    profile: ProfileConfig | None = None,
    on_image: Callable[[str, int, str, np.ndarray, dict[str, np.ndarray]], None] | None = None,
) -> EvalReport:
    """Score each method (LR uint8 -> HR uint8) on every set and QF."""
    subsampling = profile.subsampling if profile else "420"
    report = EvalReport()
    for set_name, folder in sets.items():
        images = []
        for path in list_images(folder):
            try:
                images.append((path.stem, modcrop(load_rgb(path), scale)))
            except ImageLoadError as exc:
                report.skipped.append({"set": set_name, "file": str(path), "reason": exc.reason})
        if not images:
            raise FileNotFoundError(f"evaluation set {set_name!r} at {folder} has no readable images")
        per_qf = report.results.setdefault(set_name, {})
        for qf in qualities:
            sums = {m: [0.0, 0.0, 0.0] for m in methods}
            for stem, hr in images:
                lr = degrade_for_test(hr, scale, qf, subsampling)
                outputs = {}
                for name, fn in methods.items():
                    t0 = time.perf_counter()
                    sr = fn(lr)
                    sums[name][2] += time.perf_counter() - t0
                    if sr.shape != hr.shape:
                        raise RuntimeError(f"{name} returned {sr.shape} for HR {hr.shape}")
                    sums[name][0] += psnr_y(sr, hr, crop=crop)
                    sums[name][1] += ssim_y(sr, hr, crop=crop)
                    outputs[name] = sr
                if on_image:
                    on_image(set_name, qf, stem, lr, {"gt": hr, **outputs})
            n = len(images)
            per_qf[qf] = {m: SetResult(s[0] / n, s[1] / n, n, s[2]) for m, s in sums.items()}
    return report


def bicubic_method(scale: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda lr: matlab_imresize(lr, float(scale))


def model_method(model: nn.Module, self_ensemble: bool = False, tile: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    return lambda lr: enhance(lr, model, self_ensemble=self_ensemble, tile=tile)


def flat_metrics(report: EvalReport) -> dict[str, float]:
    """`{"holdout/qf10/cajnn/psnr_y": 25.1, ...}` for `dvc metrics` and MLflow."""
    out = {}
    for set_name, per_qf in report.results.items():
        for qf, per_method in per_qf.items():
            for method, r in per_method.items():
                out[f"{set_name}/qf{qf}/{method}/psnr_y"] = round(r.psnr_y, 4)
                out[f"{set_name}/qf{qf}/{method}/ssim_y"] = round(r.ssim_y, 5)
    return out


def markdown_table(report: EvalReport, params_m: float, method_labels: dict[str, str]) -> str:
    """Methods x sets, PSNR/SSIM-Y per QF, runtime per set and parameters (paper Table I)."""
    sets = list(report.results)
    lines = [
        "| QF | Method | Params (M) | " + " | ".join(f"{s} PSNR / SSIM | {s} runtime (s)" for s in sets) + " |",
        "|---|---|---|" + "---|---|" * len(sets),
    ]
    qfs = sorted({qf for per_qf in report.results.values() for qf in per_qf})
    for qf in qfs:
        for method, label in method_labels.items():
            cells = []
            for s in sets:
                r = report.results[s].get(qf, {}).get(method)
                cells.append(f"{r.psnr_y:.2f} / {r.ssim_y:.4f} | {r.seconds:.2f}" if r else "- | -")
            params = "-" if method == "bicubic" else f"{params_m:.3f}"
            lines.append(f"| {qf} | {label} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
