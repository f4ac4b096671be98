"""Metrics of the downstream stage against hand-computed cases: ICDAR word accuracy, CER, face AP."""

from __future__ import annotations

import math

import pytest

from cajnn.downstream.faces import average_precision, iou
from cajnn.downstream.ocr import char_error_rate, edit_distance, normalize, word_accuracy


def test_icdar_normalization_ignores_case_and_non_alphanumerics():
    assert normalize("Hello, World!") == "helloworld"
    assert normalize("‘eyelashes!") == "eyelashes"
    assert word_accuracy(["HOUSE.", "twins", "cornbread"], ["house", "Twins", "combread"]) == pytest.approx(2 / 3)


def test_edit_distance_and_cer():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0
    # (1 substitution in 9 letters + 2 deletions... ) summed over words / total truth letters
    assert char_error_rate(["combread", ""], ["cornbread", "ab"]) == pytest.approx((2 + 2) / (9 + 2))


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_average_precision_hand_computed():
    """Two images, three faces; four detections ranked by score:
    0.9 hit (img0 face A), 0.8 miss, 0.7 hit (img1 face C), 0.6 duplicate of A (a false positive).
    Precision/recall after each: (1, 1/3), (1/2, 1/3), (2/3, 2/3), (1/2, 2/3); face B never found.
    All-point interpolated AP = 1/3 * 1 + 1/3 * 2/3 = 5/9."""
    truths = [[(0, 0, 10, 10), (50, 50, 10, 10)], [(0, 0, 20, 20)]]
    dets = [[((0, 0, 10, 10), 0.9), ((30, 30, 10, 10), 0.8), ((1, 1, 10, 10), 0.6)], [((0, 0, 20, 19), 0.7)]]
    assert average_precision(dets, truths) == pytest.approx(5 / 9)
    assert average_precision([[], []], truths) == 0.0
    assert (
        average_precision([[((0, 0, 10, 10), 1.0)], [((0, 0, 20, 20), 1.0)]], [[(0, 0, 10, 10)], [(0, 0, 20, 20)]])
        == 1.0
    )


def test_faces_outside_a_bin_are_ignored_not_false_positives():
    truths = [[(0, 0, 10, 10), (50, 50, 40, 40)]]
    dets = [[((50, 50, 40, 40), 0.9), ((0, 0, 10, 10), 0.5)]]
    small_only = [[True, False]]
    # the big face's detection is neither a hit nor a false alarm for the small-face bin
    assert average_precision(dets, truths, small_only) == 1.0
    assert math.isnan(average_precision(dets, truths, [[False, False]]))
