"""The downstream protocol: recognizer and detector on LR, bicubic, CAJNN and HR images
(paper IV-C, Table II; IV-D, Table III), and its tables."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from cajnn.config.downstream import DownstreamConfig
from cajnn.degradation import matlab_imresize
from cajnn.degradation.protocol import degrade_for_test
from cajnn.downstream.faces import HaarFaceDetector, average_precision, build_face_scenes
from cajnn.downstream.ocr import Tesseract, char_error_rate, word_accuracy
from cajnn.downstream.words import build_word_images, x_height
from cajnn.inference import enhance_many
from cajnn.metrics.keys import FACES, TEXT, MetricKey, point_key

# Table II rows (paper's names) and Table III rows, in order.
TEXT_CONDITIONS = {
    "lr": "Baseline (LR JPEG as it is)",
    "bicubic": "Bicubic x4 + Baseline",
    "cajnn": "Ours + Baseline (CAJNN x4)",
    "cajnn_down": "Ours + Downsample + Baseline (CAJNN x4, then x1/4)",
}
FACE_CONDITIONS = {"lr": "LR (boxes x4)", "bicubic": "LR + bicubic x4", "cajnn": "LR + Ours (CAJNN x4)"}
# The paper's numbers (different data, recognizer, detector and a fully trained network).
PAPER_TEXT = {"lr": 85.30, "cajnn": 85.75, "cajnn_down": 85.57}  # ICDAR2013, TPS-ResNet-BiLSTM-Attn
PAPER_FACES = {"hr": (0.900, 0.887, 0.792), "lr": (0.824, 0.692, 0.317), "cajnn": (0.893, 0.857, 0.611)}


@dataclass
class DownstreamResult:
    metrics: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    seconds: float = 0.0


def _time(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run_downstream(model: nn.Module, cfg: DownstreamConfig, progress=None) -> DownstreamResult:
    """Word accuracy, CER and recognition time per condition and QF; face AP per size bin.

    `progress` (optional) is called with a short label after each step."""
    t0 = time.perf_counter()
    step = progress or (lambda label: None)
    res = DownstreamResult()
    m = res.metrics
    ocr = Tesseract()
    words = build_word_images(cfg)
    truth = [w.text for w in words]
    xh = sorted({x_height(f, p) for f in cfg.fonts for p in cfg.font_px})
    res.meta.update(
        recognizer=ocr.version,
        words=len(words),
        fonts=sorted({w.font for w in words}),
        lr_x_height_px=[round(xh[0] / cfg.scale, 1), round(xh[-1] / cfg.scale, 1)],
    )

    def read(key: str, images: list[np.ndarray]) -> None:
        got, sec = _time(ocr.read, images)
        m[f"{key}/word_acc"] = round(100 * word_accuracy(got, truth), 2)
        m[f"{key}/cer"] = round(100 * char_error_rate(got, truth), 2)
        m[f"{key}/ms_per_word"] = round(1000 * sec / len(images), 2)

    read("text/hr", [w.hr for w in words])
    step("text HR")
    detector = HaarFaceDetector() if cfg.scenes else None
    scenes = build_face_scenes(cfg) if cfg.scenes else []
    truths = [s.boxes for s in scenes]
    bins = {name: [[lo <= b[2] < hi for b in s.boxes] for s in scenes] for name, (lo, hi) in cfg.face_bins.items()}
    res.meta.update(
        detector=detector.name if detector else None,
        scenes=len(scenes),
        faces={name: int(sum(map(sum, c))) for name, c in bins.items()},
    )

    def detect(key: str, images: list[np.ndarray], box_scale: float = 1.0) -> None:
        found, sec = _time(
            lambda: [
                [
                    ((x * box_scale, y * box_scale, w * box_scale, h * box_scale), s)
                    for (x, y, w, h), s in detector.detect(img)
                ]
                for img in images
            ]
        )
        for name, counted in bins.items():
            m[f"{key}/ap_{name}"] = round(average_precision(found, truths, counted), 4)
        m[f"{key}/ap_all"] = round(average_precision(found, truths), 4)
        m[f"{key}/ms_per_image"] = round(1000 * sec / len(images), 1)

    if scenes:
        detect("faces/hr", [s.hr for s in scenes])
        step("faces HR")
    sr_seconds, sr_pixels = 0.0, 0
    for qf in cfg.qualities:
        lr = [degrade_for_test(w.hr, cfg.scale, qf, cfg.subsampling) for w in words]
        sr, sec = _time(enhance_many, lr, model)
        sr_seconds += sec
        sr_pixels += sum(x.shape[0] * x.shape[1] for x in lr)
        text = point_key(TEXT, qf)
        read(f"{text}/lr", lr)
        read(f"{text}/bicubic", [matlab_imresize(x, float(cfg.scale)) for x in lr])
        read(f"{text}/cajnn", sr)
        read(f"{text}/cajnn_down", [matlab_imresize(x, 1.0 / cfg.scale) for x in sr])
        step(f"text QF {qf}")
        if scenes:
            lr = [degrade_for_test(s.hr, cfg.scale, qf, cfg.subsampling) for s in scenes]
            sr, sec = _time(enhance_many, lr, model)
            sr_seconds += sec
            sr_pixels += sum(x.shape[0] * x.shape[1] for x in lr)
            faces = point_key(FACES, qf)
            detect(f"{faces}/lr", lr, float(cfg.scale))
            detect(f"{faces}/bicubic", [matlab_imresize(x, float(cfg.scale)) for x in lr])
            detect(f"{faces}/cajnn", sr)
            step(f"faces QF {qf}")
    m["cajnn_ms_per_lr_megapixel"] = round(1000 * sr_seconds / max(1, sr_pixels) * 1e6, 1)
    res.seconds = time.perf_counter() - t0
    m["downstream_seconds"] = round(res.seconds, 1)
    return res


def markdown_report(res: DownstreamResult, cfg: DownstreamConfig) -> str:
    """Tables II and III in the paper's layout, ours per QF, the paper's numbers beside."""
    m, meta = res.metrics, res.meta
    lines = [
        "# High-level vision on restored images (paper IV-C, IV-D)",
        "",
        f"Degradation: the test protocol (MATLAB bicubic x1/{cfg.scale}, JPEG 4:2:0 at QF "
        f"{', '.join(map(str, cfg.qualities))}). The paper's numbers are for other data (ICDAR2013, WIDER FACE), "
        "other recognizers/detectors and a fully trained CAJNN: compare the direction, not the values.",
        "",
        "## Text recognition (Table II)",
        "",
        f"{meta['words']} word images drawn offline (wamerican words, fonts {', '.join(meta['fonts'])}, on "
        f"sample-photo crops); LR x-height {meta['lr_x_height_px'][0]}-{meta['lr_x_height_px'][1]} px. "
        f"Recognizer: {meta['recognizer']} (LSTM, one line per image). Word accuracy (ICDAR: case-insensitive, "
        "alphanumerics only), character error rate, recognition time per word.",
        "",
    ]
    head = (
        "| Method | " + " | ".join(f"QF {q} acc. / CER" for q in cfg.qualities) + " | ms / word | paper (ICDAR2013) |"
    )
    lines += [head, "|" + "---|" * (3 + len(cfg.qualities))]
    for key, label in TEXT_CONDITIONS.items():
        per_qf = [
            {s: m[MetricKey(TEXT, q, key, s).format()] for s in ("word_acc", "cer", "ms_per_word")}
            for q in cfg.qualities
        ]
        cells = [f"{r['word_acc']:.1f} % / {r['cer']:.1f} %" for r in per_qf]
        ms = np.mean([r["ms_per_word"] for r in per_qf])
        paper = f"{PAPER_TEXT[key]:.2f} %" if key in PAPER_TEXT else "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ms:.1f} | {paper} |")
    lines.append(
        "| HR (ceiling) | "
        + " | ".join(f"{m['text/hr/word_acc']:.1f} % / {m['text/hr/cer']:.1f} %" for _ in cfg.qualities)
        + f" | {m['text/hr/ms_per_word']:.1f} | - |"
    )
    if meta.get("scenes"):
        lines += [
            "",
            "## Tiny faces (Table III)",
            "",
            f"{meta['scenes']} scenes of LFW face crops (scikit-image's `lfw_subset`) on sample-photo crops, "
            f"faces by HR side: "
            + ", ".join(f"{k} {lo}-{hi - 1} px ({meta['faces'][k]})" for k, (lo, hi) in cfg.face_bins.items())
            + f". Detector: {meta['detector']} (OpenCV). AP at IoU 0.5; faces outside a bin are ignored.",
            "",
        ]
        bins = list(cfg.face_bins)
        lines += [
            "| Input | QF | " + " | ".join(b.capitalize() for b in bins) + " | paper (Easy / Medium / Hard) |",
            "|" + "---|" * (3 + len(bins)),
        ]
        hr = " | ".join(f"{m[f'faces/hr/ap_{b}']:.3f}" for b in bins)
        lines.append(f"| HR (GT) | - | {hr} | {' / '.join(f'{v:.3f}' for v in PAPER_FACES['hr'])} |")
        for key, label in FACE_CONDITIONS.items():
            for q in cfg.qualities:
                cells = " | ".join(f"{m[MetricKey(FACES, q, key, f'ap_{b}').format()]:.3f}" for b in bins)
                paper = (
                    " / ".join(f"{v:.3f}" for v in PAPER_FACES[key])
                    if key in PAPER_FACES and q == cfg.qualities[0]
                    else ""
                )
                lines.append(f"| {label} | {q} | {cells} | {paper} |")
    lines += [
        "",
        f"CAJNN: {m['cajnn_ms_per_lr_megapixel']:.0f} ms per LR megapixel; the whole check took "
        f"{m['downstream_seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)
