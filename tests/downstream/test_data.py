"""The downstream stage's data and its real recognizer and detector (Tesseract 5, OpenCV)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cajnn.config.downstream import DownstreamConfig
from cajnn.downstream.faces import HaarFaceDetector, average_precision, build_face_scenes
from cajnn.downstream.ocr import Tesseract, word_accuracy
from cajnn.downstream.words import build_word_images, render_word

pytestmark = pytest.mark.integration


def test_word_images_are_deterministic_and_sized_for_the_scale():
    cfg = DownstreamConfig(words=30)
    a, b = build_word_images(cfg), build_word_images(cfg)
    assert [w.text for w in a] == [w.text for w in b]
    assert all(np.array_equal(x.hr, y.hr) for x, y in zip(a, b))
    assert all(w.hr.shape[0] % 4 == 0 and w.hr.shape[1] % 4 == 0 for w in a)
    assert len({w.text.lower() for w in a}) == 30 and len({w.font for w in a}) > 1
    other = build_word_images(dataclasses.replace(cfg, seed=1))
    assert [w.text for w in other] != [w.text for w in a]


def test_the_ground_truth_is_what_is_drawn():
    """Tesseract reads >= 95 % of the words when they are drawn large on a plain background."""
    cfg = DownstreamConfig(words=200, font_px=[48, 56])
    words = build_word_images(cfg)
    rng = np.random.default_rng(0)
    clean = []
    for w in words:
        plain = np.full_like(w.hr, 235)
        clean.append(render_word(w.text, next(f for f in cfg.fonts if f.endswith(w.font)), w.font_px, plain, 180, rng))
    acc = word_accuracy(Tesseract().read(clean), [w.text for w in words])
    print(f"\n[downstream] tesseract on 200 clean large renderings: {100 * acc:.1f} %")
    assert acc >= 0.95


def test_tesseract_keeps_the_order_of_a_batch_split_over_processes():
    """Pages with text, blank pages and several processes: every reading lands at its image."""
    cfg = DownstreamConfig(words=6, font_px=[48, 48])
    words = build_word_images(cfg)
    plain = [
        render_word(
            w.text,
            next(f for f in cfg.fonts if f.endswith(w.font)),
            48,
            np.full_like(w.hr, 235),
            180,
            np.random.default_rng(0),
        )
        for w in words
    ]
    blank = np.full((40, 120, 3), 255, np.uint8)
    images = [plain[0], blank, plain[1], blank, *plain[2:]]
    got = Tesseract().read(images, processes=3)
    assert len(got) == len(images)
    assert word_accuracy([got[0], got[2], *got[4:]], [w.text for w in words]) == 1.0, got


def test_face_scenes_have_known_boxes_the_detector_finds_at_full_resolution():
    cfg = DownstreamConfig(scenes=6)
    scenes = build_face_scenes(cfg)
    again = build_face_scenes(cfg)
    assert all(np.array_equal(s.hr, t.hr) and s.boxes == t.boxes for s, t in zip(scenes, again))
    assert sum(len(s.boxes) for s in scenes) == 6 * cfg.faces_per_scene
    for s in scenes:
        for x, y, w, h in s.boxes:
            assert 0 <= x and x + w <= cfg.scene_hr and 0 <= y and y + h <= cfg.scene_hr and w == h
    det = HaarFaceDetector()
    found = [det.detect(s.hr) for s in scenes]
    assert average_precision(found, [s.boxes for s in scenes]) > 0.8
    # shuffled boxes: the same detections are now mostly false alarms
    wrong = [[(cfg.scene_hr - x - w, y, w, h) for x, y, w, h in s.boxes] for s in scenes]
    assert average_precision(found, wrong) < 0.5


def test_a_missing_word_list_or_font_says_what_to_install(tmp_path):
    from cajnn.downstream.words import DownstreamDataError

    with pytest.raises(DownstreamDataError, match="wamerican"):
        build_word_images(DownstreamConfig(word_list=str(tmp_path / "none")))
    with pytest.raises(DownstreamDataError, match="fonts-dejavu-core"):
        build_word_images(DownstreamConfig(fonts=[str(tmp_path / "x.ttf")]))
