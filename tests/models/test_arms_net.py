"""Tests of ARMS Net and its ablation networks (medseg.models.arms_net) and the Res Path / PPM blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models import UNet, available_models, build_model
from medseg.models.arms_net import AMAC, ASSP, ARMSNet, adaptive_values
from medseg.models.blocks import DAC, PPM, ConvNormAct, ResPath, pool_same

SMALL = {"base_channels": 2}  # bottom 32 channels at depth 4: cheap, and the rates depend on sizes only
VARIANTS = {
    "unet_r": ("conv", "conv"),
    "unet_pr": ("conv", "ppm"),
    "unet_ar": ("conv", "assp"),
    "unet_dar": ("dac", "assp"),
    "unet_aar": ("amac", "assp"),
    "arms_net": ("amac", "assp"),
}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------ rate / window formulas


@pytest.mark.parametrize(
    "size, rates",
    [
        ((8, 8), (4, 2, 1, 3)),  # §3.2.1: 8/2, 8/4, 8/8, 8/16 = 4, 2, 1, 0.5 -> the 0.5 becomes 3
        ((16, 16), (8, 4, 2, 1)),  # 256×256 input: all ≥ 1, nothing replaced
        ((4, 4), (2, 1, 3, 4)),  # 5 poolings: 2, 1, 0.5, 0.25 -> smallest unused 3, then 4
        ((6, 6), (3, 2, 1, 4)),  # 94×93 padded to 96: 3, 1.5 -> 2, 0.75 and 0.375 -> 1, 4
        ((8, 32), (8, 4, 2, 1)),  # √(8·32) = 16
        ((8, 8, 8), (4, 2, 1, 3)),  # 3D: geometric mean 8
    ],
)
def test_amac_rates(size, rates):
    assert adaptive_values(size, 4, kind="rate") == rates


@pytest.mark.parametrize(
    "size, windows",
    [
        ((8, 8), (4, 2, 3)),  # §3.2.2: 4, 2, 1 -> the window 1 becomes 3
        ((16, 16), (8, 4, 2)),
        ((4, 4), (2, 3, 4)),  # 2, ⌈1⌉ = 1 and ⌈0.5⌉ = 1 -> 3, 4
        ((6, 6), (3, 2, 4)),  # 3, ⌈1.5⌉ = 2, ⌈0.75⌉ = 1 -> 4 (2 and 3 are taken)
    ],
)
def test_assp_windows(size, windows):
    assert adaptive_values(size, 3, kind="pool") == windows


def test_fixed_replacement():
    assert adaptive_values((8, 8), 4, kind="rate", replacement=5) == (4, 2, 1, 5)
    assert adaptive_values((8, 8), 3, kind="pool", replacement=5) == (4, 2, 5)
    with pytest.raises(ValueError):
        adaptive_values((8, 8), 3, kind="size")


def test_pool_same_matches_keras_padding():
    # x = [1, 5, 2, 4, 3], window 3, step 2: output ⌈5/2⌉ = 3, total pad (3-1)·2 + 3 - 5 = 2 -> 1 before, 1 after.
    x = torch.tensor([1.0, 5, 2, 4, 3]).view(1, 1, 1, 5)
    assert pool_same(x, (1, 3), (1, 2), "max").flatten().tolist() == [5, 5, 4]  # [-, 1, 5], [5, 2, 4], [4, 3, -]
    # average over the real pixels only: (1+5)/2, (5+2+4)/3, (4+3)/2
    assert pool_same(x, (1, 3), (1, 2), "avg").flatten().tolist() == pytest.approx([3.0, 11 / 3, 3.5])
    # every window on an 8×8 map with step 2 gives 4×4 (the fixed step of ASSP)
    for k in (2, 3, 4, 5):
        assert pool_same(torch.randn(1, 2, 8, 8), (k, k), (2, 2)).shape == (1, 2, 4, 4)


# ------------------------------------------------------------------------- the model at two input sizes


@pytest.mark.parametrize(
    "size, rates, pointwise, windows",
    [
        (128, (4, 2, 1, 3), (True, True, False, True), (4, 2, 3)),  # bottom 8×8
        (256, (8, 4, 2, 1), (True, True, True, False), (8, 4, 2)),  # bottom 16×16: the rates adapt
    ],
)
def test_forward_backward_rates_adapt(size, rates, pointwise, windows):
    torch.manual_seed(0)
    model = build_model("arms_net", **SMALL)
    x = torch.randn(1, 1, size, size)
    out = model(x)
    assert out.shape == (1, 4, size, size)
    out.square().mean().backward()
    assert isinstance(model.first, AMAC) and isinstance(model.second, ASSP)
    assert model.first.last_rates == rates
    assert model.first.last_pointwise == pointwise  # 1×1 conv only after branches with rate > 1
    assert model.second.last_pool_sizes == windows
    assert model.first.atrous[0].weight.grad is not None and torch.isfinite(model.first.atrous[0].weight.grad).all()
    assert model.encoder.stages[0][0][0].weight.grad.abs().sum() > 0


def test_rates_designed_for_128_at_256():
    """Table 5's UNet(AAR)₁₂₈: rates and windows of the 8×8 design while the bottom is 16×16."""
    model = build_model("unet_aar", input_size_for_rates=128, **SMALL).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 256, 256))
    assert out.shape == (1, 4, 256, 256)
    assert model.first.last_rates == (4, 2, 1, 3)
    assert model.second.last_pool_sizes == (4, 2, 3)


