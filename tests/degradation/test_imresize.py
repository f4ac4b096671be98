"""Tests of the MATLAB-compatible bicubic resize (docs/design.md "Data and degradation", paper IV-A).

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


# --- x1/4 weights worked out by hand -----------------------------------------------------------
# Antialiased x1/4: h(t) = k(t / 4) / 4 and output x sits at u = 4x - 1.5, so every output reads
# inputs at distances +-0.5, +-1.5, ..., +-7.5 (the 18-tap window's ends, +-8.5, get 0). These
# weights are dyadic fractions; they already sum to exactly 1, so normalising changes nothing and
# the results below are exact in floating point.
QUARTER = {  # |distance| -> weight = k(|d| / 4) / 4
    0.5: 0.240966796875,  # k(0.125) = 1.5/512 - 2.5/64 + 1 = 0.9638671875
    1.5: 0.181884765625,  # k(0.375) = 0.7275390625
    2.5: 0.097412109375,  # k(0.625) = 0.3896484375
    3.5: 0.022705078125,  # k(0.875) = 0.0908203125
    4.5: -0.011962890625,  # k(1.125) = -0.5 * 1.423828125 + 2.5 * 1.265625 - 4.5 + 2 = -0.0478515625
    5.5: -0.018310546875,  # k(1.375) = -0.0732421875
    6.5: -0.010986328125,  # k(1.625) = -0.0439453125
    7.5: -0.001708984375,  # k(1.875) = -0.0068359375
}


def test_quarter_interior_weights_by_hand():
    assert sum(QUARTER.values()) == 0.5  # exactly: each side of the kernel holds half the mass
    for d, w in QUARTER.items():
        assert 0.25 * _k(d / 4) == w
    # column x of matlab_imresize(I, (1, 1/4)) holds the weight of every input for output x
    weights = matlab_imresize(np.eye(64), (1.0, 0.25))
    assert weights.shape == (64, 16)
    x = 8  # 1-based output 8: u = 30.5, inputs j = 23 .. 38 (1-based)
    expected = np.zeros(64)
    for j in range(23, 39):
        expected[j - 1] = QUARTER[abs(30.5 - j)]
    np.testing.assert_array_equal(weights[:, x - 1], expected)
    # every interior output has the same 16 weights, shifted by 4 inputs per output
    for x in range(3, 15):
        np.testing.assert_array_equal(weights[:, x - 1], np.roll(expected, 4 * (x - 8)))


def test_quarter_border_weights_by_hand():
    # output 1: u = 2.5 reads j = -6 .. 11; j <= 0 mirrors to 1 - j (the border sample repeats),
    # so input p gets the weight at distance |2.5 - p| plus the one at |2.5 - (1 - p)|
    folded = [
        0.279296875,  # p=1: d 1.5 (j=1)  + d 2.5 (j=0)
        0.263671875,  # p=2: d 0.5 (j=2)  + d 3.5 (j=-1)
        0.22900390625,  # p=3: d 0.5 + d 4.5
        0.16357421875,  # p=4: d 1.5 + d 5.5
        0.08642578125,  # p=5: d 2.5 + d 6.5
        0.02099609375,  # p=6: d 3.5 + d 7.5
        -0.011962890625,  # p=7: d 4.5 (+ j=-6 at d 8.5: weight 0)
        -0.018310546875,  # p=8: d 5.5
        -0.010986328125,  # p=9: d 6.5
        -0.001708984375,  # p=10: d 7.5
    ]
    assert sum(folded) == 1.0
    weights = matlab_imresize(np.eye(64), (1.0, 0.25))
    np.testing.assert_array_equal(weights[:10, 0], folded)
    assert not weights[10:, 0].any()
    # right border: output 16 (u = 62.5) is the mirror image of output 1
    np.testing.assert_array_equal(weights[::-1, 15], weights[:, 0])
    # on uint8: a ramp's first output, rounded half away from zero
    ramp = np.arange(0, 256, 4, dtype=np.uint8)[None, :]  # 0, 4, ..., 252
    value = float(np.dot(folded, ramp[0, :10].astype(float)))
    assert matlab_imresize(ramp, (1.0, 0.25))[0, 0] == math.floor(value + 0.5)


def test_upscale_x4_weights_by_hand():
    # x4 (no antialiasing when enlarging): output x at u = x/4 + 0.375, 4 taps. Output 3:
    # u = 1.125 -> inputs 0 (mirrored to 1), 1, 2, 3 at distances 1.125, 0.125, -0.875, -1.875
    weights = matlab_imresize(np.eye(8), (4.0, 1.0))  # rows: outputs, columns: inputs
    k = [_k(1.125), _k(0.125), _k(0.875), _k(1.875)]
    assert sum(k) == 1.0
    np.testing.assert_array_equal(weights[2, :3], [k[0] + k[1], k[2], k[3]])
    assert not weights[2, 3:].any()


# --- output-size form, identity, band layout ---------------------------------------------------


def test_output_shape_form():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    # same factors as the scale form -> same result
    np.testing.assert_array_equal(matlab_imresize(img, output_shape=(10, 15)), matlab_imresize(img, 0.25))
    # MATLAB: imresize(A, [rows cols]) uses scale = [rows cols] ./ size(A)
    out = matlab_imresize(img.astype(np.float64), output_shape=(17, 60))
    assert out.shape == (17, 60, 3)
    np.testing.assert_allclose(out, matlab_imresize(img.astype(np.float64), (17 / 40, 1.0)), rtol=0, atol=1e-12)
    for bad in ((0, 5), (5,), (5.0, 5), (True, 5), "ab"):
        with pytest.raises(ValueError, match="output_shape"):
            matlab_imresize(img, output_shape=bad)
    with pytest.raises(ValueError, match="exactly one"):
        matlab_imresize(img, 0.5, output_shape=(20, 30))
    with pytest.raises(ValueError, match="exactly one"):
        matlab_imresize(img)


def test_identity_returns_a_copy():
    img = np.arange(24, dtype=np.uint8).reshape(4, 6)
    out = matlab_imresize(img, 1)
    np.testing.assert_array_equal(out, img)
    out[0, 0] = 99
    assert img[0, 0] == 0
    view = np.arange(48, dtype=np.float64).reshape(4, 12)[:, ::2]
    out = matlab_imresize(view, output_shape=(4, 6))
    assert out.flags.c_contiguous and not np.shares_memory(out, view)
    np.testing.assert_array_equal(out, view)


def _sparse_reference(img: np.ndarray, scale, antialiasing: bool = True) -> np.ndarray:
    """The resize as two sparse matrix products (the pre-optimisation implementation)."""
    import scipy.sparse as sp

    from cajnn.degradation.imresize import _contributions

    scales = (scale, scale) if np.isscalar(scale) else scale
    x = img[:, :, None] if img.ndim == 2 else img
    for dim in sorted(range(2), key=lambda d: scales[d]):
        n_in = x.shape[dim]
        n_out = math.ceil(scales[dim] * n_in)
        w, idx = _contributions(n_in, n_out, scales[dim], antialiasing)
        rows = np.repeat(np.arange(n_out), w.shape[1])
        mat = sp.coo_matrix((w.ravel(), (rows, idx.ravel())), shape=(n_out, n_in)).tocsr()
        moved = np.moveaxis(x.astype(np.float64), dim, 0)
        res = np.moveaxis(np.asarray(mat @ moved.reshape(n_in, -1)).reshape((n_out,) + moved.shape[1:]), 0, dim)
        x = np.floor(np.clip(res, 0, 255) + 0.5).astype(np.uint8) if img.dtype == np.uint8 else res.astype(img.dtype)
    return x[:, :, 0] if img.ndim == 2 else x


@pytest.mark.parametrize("seed", range(6))
def test_matches_sparse_reference_on_random_images(seed):
    rng = np.random.default_rng(seed)
    for _ in range(8):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        shape = (h, w) if rng.random() < 0.3 else (h, w, int(rng.choice([1, 3, 4])))
        scale = [0.25, 0.5, 1 / 3, 2.0, 4.0, 0.7, (0.5, 2.0), (1.0, 0.25), (3.0, 0.6)][int(rng.integers(9))]
        aa = bool(rng.integers(2))
        u8 = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(matlab_imresize(u8, scale, aa), _sparse_reference(u8, scale, aa))
        f = rng.random(shape) * 255
        np.testing.assert_allclose(matlab_imresize(f, scale, aa), _sparse_reference(f, scale, aa), rtol=0, atol=1e-9)


def test_result_independent_of_band_size(monkeypatch):
    from cajnn.degradation import imresize as mod

    rng = np.random.default_rng(8)
    img = rng.integers(0, 256, (203, 157, 3), dtype=np.uint8)
    ref = {s: matlab_imresize(img, s) for s in (0.25, 4, 1 / 3)}
    for size in (1, 3, 16, 10_000):  # 1 output sample per band ... all in one band
        monkeypatch.setattr(mod, "_axis0_block", lambda m, size=size: size)
        monkeypatch.setattr(mod, "_axis1_block", lambda rows, size=size: size)
        for s, expected in ref.items():
            np.testing.assert_array_equal(matlab_imresize(img, s), expected)


def test_2k_photo_quarter_matches_reference():
    from cajnn.data.sample import load_sample

    img = np.concatenate([load_sample("astronaut")] * 2, axis=1)[:, :1000]  # 512 x 1000
    np.testing.assert_array_equal(matlab_imresize(img, 0.25), _sparse_reference(img, 0.25))
    lr = matlab_imresize(img, 0.25)
    np.testing.assert_array_equal(matlab_imresize(lr, 4), _sparse_reference(lr, 4.0))
