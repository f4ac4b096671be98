"""The paper's test protocol (IV-B) on folders of HR images.

HR is modcropped to the scale; LR = MATLAB bicubic x1/scale then JPEG at each QF (4:2:0);
methods are scored by PSNR-Y / SSIM-Y with a `crop`-pixel border removed: bicubic (MATLAB
bicubic upscaling of the JPEG input) and CAJNN (optionally self-ensembled).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from cajnn.atomic import write_json_atomic, write_text_atomic
from cajnn.config import ProfileConfig
from cajnn.data.image_io import ImageLoadError, list_images, load_rgb
from cajnn.degradation.imresize import matlab_imresize, modcrop
from cajnn.degradation.protocol import TEST_SUBSAMPLING, compress_for_test, downscale_for_test
from cajnn.inference import enhance
from cajnn.metrics import psnr_y, ssim_y
from cajnn.metrics.keys import MetricKey


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
    subsampling = profile.subsampling if profile else TEST_SUBSAMPLING
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
        clean = [downscale_for_test(hr, scale) for _, hr in images]  # once per image, not per QF
        for qf in qualities:
            sums = {m: [0.0, 0.0, 0.0] for m in methods}
            for (stem, hr), lr_clean in zip(images, clean):
                lr = compress_for_test(lr_clean, qf, subsampling)
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


def model_method(
    model: nn.Module, self_ensemble: bool = False, tile: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    return lambda lr: enhance(lr, model, self_ensemble=self_ensemble, tile=tile)


def flat_metrics(report: EvalReport) -> dict[str, float]:
    """`{"holdout/qf10/cajnn/psnr_y": 25.1, ...}` for `dvc metrics` and MLflow."""
    out = {}
    for set_name, per_qf in report.results.items():
        for qf, per_method in per_qf.items():
            for method, r in per_method.items():
                out[MetricKey(set_name, qf, method, "psnr_y").format()] = round(r.psnr_y, 4)
                out[MetricKey(set_name, qf, method, "ssim_y").format()] = round(r.ssim_y, 5)
    return out


def markdown_table(
    report: EvalReport, params_m: float, method_labels: dict[str, str], method_params_m: dict[str, float] | None = None
) -> str:
    """Methods x sets, PSNR/SSIM-Y per QF, seconds per image and parameters (paper Table I).
    `params_m` is CAJNN's; `method_params_m` those of other methods (a chain: both networks)."""
    sets = list(report.results)
    method_params_m = method_params_m or {}
    lines = [
        "| QF | Method | Params (M) | " + " | ".join(f"{s} PSNR / SSIM | {s} s / image" for s in sets) + " |",
        "|---|---|---|" + "---|---|" * len(sets),
    ]
    qfs = sorted({qf for per_qf in report.results.values() for qf in per_qf})
    for qf in qfs:
        for method, label in method_labels.items():
            cells = []
            for s in sets:
                r = report.results[s].get(qf, {}).get(method)
                cells.append(f"{r.psnr_y:.2f} / {r.ssim_y:.4f} | {r.seconds / max(r.images, 1):.3f}" if r else "- | -")
            params = "-" if method == "bicubic" else f"{method_params_m.get(method, params_m):.3f}"
            lines.append(f"| {qf} | {label} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


METHOD_LABELS = {"bicubic": "Bicubic", "cajnn": "CAJNN", "cajnn_x8": "CAJNN (self-ensembled)"}
SAMPLE_CROP = 96  # HR pixels of each side-by-side crop
COMPARE_CROP = 256  # HR pixels of each crop of reports/compare.html's before/after sliders


def centre_box(h: int, w: int, crop: int, scale: int) -> tuple[int, int, int]:
    """(y, x, side) of the centred square crop of an HR image, on the LR pixel grid (multiples of `scale`)."""
    c = min(crop, h, w) // scale * scale
    return (h - c) // 2 // scale * scale, (w - c) // 2 // scale * scale, c


def side_by_side(lr: np.ndarray, images: dict[str, np.ndarray], scale: int, crop: int = SAMPLE_CROP) -> np.ndarray:
    """Input (nearest-upscaled) | bicubic | CAJNN | ground truth: the same centre crop of each."""
    gt = images["gt"]
    y, x, c = centre_box(*gt.shape[:2], crop, scale)
    lr_up = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
    panels = [lr_up] + [images[k] for k in ("bicubic", "cajnn", "gt") if k in images]
    return np.concatenate([p[y : y + c, x : x + c] for p in panels], axis=1)


@dataclass
class Crop:
    """The same centre crop (HR pixels) of bicubic, CAJNN and ground truth for one image at one QF."""

    set_name: str
    qf: int
    stem: str
    box: tuple[int, int, int]  # y, x, side in the modcropped HR image
    images: dict[str, np.ndarray]  # "bicubic", "cajnn", "gt": uint8 HxWx3


@dataclass(frozen=True)
class ExtraMethod:
    """A method scored beside bicubic and CAJNN (a baseline of Table I): its label in the table,
    LR uint8 -> HR uint8, and its parameter count."""

    label: str
    fn: Callable[[np.ndarray], np.ndarray]
    params: int


@dataclass
class Protocol:
    """Everything one evaluation produced."""

    report: EvalReport
    sweep: EvalReport | None
    params: int
    missing_sets: list[str]
    seconds: float
    crop_border: int
    crops: list[Crop] = field(default_factory=list)  # the first `samples` images per set and QF
    extra: dict[str, ExtraMethod] = field(default_factory=dict)
    budgets: list[str] = field(default_factory=list)  # what each model was trained with, for the table


def run_protocol(
    model: nn.Module, cfg, root: Path, sample_dir: Path | None = None, extra: dict[str, ExtraMethod] | None = None
) -> Protocol:
    """Table I (every present set x `cfg.qualities` x bicubic/CAJNN/self-ensemble, and the
    `extra` methods) and the Fig. 3 QF sweep (bicubic/CAJNN on `cfg.sweep_set`). `cfg` is an
    `EvaluateConfig`."""
    from cajnn.data.image_io import save_rgb

    t0 = time.perf_counter()
    tile = cfg.tile  # 0 = whole image: exact paper protocol, no tiling seams
    methods = {"bicubic": bicubic_method(cfg.scale), "cajnn": model_method(model, tile=tile)}
    if cfg.self_ensemble:
        methods["cajnn_x8"] = model_method(model, self_ensemble=True, tile=tile)
    extra = dict(extra or {})
    methods.update({k: m.fn for k, m in extra.items()})
    present = {k: root / v for k, v in cfg.sets.items() if (root / v).is_dir()}
    missing = sorted(set(cfg.sets) - set(present))
    if not present:
        raise FileNotFoundError(f"none of the evaluation sets exist: {cfg.sets}; run the fetch stage first")
    saved: dict[tuple[str, int], int] = {}
    crops: list[Crop] = []

    def keep_sample(set_name, qf, stem, lr, images):
        if saved.get((set_name, qf), 0) >= cfg.samples:
            return
        saved[(set_name, qf)] = saved.get((set_name, qf), 0) + 1
        # Copies of small crops only: the whole images are not kept across the loop.
        y, x, c = centre_box(*images["gt"].shape[:2], COMPARE_CROP, cfg.scale)
        crops.append(
            Crop(
                set_name,
                qf,
                stem,
                (y, x, c),
                {k: images[k][y : y + c, x : x + c].copy() for k in ("bicubic", "cajnn", "gt")},
            )
        )
        if sample_dir is not None:
            save_rgb(side_by_side(lr, images, cfg.scale), sample_dir / f"{set_name}_qf{qf}_{stem}.png")

    report = evaluate_sets(methods, present, cfg.qualities, cfg.scale, cfg.crop_border, on_image=keep_sample)
    sweep = None
    if cfg.sweep_set in present:
        sweep = evaluate_sets(
            {k: methods[k] for k in ("bicubic", "cajnn")},
            {cfg.sweep_set: present[cfg.sweep_set]},
            cfg.sweep_qualities,
            cfg.scale,
            cfg.crop_border,
        )
    n_params = sum(p.numel() for p in model.parameters())
    return Protocol(report, sweep, n_params, missing, time.perf_counter() - t0, cfg.crop_border, crops, extra)


BASELINES_RECORD = "baselines.json"  # what the `baselines` stage trained, in its output folder


def read_baselines(folder: Path) -> dict:
    """The `baselines` stage's record (no models when it was off or has not run)."""
    path = folder / BASELINES_RECORD
    return json.loads(path.read_text()) if path.is_file() else {"enabled": False, "models": {}}


def baseline_methods(record: dict, folder: Path, tile: int = 0) -> dict[str, ExtraMethod]:
    """The Table I rows of a `baselines` record (models/baselines/baselines.json): the SR-only
    row (the SR network on the JPEG input) and each chain (CAR network, then SR network)."""
    from cajnn.weights import load_weights

    models = record.get("models") or {}
    if not models:
        return {}
    nets = {name: load_weights(folder / m["weights"]) for name, m in models.items()}
    labels = {name: LABELS_BY_ARCH.get(net.config.get("arch", "cajnn"), name) for name, net in nets.items()}

    def chain(car: nn.Module, sr: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
        return lambda lr: enhance(enhance(lr, car, tile=tile), sr, tile=tile)

    out = {}
    sr_only = record.get("sr_only")
    if sr_only in nets:
        out["sr_only"] = ExtraMethod(
            f"{labels[sr_only]} (SR only)", model_method(nets[sr_only], tile=tile), models[sr_only]["params"]
        )
    for name, (car, sr) in (record.get("chains") or {}).items():
        if car in nets and sr in nets:
            out[name] = ExtraMethod(
                f"{labels[car]} + {labels[sr]}",
                chain(nets[car], nets[sr]),
                models[car]["params"] + models[sr]["params"],
            )
    return out


LABELS_BY_ARCH = {"arcnn": "ARCNN", "dncnn": "DnCNN", "rrdbnet": "RRDB"}


def wide_psnr_rows(report: EvalReport, with_set: bool = True) -> tuple[list[str], list[list]]:
    """One row per QF, one PSNR-Y column per `<set>_<method>` (or `<method>` for a single-set
    report with `with_set=False`): the shape `dvc plots` draws as one line per column."""
    columns = sorted({f"{s}_{m}" for s, per_qf in report.results.items() for per_m in per_qf.values() for m in per_m})
    qfs = sorted({qf for per_qf in report.results.values() for qf in per_qf})
    rows = []
    for qf in qfs:
        row = [qf]
        for col in columns:
            set_name, method = next((s, col[len(s) + 1 :]) for s in report.results if col.startswith(s + "_"))
            r = report.results[set_name].get(qf, {}).get(method)
            row.append(f"{r.psnr_y:.4f}" if r else "")
        rows.append(row)
    if not with_set and len(report.results) == 1:
        prefix = len(next(iter(report.results))) + 1
        columns = [c[prefix:] for c in columns]
    return ["qf", *columns], rows


def write_reports(protocol: Protocol, out: Path, title: str = "CAJNN evaluation") -> dict[str, float]:
    """metrics.json (flat, for `dvc metrics`), table.md (Table I layout), qf_curve.csv and
    qf_sweep.csv (for `dvc plots`). Returns the metrics."""
    import csv
    import io

    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = flat_metrics(protocol.report)
    metrics["params"] = protocol.params
    metrics["eval_seconds"] = round(protocol.seconds, 2)
    labels = {
        k: v
        for k, v in {**METHOD_LABELS, **{k: m.label for k, m in protocol.extra.items()}}.items()
        if any(k in m for per_qf in protocol.report.results.values() for m in per_qf.values())
    }
    table = markdown_table(
        protocol.report, protocol.params / 1e6, labels, {k: m.params / 1e6 for k, m in protocol.extra.items()}
    )
    for k, m in protocol.extra.items():
        metrics[f"params/{k}"] = m.params
    notes = ["\n".join(protocol.budgets)] if protocol.budgets else []
    if protocol.missing_sets:
        notes.append(f"Sets not present (not fetched): {', '.join(protocol.missing_sets)}")
    for s in protocol.report.skipped:
        notes.append(f"Skipped {s['file']} ({s['set']}): {s['reason']}")
    write_text_atomic(
        out / "table.md",
        f"# {title}\n\nPSNR-Y (dB) / SSIM-Y with a {protocol.crop_border}-pixel border removed; "
        "runtime = seconds per image.\n\n" + table + "".join(f"\n{n}\n" for n in notes),
    )
    write_json_atomic(out / "metrics.json", metrics)
    for name, rep, with_set in (("qf_curve.csv", protocol.report, True), ("qf_sweep.csv", protocol.sweep, False)):
        header, rows = wide_psnr_rows(rep, with_set) if rep is not None else (["qf"], [])
        text = io.StringIO(newline="")  # csv's own \r\n line ends, written as they are
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(rows)
        write_text_atomic(out / name, text.getvalue())
    return metrics