def test_raw_size_input():
    model = build_model("arms_net", **SMALL).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 94, 93))  # padded to 96×96 -> 6×6 bottom
    assert out.shape == (1, 4, 94, 93)
    assert model.first.last_rates == (3, 2, 1, 4)
    assert model.second.last_pool_sizes == (3, 2, 4)


def _receptive_extent(module: nn.Module, channels: int, size: int) -> int:
    """Rows of the input that reach the centre output pixel (gradient support), for a linear module."""
    torch.manual_seed(0)
    x = torch.randn(1, channels, size, size, requires_grad=True)
    module(x)[0, :, size // 2, size // 2].sum().backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    return int(rows.max() - rows.min() + 1)


def test_amac_effective_dilations_by_receptive_field():
    # Linear AMAC (no norm, no activation) so that the gradient support is the union of the branches' taps.
    lin = dict(norm=None, act=None)
    # parallel rates 4, 2, 1, 3: widest branch 2·4 + 1 = 9 rows
    assert _receptive_extent(AMAC(2, 2, design_size=(8, 8), **lin), 2, 41) == 9
    # designed for a 16×16 map: rates 8, 4, 2, 1 -> 17 rows
    assert _receptive_extent(AMAC(2, 2, design_size=(16, 16), **lin), 2, 41) == 17
    # cascade 1 -> 2 -> 3 -> 4: 1 + 2·(1+2+3+4) = 21 rows
    assert _receptive_extent(AMAC(2, 2, design_size=(8, 8), mode="cascade", **lin), 2, 41) == 21
    # CE-Net's DAC, rates 1 -> 3 -> 5: 1 + 2·9 = 19 rows (its longest branch)
    assert _receptive_extent(DAC(2, act=None), 2, 41) == 19


def test_amac_adapts_without_design_size():
    amac = AMAC(2, 3, norm=None)
    assert amac(torch.randn(1, 2, 8, 8)).shape == (1, 3, 8, 8)
    assert amac.last_rates == (4, 2, 1, 3)
    amac(torch.randn(1, 2, 16, 16))
    assert amac.last_rates == (8, 4, 2, 1)
    cascade = AMAC(2, 3, mode="cascade")
    cascade(torch.randn(1, 2, 8, 8))
    assert cascade.last_rates == (1, 2, 3, 4)  # the chain of increasing rates


# ------------------------------------------------------------------------------------- every variant


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_builds_and_runs(name):
    assert name in available_models()
    torch.manual_seed(0)
    model = build_model(name, **SMALL).eval()
    assert model.bottom_modules == VARIANTS[name]
    kinds = {"conv": ConvNormAct, "dac": DAC, "amac": AMAC, "ppm": PPM, "assp": ASSP}
    assert isinstance(model.first, kinds[VARIANTS[name][0]]) and isinstance(model.second, kinds[VARIANTS[name][1]])
    assert all(isinstance(s, ResPath) for s in model.skips)
    with torch.no_grad():
        out = model(torch.randn(1, 1, 128, 128))
    assert out.shape == (1, 4, 128, 128) and torch.isfinite(out).all()


def test_ppm_windows_equal_steps():
    model = build_model("unet_pr", **SMALL).eval()
    with torch.no_grad():
        model(torch.randn(1, 1, 128, 128))
    assert model.second.last_pool_sizes == (2, 3, 4)
    assert model.second.strides == (2, 3, 4)


@pytest.mark.parametrize("depth, rates, lengths", [(3, (8, 4, 2, 1), [3, 2, 1]), (5, (2, 1, 3, 4), [5, 4, 3, 2, 1])])
def test_other_depths(depth, rates, lengths):
    model = build_model("arms_net", depth=depth, **SMALL).eval()
    assert [len(s) for s in model.skips] == lengths
    with torch.no_grad():
        out = model(torch.randn(1, 1, 128, 128))
    assert out.shape == (1, 4, 128, 128)
    assert model.first.last_rates == rates


def test_options_from_config():
    # YAML gives lists; fuse "none" feeds C + 3·C/4 channels to the decoder; cascade AMAC; avg pooling
    model = build_model(
        "arms_net",
        bottom=["amac", "assp"],
        fuse="none",
        amac_mode="cascade",
        pool="avg",
        pyramid_upsample="bilinear",
        **SMALL,
    ).eval()
    assert model.second.out_channels == 32 + 3 * 8
    assert model.decoder.ups[0].op.in_channels == 56
    with torch.no_grad():
        assert model(torch.randn(1, 1, 128, 128)).shape == (1, 4, 128, 128)
    plain = build_model("arms_net", skip="plain", bottom=["dac", "ppm"], dac_share_weights=False, **SMALL)
    assert all(isinstance(s, nn.Identity) for s in plain.skips)
    for bad in ({"bottom": ["assp", "amac"]}, {"skip": "dense"}, {"respath_lengths": [1, 2]}):
        with pytest.raises(ConfigError, match="does not take these settings"):
            build_model("arms_net", **SMALL, **bad)


def test_3d_arms_net():
    model = ARMSNet(1, 3, spatial_dims=3, depth=2, base_channels=2).eval()
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    with torch.no_grad():
        out = model(torch.randn(1, 1, 32, 32, 32))  # bottom 8×8×8
    assert out.shape == (1, 3, 32, 32, 32)
    assert model.first.last_rates == (4, 2, 1, 3)


# --------------------------------------------------------------------------------- parameter counts


def test_respath_parameters_table1():
    # One block at c channels: 3×3 conv 9c² + BN 2c, 1×1 shortcut c² + BN 2c, post BN 2c -> 10c² + 6c.
    # Res Path I-IV (32/4, 64/3, 128/2, 256/1): 4·10,432 + 3·41,344 + 2·164,608 + 1·656,896 = 1,151,872
    model = build_model("arms_net")
    assert [len(s) for s in model.skips] == [4, 3, 2, 1]
    assert [s[0].conv[0].out_channels for s in model.skips] == [32, 64, 128, 256]
    assert _n_params(model.skips) == 1_151_872


def test_full_width_parameter_counts():
    unet32 = UNet(base_channels=32)
    plain = ARMSNet(skip="plain", bottom=("conv", "conv"))
    assert _n_params(plain) == _n_params(unet32)  # Table 2 row 1 is the 32-wide U-Net
    arms = build_model("arms_net")
    # AMAC 256 -> 512: 4 atrous 3×3 (4·1,179,648) + 4 BN (4·1,024) + 4 1×1 with bias (4·262,656)
    #                  + 1×1 shortcut 131,072 + BN 1,024                                  = 5,905,408
    # ASSP 512: 3 × (1×1 512->128 65,536 + BN 256) + fuse 1×1 896->512 458,752 + BN 1,024 = 657,152
    assert _n_params(arms.bottom[0]) == 5_905_408
    assert _n_params(arms.bottom[1]) == 657_152
    # U-Net-32 bottom (DoubleConv 256->512->512: 1,179,648 + 2,359,296 + 2·1,024 = 3,540,992) replaced, Res Paths added
    assert _n_params(arms) == _n_params(unet32) - 3_540_992 + 5_905_408 + 657_152 + 1_151_872
