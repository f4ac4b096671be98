"""Degradation profiles (cajnn/config/degrade.py, cajnn/degradation/profile.py): the built-in
profiles of params.yaml, validation, random draws, size caps, re-compression, grid offsets."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from cajnn.config import ConfigError, DegradeConfig, ProfileConfig, from_dict, load_params, to_dict
from cajnn.config.degrade import RESIZE_KERNELS
from cajnn.degradation import jpeg_compress, matlab_imresize, modcrop
from cajnn.degradation.jpeg import jpeg_decode, jpeg_encode
from cajnn.degradation.profile import (
    PILLOW_KERNELS,
    JpegPass,
    apply_plan,
    cap_shape,
    degrade,
    degrade_image,
    draw_plans,
    fixed_plan,
    plan_label,
    prepare,
    resize_to,
    shrink,
)
from cajnn.degradation.protocol import degrade_for_test

REPO = Path(__file__).resolve().parents[2]
PIL_SAMPLING = {"444": 0, "422": 1, "420": 2}


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / w, y * 255.0 / h, 128 + 90 * np.sin(x / 6.0) * np.cos(y / 9.0)], -1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def profiles() -> dict[str, ProfileConfig]:
    return load_params(REPO / "params.yaml").degrade.profiles


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    return photo(1000, 1800)  # 2K-like: caps of the built-in profiles apply


# --- the built-in profiles ----------------------------------------------------------------------


def test_paper_profile_is_the_spec(profiles):
    paper = profiles["paper"]
    assert paper == ProfileConfig()  # the defaults are the paper's setting
    assert (paper.resize, paper.scale, paper.qf_min, paper.qf_max, paper.subsampling) == (
        "matlab_bicubic",
        4,
        10,
        100,
        "420",
    )
    assert (paper.compressions, paper.grid_offset, paper.max_side, paper.qf_values) == (1, 0, None, None)


def test_builtin_profiles_documented_as_assumptions(profiles):
    assert set(profiles) == {"paper", "paper_lowqf", "social_feed", "messenger", "photo_host"}
    lines = (REPO / "conf" / "config.yaml").read_text().splitlines()  # the commented source of params.yaml
    for name in profiles:
        at = (
            lines.index(f"    {name}:")
            if f"    {name}:" in lines
            else next(i for i, line in enumerate(lines) if line.startswith(f"    {name}:"))
        )
        comments = []
        i = at - 1
        while lines[i].strip().startswith("#"):
            comments.insert(0, lines[i])
            i -= 1
        text = " ".join(comments + [lines[at]])
        if name == "paper":
            assert "paper IV-A" in text and "ASSUMPTION" not in text
        elif name == "paper_lowqf":  # a training choice of ours, said as such
            assert "paper's degradation" in text and "embedded default" in text
        else:
            assert "ASSUMPTION" in text, name


def test_builtin_profiles_cover_every_knob(profiles):
    ps = list(profiles.values())
    assert {p.resize for p in ps} >= {"matlab_bicubic", "pillow_lanczos", "pillow_bicubic"}
    assert {p.subsampling for p in ps} == {"420", "444"}
    assert {p.cap for p in ps if p.max_side} == {"before", "after"}
    assert any(p.qf_values and p.qf_weights for p in ps)
    assert any(p.compressions > 1 and p.recompress_quality == "draw" for p in ps)
    assert any(p.grid_offset > 0 for p in ps)


@pytest.mark.parametrize(
    "name, hr_shape, lr_shape",
    [
        ("paper", (1000, 1800), (250, 450)),
        # LR 250 x 450 capped after the shrink to a 400 px longest side: 222 x 400, HR follows
        ("social_feed", (888, 1600), (222, 400)),
        ("messenger", (1000, 1800), (250, 450)),
        # HR capped to 1600 first: 889 x 1600, modcrop -> 888 x 1600
        ("photo_host", (888, 1600), (222, 400)),
    ],
)
def test_builtin_profile_output_size(profiles, big, name, hr_shape, lr_shape):
    prof = profiles[name]
    prep = prepare(big, prof)
    assert prep.hr.shape[:2] == hr_shape and prep.lr.shape[:2] == lr_shape
    assert prep.hr.dtype == prep.lr.dtype == np.uint8
    plan = draw_plans(prof, 1, np.random.default_rng(0))[0]
    d = apply_plan(prep, prof, plan)
    oy, ox = d.offset
    assert d.lr.shape == (lr_shape[0] - oy, lr_shape[1] - ox, 3)
    assert d.hr.shape == (4 * d.lr.shape[0], 4 * d.lr.shape[1], 3)
    assert 0 <= oy <= prof.compressions * prof.grid_offset and 0 <= ox <= prof.compressions * prof.grid_offset


@pytest.mark.parametrize("name", ["paper", "social_feed", "messenger", "photo_host"])
def test_builtin_profile_qf_range_and_subsampling(profiles, name):
    prof = profiles[name]
    rng = np.random.default_rng(1)
    plans = draw_plans(prof, 400, rng)
    qfs = [p.quality for plan in plans for p in plan]
    lo, hi = prof.qf_range
    assert lo <= min(qfs) and max(qfs) <= hi
    if prof.qf_values:
        assert set(qfs) == set(prof.qf_values)
    else:
        assert min(qfs) == lo and max(qfs) == hi  # 400 draws reach both ends of the range
    assert all(len(plan) == prof.compressions for plan in plans)
    d = degrade_image(photo(96, 128), prof, plans[0])
    with Image.open(io.BytesIO(d.jpeg)) as im:
        assert im.format == "JPEG" and im.size == (d.lr.shape[1], d.lr.shape[0])
        assert JpegImagePlugin.get_sampling(im) == PIL_SAMPLING[prof.subsampling]
    np.testing.assert_array_equal(jpeg_decode(d.jpeg), d.lr)  # lr is the decoded last JPEG


def test_paper_degrade_equals_test_protocol(profiles):
    hr = photo(101, 134)
    for q in (10, 20, 40):
        expected = degrade_for_test(modcrop(hr, 4), 4, q, "420")
        np.testing.assert_array_equal(degrade(hr, profiles["paper"], q), expected)
        np.testing.assert_array_equal(
            degrade(hr, profiles["paper"], q), jpeg_compress(matlab_imresize(modcrop(hr, 4), 0.25), q, "420")
        )


def test_paper_draws_are_k_uniform_integers():
    # the paper profile consumes exactly rng.integers(10, 101, size=K): shards made before the
    # profile options existed are unchanged
    plans = draw_plans(ProfileConfig(), 6, np.random.default_rng(123))
    assert [p[0].quality for p in plans] == list(np.random.default_rng(123).integers(10, 101, size=6))
    assert all(len(p) == 1 and p[0].dy == p[0].dx == 0 for p in plans)


# --- repeated compression, grid offsets --------------------------------------------------------


def test_repeated_compression_changes_bytes():
    hr = photo(128, 160)
    once = ProfileConfig(qf_min=30, qf_max=30)
    twice = ProfileConfig(qf_min=30, qf_max=30, compressions=2)
    d1 = degrade_image(hr, once, fixed_plan(once, 30))
    d2 = degrade_image(hr, twice, fixed_plan(twice, 30))
    assert d1.jpeg != d2.jpeg and not np.array_equal(d1.lr, d2.lr)
    # pass 2 re-encodes the decoded pass-1 image
    assert d2.jpeg == jpeg_encode(d1.lr, 30, "420")
    three = ProfileConfig(compressions=3)
    d3 = degrade_image(hr, three, (JpegPass(90), JpegPass(50), JpegPass(70)))
    expected = shrink(hr, three)
    for q in (90, 50, 70):
        expected = jpeg_compress(expected, q, "420")
    np.testing.assert_array_equal(d3.lr, expected)


def test_recompress_same_vs_draw():
    same = ProfileConfig(qf_min=10, qf_max=100, compressions=3, recompress_quality="same")
    drawn = ProfileConfig(qf_min=10, qf_max=100, compressions=3, recompress_quality="draw")
    for plan in draw_plans(same, 20, np.random.default_rng(0)):
        assert len({p.quality for p in plan}) == 1
    assert any(len({p.quality for p in plan}) > 1 for plan in draw_plans(drawn, 20, np.random.default_rng(0)))
    # --quality pins every pass
    assert all(p.quality == 33 for plan in draw_plans(drawn, 5, np.random.default_rng(0), quality=33) for p in plan)


def test_grid_offset_moves_the_block_grid():
    hr = photo(128, 160)
    prof = ProfileConfig(grid_offset=7)
    prep = prepare(hr, prof)
    plan = (JpegPass(25, dy=3, dx=5),)
    d = apply_plan(prep, prof, plan)
    assert d.offset == (3, 5)
    np.testing.assert_array_equal(d.lr, jpeg_compress(prep.lr[3:, 5:], 25, "420"))
    np.testing.assert_array_equal(d.hr, prep.hr[12:, 20:])
    # not the same as cutting the offset out of the aligned compression: the grid really moved
    aligned = jpeg_compress(prep.lr, 25, "420")
    assert not np.array_equal(d.lr, aligned[3:, 5:])
    assert plan_label(plan) == "25@3,5"


def test_grid_offsets_add_up_over_passes_and_are_drawn_deterministically():
    prof = ProfileConfig(grid_offset=7, compressions=2, recompress_quality="draw")
    a = draw_plans(prof, 50, np.random.default_rng(9))
    assert a == draw_plans(prof, 50, np.random.default_rng(9))
    assert a != draw_plans(prof, 50, np.random.default_rng(10))
    offs = [v for plan in a for p in plan for v in (p.dy, p.dx)]
    assert min(offs) == 0 and max(offs) == 7
    prep = prepare(photo(160, 160), prof)
    plan = (JpegPass(40, 2, 6), JpegPass(60, 5, 1))
    d = apply_plan(prep, prof, plan)
    assert d.offset == (7, 7) and d.lr.shape == (33, 33, 3) and d.hr.shape == (132, 132, 3)
    np.testing.assert_array_equal(d.hr, prep.hr[28:, 28:])
    expected = jpeg_compress(jpeg_compress(prep.lr[2:, 6:], 40, "420")[5:, 1:], 60, "420")
    np.testing.assert_array_equal(d.lr, expected)
    assert plan_label(plan) == "40@2,6>60@5,1"


def test_grid_offset_too_big_for_image():
    prof = ProfileConfig(grid_offset=7)
    prep = prepare(photo(16, 16), prof)  # LR 4 x 4
    with pytest.raises(ValueError, match="too small"):
        apply_plan(prep, prof, (JpegPass(50, 4, 0),))


# --- caps and kernels --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, cap, expected",
    [
        ((250, 450), 400, (222, 400)),  # 250 * 400 / 450 = 222.2
        ((1000, 1800), 1600, (889, 1600)),  # 888.9
        ((450, 250), 400, (400, 222)),
        ((300, 300), 400, (300, 300)),  # fits: unchanged
        ((400, 100), 400, (400, 100)),
        ((10, 1000), 50, (1, 50)),  # never below 1 px
        ((7, 9), None, (7, 9)),
        ((3, 1000), 200, (1, 200)),  # 0.6 -> 1
        ((5, 1000), 200, (1, 200)),  # exactly 1.0
        ((15, 1000), 200, (3, 200)),
        ((25, 1000), 200, (5, 200)),
        ((250, 1000), 200, (50, 200)),
        ((242, 1000), 400, (97, 400)),  # 96.8
        ((241, 1000), 400, (96, 400)),  # 96.4
    ],
)
def test_cap_shape(shape, cap, expected):
    assert cap_shape(shape, cap) == expected


def test_cap_after_resizes_hr_target_to_match():
    hr = photo(1000, 1800)
    prof = ProfileConfig(max_side=400, cap="after", resize="pillow_lanczos")
    prep = prepare(hr, prof)
    assert prep.lr.shape == (222, 400, 3) and prep.hr.shape == (888, 1600, 3)
    np.testing.assert_array_equal(prep.hr, matlab_imresize(hr, output_shape=(888, 1600)))
    lr0 = resize_to(hr, (250, 450), "pillow_lanczos")
    np.testing.assert_array_equal(prep.lr, resize_to(lr0, (222, 400), "pillow_lanczos"))


def test_cap_before_shrinks_hr_cleanly():
    hr = photo(1000, 1800)
    prof = ProfileConfig(max_side=1600, cap="before")
    prep = prepare(hr, prof)
    capped = matlab_imresize(hr, output_shape=(889, 1600))
    np.testing.assert_array_equal(prep.hr, capped[:888])
    np.testing.assert_array_equal(prep.lr, matlab_imresize(capped[:888], 0.25))
    # a cap the image already fits changes nothing
    assert np.array_equal(prepare(hr, ProfileConfig(max_side=1800)).hr, modcrop(hr, 4))


def test_resize_kernels_all_known_and_distinct():
    assert set(RESIZE_KERNELS) == {"matlab_bicubic", *PILLOW_KERNELS}
    hr = photo(96, 128)
    outs = {}
    for kernel in RESIZE_KERNELS:
        prof = ProfileConfig(resize=kernel)
        lr = shrink(hr, prof)
        assert lr.shape == (24, 32, 3) and lr.dtype == np.uint8
        outs[kernel] = lr
        # all are proper antialiased shrinks: close to each other
        assert np.abs(lr.astype(int) - outs["matlab_bicubic"].astype(int)).mean() < 6
    assert len({o.tobytes() for o in outs.values()}) == len(RESIZE_KERNELS)
    np.testing.assert_array_equal(outs["matlab_bicubic"], matlab_imresize(hr, 0.25))
    pil = np.asarray(Image.fromarray(hr).resize((32, 24), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(outs["pillow_lanczos"], pil)
    with pytest.raises(ValueError, match="unknown resize kernel"):
        resize_to(hr, (4, 4), "nearest")


def test_too_small_for_scale():
    with pytest.raises(ValueError, match="smaller than the x4"):
        prepare(photo(3, 40), ProfileConfig())


def test_scale_one_is_pure_compression():
    hr = photo(40, 48)
    prof = ProfileConfig(scale=1)
    prep = prepare(hr, prof)
    np.testing.assert_array_equal(prep.lr, hr)
    np.testing.assert_array_equal(degrade(hr, prof, 30), jpeg_compress(hr, 30, "420"))


# --- the QF distribution -----------------------------------------------------------------------


def test_weighted_list_distribution():
    prof = ProfileConfig(qf_values=[20, 60, 90], qf_weights=[1, 0, 3])
    qfs = [p[0].quality for p in draw_plans(prof, 4000, np.random.default_rng(0))]
    assert set(qfs) == {20, 90}  # weight 0 is never drawn
    assert qfs.count(90) / len(qfs) == pytest.approx(0.75, abs=0.03)
    assert prof.qf_range == (20, 90)
    uniform = ProfileConfig(qf_values=[33, 44])
    assert set(p[0].quality for p in draw_plans(uniform, 100, np.random.default_rng(0))) == {33, 44}


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resize": "bicubic"}, "known kernels are matlab_bicubic"),
        ({"scale": 0}, "scale"),
        ({"scale": 9}, "scale"),
        ({"qf_min": 0}, "QF range"),
        ({"qf_min": 60, "qf_max": 50}, "QF range"),
        ({"qf_values": [50], "qf_min": 10}, "both qf_values and qf_min"),
        ({"qf_values": [50], "qf_max": 90}, "both qf_values and qf_min"),
        ({"qf_values": []}, "empty"),
        ({"qf_values": [0, 50]}, r"\[0\]"),
        ({"qf_values": [50, 101]}, r"\[101\]"),
        ({"qf_weights": [1.0]}, "needs qf_values"),
        ({"qf_values": [10, 20], "qf_weights": [1.0]}, "1 entries for 2"),
        ({"qf_values": [10, 20], "qf_weights": [1.0, -1.0]}, ">= 0"),
        ({"qf_values": [10, 20], "qf_weights": [0.0, 0.0]}, "positive sum"),
        ({"subsampling": "gray"}, "gray"),
        ({"max_side": 4}, "max_side"),
        ({"cap": "during"}, "before"),
        ({"compressions": 0}, "compressions"),
        ({"compressions": 9}, "compressions"),
        ({"recompress_quality": "lower"}, "same"),
        ({"grid_offset": 16}, "grid_offset"),
        ({"grid_offset": -1}, "grid_offset"),
    ],
)
def test_profile_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ProfileConfig(**kwargs)


def test_profile_validation_names_the_key_from_yaml():
    with pytest.raises(ConfigError, match=r"profiles.web.qf_weights\[1\]"):
        from_dict(DegradeConfig, {"profiles": {"web": {"qf_values": [10, 20], "qf_weights": [1, "x"]}}})
    with pytest.raises(ConfigError, match="unknown key.*grid_offst"):
        from_dict(DegradeConfig, {"profiles": {"web": {"grid_offst": 3}}})


@pytest.mark.parametrize(
    "kwargs, match",
    [({"qualities_per_image": 0}, "qualities_per_image"), ({"patch_size": 0}, "patch_size"), ({"stride": 0}, "stride")],
)
def test_degrade_config_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DegradeConfig(**kwargs)


def test_profiles_round_trip_through_dicts(profiles):
    # the stage ships the config to Ray workers as a plain dict and rebuilds it there
    for prof in profiles.values():
        assert from_dict(ProfileConfig, to_dict(prof)) == prof
    cfg = load_params(REPO / "params.yaml").degrade
    assert from_dict(DegradeConfig, to_dict(cfg)) == cfg
