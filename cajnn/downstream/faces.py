"""Tiny-face detection with known boxes (paper IV-D, Table III).

WIDER FACE is not packaged; scikit-image ships LFW face crops (`lfw_subset`: 100 faces,
25 x 25 grey). Each scene places some of them, scaled to a drawn size, at drawn non-overlapping
positions on a crop of a sample photo, so every box is known exactly. What it limits: the faces
are frontal, grey and soft (25 px sources scaled up), and the scenes have no crowds or occlusion;
AP here is comparable between conditions, not with WIDER FACE's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cajnn.config.downstream import DownstreamConfig

Box = tuple[float, float, float, float]  # x, y, w, h


@dataclass(frozen=True)
class Scene:
    hr: np.ndarray  # (S, S, 3) uint8
    boxes: list[Box]


def build_face_scenes(cfg: DownstreamConfig) -> list[Scene]:
    """`cfg.scenes` scenes of `cfg.faces_per_scene` faces each, deterministic for `cfg.seed`."""
    from PIL import Image
    from skimage import data

    from cajnn.downstream.words import background_source

    faces = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)  # the first 100 are faces
    rng = np.random.default_rng([cfg.seed, 2])
    photos = background_source()
    s = cfg.scene_hr
    scenes = []
    for _ in range(cfg.scenes):
        canvas = photos(rng, s, s).copy()
        boxes: list[Box] = []
        for _ in range(200):  # rejection sampling of free positions
            if len(boxes) == cfg.faces_per_scene:
                break
            side = int(rng.integers(cfg.face_px[0], cfg.face_px[1] + 1))
            x, y = int(rng.integers(0, s - side + 1)), int(rng.integers(0, s - side + 1))
            if any(
                x < bx + bw + 4 and bx < x + side + 4 and y < by + bh + 4 and by < y + side + 4
                for bx, by, bw, bh in boxes
            ):
                continue
            face = np.asarray(
                Image.fromarray(faces[int(rng.integers(len(faces)))]).resize((side, side), Image.Resampling.BICUBIC)
            )
            canvas[y : y + side, x : x + side] = face[..., None]
            boxes.append((float(x), float(y), float(side), float(side)))
        scenes.append(Scene(canvas, boxes))
    return scenes


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (its file ships inside opencv-python-headless). Scores
    are the cascade's last-stage weights, which rank detections for the precision-recall curve."""

    name = "opencv-haar-frontalface"

    def __init__(self, min_side: int = 24):
        import cv2

        self._cv2 = cv2
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self.cascade.empty():
            raise RuntimeError("OpenCV's haarcascade_frontalface_default.xml could not be loaded")
        self.min_side = min_side

    def detect(self, image: np.ndarray) -> list[tuple[Box, float]]:
        cv2 = self._cv2
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        rects, _levels, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=3, minSize=(self.min_side, self.min_side), outputRejectLevels=True
        )
        return [
            ((float(x), float(y), float(w), float(h)), float(s))
            for (x, y, w, h), s in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1))
        ]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def average_precision(
    detections: list[list[tuple[Box, float]]],
    truths: list[list[Box]],
    counted: list[list[bool]] | None = None,
    threshold: float = 0.5,
) -> float:
    """AP at IoU >= `threshold` over several images (WIDER FACE / PASCAL VOC style).

    Detections of all images are ranked by score; each is a true positive when it overlaps a
    not yet matched truth box of its image by `threshold` or more (the best such box), else a
    false positive. Truth boxes with ``counted`` False (faces outside a size bin) are matched but
    neither counted as positives nor make their detection a false positive, as WIDER FACE
    ignores faces outside its subset. AP is the area under the precision-recall curve with
    precision made monotone (all-point interpolation).
    """
    counted = counted if counted is not None else [[True] * len(t) for t in truths]
    n_pos = sum(sum(c) for c in counted)
    if n_pos == 0:
        return float("nan")
    ranked = sorted(((score, i, box) for i, dets in enumerate(detections) for box, score in dets), key=lambda r: -r[0])
    matched = [[False] * len(t) for t in truths]
    tp, fp = [], []
    for _score, i, box in ranked:
        overlaps = [(iou(box, t), j) for j, t in enumerate(truths[i]) if not matched[i][j]]
        best, j = max(overlaps, default=(0.0, -1))
        if best >= threshold:
            matched[i][j] = True
            if not counted[i][j]:
                continue  # an ignored face: neither a hit nor a false alarm
            tp.append(1)
            fp.append(0)
        else:
            tp.append(0)
            fp.append(1)
    if not tp:
        return 0.0
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    recall = np.concatenate([[0.0], ctp / n_pos, [ctp[-1] / n_pos]])
    precision = np.concatenate([[1.0], ctp / (ctp + cfp), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope: best precision at >= recall
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))
