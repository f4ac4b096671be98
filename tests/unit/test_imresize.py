"""Tests of the MATLAB-compatible bicubic resize (SPEC "Data and degradation", paper IV-A).

The expected values are computed here independently from MATLAB's written-out definition:

* kernel: cubic convolution, a = -0.5:
  k(t) = 1.5|t|^3 - 2.5|t|^2 + 1            for |t| <= 1
         -0.5|t|^3 + 2.5|t|^2 - 4|t| + 2    for 1 < |t| <= 2, else 0;
  when shrinking by s < 1 with antialiasing, h(t) = s * k(s * t) (support 4/s);
* output pixel x (1-based) sits at u = x/s + 0.5 (1 - 1/s) in input coordinates;
  its weights are h(u - j) over integer input positions j, normalised to sum 1;
* out-of-range j are mirrored with the border sample repeated (aux = [1:n, n:-1:1]):
  j < 1 -> 1 - j, j > n -> 2n + 1 - j.

Rounding: MATLAB converts double to uint8 with round-half-away-from-zero and saturation, and its
``imresizemex`` returns each 1-D pass in the input class, so a uint8 image is rounded after the
first axis too. ``np.round`` (half to even) would differ from MATLAB on exact .5 values; the test
``test_uint8_round_half_away_from_zero`` pins MATLAB's rule on a case that is exactly x.5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from cajnn.degradation import matlab_imresize, modcrop


def _k(t: float) -> float:
    a = abs(t)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    if a <= 2:
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return 0.0


def _mirror(j: int, n: int) -> int:
    """1-based symmetric index (valid for one reflection, enough for these tiny cases)."""
    if j < 1:
        return 1 - j
    if j > n:
        return 2 * n + 1 - j
    return j


def _reference_1d(row: list[float], s: float, antialias: bool = True) -> list[float]:
    """Slow scalar reference of one resized row, straight from the definition above."""
    n = len(row)
    out_n = math.ceil(n * s)
    stretch = s < 1 and antialias
    width = 4 / s if stretch else 4.0
    out = []
    for x in range(1, out_n + 1):
        u = x / s + 0.5 * (1 - 1 / s)
        terms = []
        for j in range(math.floor(u - width / 2) - 1, math.ceil(u + width / 2) + 2):
            w = s * _k(s * (u - j)) if stretch else _k(u - j)
            if w != 0.0:
                terms.append((w, row[_mirror(j, n) - 1]))
        total = sum(w for w, _ in terms)
        out.append(sum(w * v for w, v in terms) / total)
    return out


ROW8 = [10.0, 200.0, 35.0, 90.0, 140.0, 7.0, 255.0, 60.0]


def test_upscale_x2_left_border_by_hand():
    # u(1) = 1/2 + 0.5 (1 - 2) = 0.75. Positions j = -1, 0, 1, 2 are at distances 1.75, 0.75,
    # 0.25, 1.25: k = -0.0234375, 0.2265625, 0.8671875, -0.0703125 (sum exactly 1).
    # Mirroring: j = 0 -> 1, j = -1 -> 2. So out[0] = 1.09375 x1 - 0.09375 x2.
    assert _k(1.75) == -0.0234375 and _k(0.75) == 0.2265625
    assert _k(0.25) == 0.8671875 and _k(1.25) == -0.0703125
    row = np.array([ROW8], dtype=np.float64)
    out = matlab_imresize(row, 2)
    assert out.shape == (2, 16)
    expected0 = 1.09375 * ROW8[0] - 0.09375 * ROW8[1]
    assert out[0, 0] == pytest.approx(expected0, abs=1e-12)
    # right border, symmetric: out[-1] = 1.09375 x8 - 0.09375 x7
    assert out[0, -1] == pytest.approx(1.09375 * ROW8[7] - 0.09375 * ROW8[6], abs=1e-12)
    # both output rows are identical (a 1-row input mirrors onto itself)
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize("scale", [0.25, 0.5, 2, 4, 1 / 3])
def test_row_matches_definition(scale):
    row = np.array([ROW8], dtype=np.float64)
    out = matlab_imresize(row, scale)
    expected = _reference_1d(ROW8, scale)
    assert out.shape == (math.ceil(1 * scale), len(expected))
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=1e-10)


def test_shrink_quarter_border_weights_by_hand():
    # 8 -> 2 by 1/4: u(1) = 4 - 1.5 = 2.5, u(2) = 6.5; antialiased kernel 0.25 k(0.25 t),
    # support |t| < 8, so output 1 reads j = -5..10, which mirror into 1..8 on both sides.
    row = np.array([ROW8], dtype=np.float64)
    out = matlab_imresize(row, 0.25)
    assert out.shape == (1, 2)
    for x, u in ((0, 2.5), (1, 6.5)):
        acc = {}
        for j in range(-6, 16):
            w = 0.25 * _k(0.25 * (u - j))
            m = _mirror(j, 8)
            acc[m] = acc.get(m, 0.0) + w
        total = sum(acc.values())
        weights = np.array([acc.get(i, 0.0) / total for i in range(1, 9)])
        # mirrored taps fold back onto the border pixels: pixel 1 and 8 get the biggest share
        # of the outermost taps, and all 8 pixels contribute (kernel width 16 > 8).
        assert np.all(weights != 0.0)
        assert out[0, x] == pytest.approx(float(weights @ np.array(ROW8)), abs=1e-10)


def test_antialias_width():
    # A single impulse spreads over the kernel support: 4 taps at x2 / no antialias, 4/s taps
    # (here 16) when shrinking by 1/4 with antialiasing. Check through the column of an impulse.
    n = 64
    img = np.zeros((1, n))
    img[0, 31] = 1.0
    # shrinking: output x is affected iff |u(x) - 32| < 8 (1-based input position 32)
    out = matlab_imresize(img, 0.25)[0]
    s = 0.25
    affected = [x for x in range(1, 17) if abs(x / s + 0.5 * (1 - 1 / s) - 32) < 2 / s]
    assert [x for x in range(1, 17) if out[x - 1] != 0.0] == affected
    assert len(affected) == 4  # 16-wide support / stride 4
    # without antialiasing: support |t| < 2 in input pixels -> only one output sample sees it
    out_na = matlab_imresize(img, 0.25, antialiasing=False)[0]
    affected_na = [x for x in range(1, 17) if abs(x / s + 0.5 * (1 - 1 / s) - 32) < 2]
    assert [x for x in range(1, 17) if out_na[x - 1] != 0.0] == affected_na
    assert len(affected_na) == 1
    np.testing.assert_allclose(out_na, _reference_1d(list(img[0]), 0.25, antialias=False), atol=1e-12)
    # antialiasing conserves mass (interior): sum of the shrunk impulse is s * 1
    assert out.sum() == pytest.approx(0.25, abs=1e-12)


@pytest.mark.parametrize(
    "shape,scale,expected",
    [
        ((37, 53), 0.25, (10, 14)),
        ((37, 53), 4, (148, 212)),
        ((37, 53, 3), 0.25, (10, 14, 3)),
        ((40, 52), 0.25, (10, 13)),
        ((10, 7), 1 / 3, (4, 3)),
        ((5, 5), (2, 0.5), (10, 3)),
    ],
)
def test_output_size_is_ceil(shape, scale, expected):
    img = np.zeros(shape, dtype=np.uint8)
    assert matlab_imresize(img, scale).shape == expected


def test_quarter_then_sizes_after_modcrop():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (103, 130, 3), dtype=np.uint8)
    hr = modcrop(hr, 4)
    assert hr.shape == (100, 128, 3)
    lr = matlab_imresize(hr, 0.25)
    assert lr.shape == (25, 32, 3) and lr.dtype == np.uint8
    up = matlab_imresize(lr, 4)
    assert up.shape == hr.shape


def test_modcrop():
    img = np.arange(7 * 9).reshape(7, 9)
    out = modcrop(img, 4)
    np.testing.assert_array_equal(out, img[:4, :8])
    assert modcrop(img, 1).shape == (7, 9)
    with pytest.raises(ValueError):
        modcrop(img, 0)


@pytest.mark.parametrize("scale", [0.25, 0.5, 2, 4, 1 / 3])
def test_constant_image_stays_constant(scale):
    img8 = np.full((23, 31, 3), 137, dtype=np.uint8)
    out8 = matlab_imresize(img8, scale)
    assert out8.dtype == np.uint8
    assert np.all(out8 == 137)
    imgf = np.full((23, 31), 0.3125, dtype=np.float64)
    outf = matlab_imresize(imgf, scale)
    assert outf.dtype == np.float64
    np.testing.assert_allclose(outf, 0.3125, rtol=0, atol=1e-14)
    img32 = imgf.astype(np.float32)
    assert matlab_imresize(img32, scale).dtype == np.float32


def test_uint8_round_half_away_from_zero():
    # out[0] = 1.09375 * 17 - 0.09375 * 1 = 18.5 exactly (dyadic weights). MATLAB: 19.
    # np.round would give 18 (half to even).
    row_f = np.array([[17.0, 1.0, 5.0, 5.0]])
    assert matlab_imresize(row_f, 2)[0, 0] == 18.5
    row_u8 = row_f.astype(np.uint8)
    assert matlab_imresize(row_u8, 2)[0, 0] == 19


def test_uint8_clipping_and_rounding_match_float():
    step = np.array([[0, 0, 0, 0, 255, 255, 255, 255]], dtype=np.uint8)
    outf = matlab_imresize(step.astype(np.float64), 2)
    assert outf.min() < 0 and outf.max() > 255  # cubic overshoot
    out8 = matlab_imresize(step, 2)
    assert out8.dtype == np.uint8
    expected = np.floor(np.clip(outf, 0, 255) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out8, expected)
    assert out8.min() == 0 and out8.max() == 255


def test_uint8_rounds_after_each_pass_like_matlab():
    # MATLAB's imresizemex returns each pass as uint8: rows (dim 1) first for equal scales,
    # rounded, then columns. Rebuild that from two 1-axis float resizes.
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    out = matlab_imresize(img, 0.25)

    def rnd(x):
        return np.floor(np.clip(x, 0, 255) + 0.5)

    rows = rnd(matlab_imresize(img.astype(np.float64), (0.25, 1)))
    both = rnd(matlab_imresize(rows, (1, 0.25)))
    np.testing.assert_array_equal(out, both.astype(np.uint8))


def test_dimension_order_larger_shrink_first():
    # (1, 0.25): columns shrink more, so MATLAB resizes columns first; with uint8 rounding in
    # between the order is observable.
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (24, 24), dtype=np.uint8)

    def rnd(x):
        return np.floor(np.clip(x, 0, 255) + 0.5)

    f = img.astype(np.float64)
    cols_first = rnd(matlab_imresize(rnd(matlab_imresize(f, (1, 0.25))), (0.5, 1)))
    rows_first = rnd(matlab_imresize(rnd(matlab_imresize(f, (0.5, 1))), (1, 0.25)))
    out = matlab_imresize(img, (0.5, 0.25))
    np.testing.assert_array_equal(out, cols_first.astype(np.uint8))
    assert not np.array_equal(cols_first, rows_first)  # the order matters on this input


def test_interior_matches_pillow_bicubic():
    # Pillow's BICUBIC is the same a = -0.5 kernel with the same antialiasing and pixel centres
    # but handles borders differently (it truncates the kernel); away from the borders the two
    # must agree (Pillow computes "F" images in float32).
    rng = np.random.default_rng(3)
    img = rng.random((64, 48)) * 255
    for scale, margin in ((0.25, 3), (0.5, 3), (2, 6), (4, 12)):
        ours = matlab_imresize(img, scale)
        pil = Image.fromarray(img.astype(np.float32), "F").resize(
            (ours.shape[1], ours.shape[0]), Image.Resampling.BICUBIC
        )
        pil = np.asarray(pil, dtype=np.float64)
        np.testing.assert_allclose(ours[margin:-margin, margin:-margin], pil[margin:-margin, margin:-margin], atol=1e-3)


def test_channels_independent_and_2d_equals_3d():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    out = matlab_imresize(img, 0.25)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], matlab_imresize(np.ascontiguousarray(img[:, :, c]), 0.25))
    # non-contiguous views work too
    np.testing.assert_array_equal(matlab_imresize(img[:, ::-1], 0.5), matlab_imresize(img[:, ::-1].copy(), 0.5))


@pytest.mark.parametrize(
    "img,scale",
    [
        (np.zeros((4, 4), dtype=np.int32), 0.5),
        (np.zeros((4,), dtype=np.uint8), 0.5),
        (np.zeros((4, 4), dtype=np.uint8), 0),
        (np.zeros((4, 4), dtype=np.uint8), -1),
        (np.zeros((4, 4), dtype=np.uint8), float("nan")),
        (np.zeros((0, 4), dtype=np.uint8), 0.5),
    ],
)
def test_rejects_bad_input(img, scale):
    with pytest.raises(ValueError):
        matlab_imresize(img, scale)
