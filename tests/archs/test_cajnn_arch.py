"""Architecture tests: pinned parameter counts, output shapes, modes, argument validation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from cajnn.archs import (
    ASPP,
    CAJNN,
    PRESETS,
    RRDB,
    NonLocalBlock,
    ResidualDenseBlock,
    SequentialAtrous,
    build_model,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count(**kwargs) -> int:
    """Parameter count without allocating storage (meta device): fast for the 14.9M model."""
    with torch.device("meta"):
        return n_params(CAJNN(**kwargs))


# --------------------------------------------------------------------------- parameter counts


def test_paper_config_matches_spec():
    assert count() == 14_884_419  # docs/design.md "Network": two x2 PixelShuffle stages
    assert count(upsampler="pixelshuffle_single") == 14_581_555  # docs/design.md: literal single stage


@pytest.mark.parametrize(
    "preset, expected",
    [("paper", 14_884_419), ("cpu-small", 416_627), ("micro", 19_539)],
)
def test_preset_param_counts(preset, expected):
    with torch.device("meta"):
        assert n_params(build_model(preset)) == expected


@pytest.mark.parametrize(
    "context, expected",
    [
        ("none", 14_761_283),
        ("aspp", 14_884_419),
        ("sequential_atrous", 14_872_067),
        ("nonlocal", 14_769_635),
    ],
)
def test_paper_context_variant_counts(context, expected):
    assert count(context=context) == expected


@pytest.mark.parametrize(
    "upsampler, scale, expected",
    [
        ("pixelshuffle", 2, 14_736_707),
        ("pixelshuffle", 3, 14_921_347),
        ("pixelshuffle", 4, 14_884_419),
        ("pixelshuffle_single", 2, 14_560_783),
        ("pixelshuffle_single", 3, 14_569_438),
        ("pixelshuffle_single", 4, 14_581_555),
        ("upconv", 2, 14_625_923),
        ("upconv", 3, 14_625_923),
        ("upconv", 4, 14_662_851),
    ],
)
def test_paper_upsampler_scale_counts(upsampler, scale, expected):
    assert count(upsampler=upsampler, scale=scale) == expected


def test_paper_aux_head_and_skip_counts():
    assert count(aux_lr_head=True) == 14_884_419 + 1_731  # conv3x3 64 -> 3
    assert count(global_skip=False) == 14_884_419  # the skip has no parameters


def test_block_param_counts():
    assert n_params(ASPP(64)) == 3 * (64 * 64 * 9 + 64) + (192 * 64 + 64)  # 123,136
    assert n_params(SequentialAtrous(64)) == 3 * (64 * 64 * 9 + 64)  # 110,784
    assert n_params(ResidualDenseBlock(64, 32)) == 239_808
    assert n_params(RRDB(64, 32)) == 3 * 239_808
    assert n_params(NonLocalBlock(64)) == 3 * (64 * 32 + 32) + (32 * 64 + 64)  # 8,352


# --------------------------------------------------------------------------- shapes

MICRO = dict(PRESETS["micro"])


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("upsampler", ["pixelshuffle", "pixelshuffle_single", "upconv"])
@pytest.mark.parametrize("context", ["none", "aspp", "sequential_atrous", "nonlocal"])
def test_output_shape_odd_sizes(context, upsampler, scale):
    torch.manual_seed(0)
    model = CAJNN(**{**MICRO, "context": context, "upsampler": upsampler, "scale": scale}).eval()
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 37 * scale, 53 * scale)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()


@pytest.mark.parametrize("hw", [(1, 1), (8, 8), (5, 9)])
def test_tiny_inputs(hw):
    model = CAJNN(**{**MICRO, "context": "nonlocal"}).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, *hw)).shape == (1, 3, 4 * hw[0], 4 * hw[1])


def test_paper_model_forward_small_input():
    torch.manual_seed(0)
    model = CAJNN().eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 9, 11))
    assert y.shape == (1, 3, 36, 44)


def test_blocks_keep_shape():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 37, 53)
    for block in (
        ASPP(16),
        SequentialAtrous(16),
        RRDB(16, 8),
        ResidualDenseBlock(16, 8),
        NonLocalBlock(16),
        NonLocalBlock(16, sub_sample=True),
    ):
        assert block(x).shape == x.shape


def test_nonlocal_starts_as_identity_and_matches_formula():
    torch.manual_seed(0)
    block = NonLocalBlock(8)
    x = torch.randn(2, 8, 5, 7)
    assert torch.equal(block(x), x)  # zero-initialised W_z
    torch.nn.init.normal_(block.out.weight)
    b, c, h, w = x.shape
    theta = block.theta(x).flatten(2).transpose(1, 2)  # B, N, C'
    phi = block.phi(x).flatten(2)  # B, C', N
    g = block.g(x).flatten(2).transpose(1, 2)  # B, N, C'
    y = torch.softmax(theta @ phi, dim=-1) @ g  # embedded Gaussian, no 1/sqrt(d)
    ref = x + block.out(y.transpose(1, 2).reshape(b, 4, h, w))
    torch.testing.assert_close(block(x), ref, rtol=1e-4, atol=1e-5)


def test_global_skip_is_bilinear_upsample():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 7, 9)
    for skip in (True, False):
        model = CAJNN(**{**MICRO, "global_skip": skip}).eval()
        last = model.enhance[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        with torch.no_grad():
            y = model(x)
        expected = (
            F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
            if skip
            else torch.zeros(1, 3, 28, 36)
        )
        assert torch.equal(y, expected)


# --------------------------------------------------------------------------- modes


def test_aux_head_tuple_in_train_tensor_in_eval():
    torch.manual_seed(0)
    model = CAJNN(**{**MICRO, "aux_lr_head": True})
    x = torch.rand(2, 3, 11, 13)
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 2
    sr, lr_pred = out
    assert sr.shape == (2, 3, 44, 52) and lr_pred.shape == x.shape
    (F.l1_loss(sr, torch.rand_like(sr)) + F.l1_loss(lr_pred, x)).backward()
    assert model.lr_head.weight.grad is not None
    assert model.conv_first.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 3, 44, 52)


def test_no_aux_head_returns_tensor_in_train():
    model = CAJNN(**MICRO).train()
    assert isinstance(model(torch.rand(1, 3, 8, 8)), torch.Tensor)


# --------------------------------------------------------------------------- config / presets


def test_config_is_json_and_rebuilds():
    model = CAJNN(**{**MICRO, "context": "nonlocal", "upsampler": "upconv", "scale": 3})
    cfg = json.loads(json.dumps(model.config))
    assert cfg == model.config
    rebuilt = CAJNN(**cfg)
    assert rebuilt.config == model.config
    assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]


def test_presets_are_complete_kwargs():
    for name, cfg in PRESETS.items():
        with torch.device("meta"):
            assert build_model(name).config == cfg
    assert PRESETS["paper"] == CAJNN().config


def test_build_model_overrides():
    model = build_model("micro", scale=2, aux_lr_head=True)
    assert model.config["scale"] == 2 and model.config["aux_lr_head"] is True
    assert PRESETS["micro"]["scale"] == 4  # presets are not mutated


def test_build_model_errors():
    with pytest.raises(ValueError, match=r"known presets.*cpu-small.*micro.*paper"):
        build_model("huge")
    with pytest.raises(ValueError, match=r"unknown CAJNN argument.*'blocks'.*allowed.*num_blocks"):
        build_model("micro", blocks=3)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"context": "attention"}, r"context must be one of \['none', 'aspp', 'sequential_atrous'"),
        ({"upsampler": "deconv"}, r"upsampler must be one of \['pixelshuffle', 'pixelshuffle_single', 'upconv'\]"),
        ({"scale": 8}, r"scale must be one of \[2, 3, 4\]"),
        ({"scale": 4.0}, r"scale must be one of"),
        ({"nf": 0}, r"nf must be an int >= 1"),
        ({"nf": 16.0}, r"nf must be an int"),
        ({"num_blocks": -1}, r"num_blocks must be an int >= 0"),
        ({"growth": True}, r"growth must be an int"),
        ({"in_ch": 0}, r"in_ch must be an int >= 1"),
        ({"global_skip": 1}, r"global_skip must be a bool"),
        ({"aux_lr_head": "yes"}, r"aux_lr_head must be a bool"),
    ],
)
def test_invalid_arguments_raise(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        CAJNN(**{**MICRO, **kwargs})


def test_wrong_input_shape_raises():
    model = CAJNN(**MICRO)
    with pytest.raises(ValueError, match=r"expects a \(B, 3, H, W\)"):
        model(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"expects a \(B, 3, H, W\)"):
        model(torch.rand(3, 8, 8))
