"""Tests of RSE-UNet (medseg.models.rse_unet) and the SE / spatial-attention blocks it uses."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from monai.networks.blocks import ChannelSELayer
from torch import nn

from medseg.artifact import model_kwargs
from medseg.config import load_config
from medseg.losses.segmentation import build_loss
from medseg.models import UNet, available_models, build_model
from medseg.models.blocks import DoubleConv, SpatialAttention, SqueezeExcitation
from medseg.models.rse_unet import MDPAC, AttentionResPath, AttentionResPathBlock, ResSEBlock, RSEUNet

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "chromosomes"
SMALL = {"base_channels": 8}
SWITCHES = list(itertools.product([True, False], repeat=3))  # (res_se, mdpac, res_path): Table 5 + plain U-Net


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _count(model: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


# ------------------------------------------------------------------------------------- whole network


# Every switch combination (Table 5's seven rows + the plain U-Net) at every depth of Table 3.
CASES = [(d, *s) for d in (3, 4, 5) for s in SWITCHES]


@pytest.mark.parametrize(
    "depth,res_se,mdpac,res_path",
    CASES,
    ids=[f"d{d}-rse{int(a)}-mdpac{int(b)}-respath{int(c)}" for d, a, b, c in CASES],
)
def test_forward_backward_every_depth_and_switch(depth, res_se, mdpac, res_path):
    torch.manual_seed(0)
    model = RSEUNet(1, 4, depth=depth, res_se=res_se, mdpac=mdpac, res_path=res_path, **SMALL).train()
    x = torch.randn(1, 1, 128, 128)
    out = model(x)
    assert out.shape == (1, 4, 128, 128)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    # Every parameter takes part in the forward pass (a module built but skipped would have grad None).
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []
    first_conv = next(m for m in model.encoder[0].modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1 and first_conv.weight.grad.abs().sum() > 0  # gradient reaches the input
    # The switches decide which modules exist.
    assert _count(model, ResSEBlock) == (2 * depth + 1 if res_se else 0)  # depth+1 encoder + depth decoder
    assert _count(model, MDPAC) == int(mdpac)
    assert _count(model, AttentionResPath) == (depth if res_path else 0)
    assert model.divisor == 2**depth


def test_raw_size_and_3d():
    torch.manual_seed(0)
    model = RSEUNet(1, 4, depth=4, **SMALL).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 94, 93)).shape == (1, 4, 94, 93)  # padded to 96×96 inside, cropped back
    model3d = RSEUNet(1, 3, spatial_dims=3, depth=2, base_channels=4).eval()
    assert _count(model3d, nn.Conv3d) > 0 and _count(model3d, nn.Conv2d) == 0
    with torch.no_grad():
        assert model3d(torch.randn(1, 1, 12, 10, 9)).shape == (1, 3, 12, 10, 9)


def test_everything_off_is_exactly_the_unet():
    """Table 5's baseline: with all three modules off, RSE-UNet is U-Net parameter for parameter."""
    torch.manual_seed(0)
    unet = UNet(1, 4, depth=4, **SMALL).eval()
    plain = RSEUNet(1, 4, depth=4, res_se=False, mdpac=False, res_path=False, **SMALL).eval()
    src, dst = unet.state_dict(), plain.state_dict()
    assert [v.shape for v in src.values()] == [v.shape for v in dst.values()]
    plain.load_state_dict(dict(zip(dst.keys(), src.values(), strict=True)))
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), unet(x), rtol=0, atol=0)
    # and at full width the counts agree too
    assert _n_params(RSEUNet(res_se=False, mdpac=False, res_path=False)) == _n_params(UNet()) == 31_036_676


def test_full_width_structure_and_parameter_count():
    model = RSEUNet(1, 4)  # the paper's configuration: 4 poolings, 64 … 1024
    assert model.channels == [64, 128, 256, 512, 1024]
    # Table 1: ResPath I–IV keep 64/128/256/512 channels with 4/3/2/1 blocks.
    assert [len(p) for p in model.skips] == [4, 3, 2, 1]
    assert [p[0].conv[0].in_channels for p in model.skips] == [64, 128, 256, 512]
    # §2.3: the first block is a Resblock (no SE); the other encoder and all decoder blocks are ResSE, r = 16.
    assert isinstance(model.encoder[0].se, nn.Identity)
    for blk in list(model.encoder[1:]) + list(model.decoder):
        c = blk.body[1][0].out_channels
        assert isinstance(blk.se, SqueezeExcitation) and blk.se.fc1.weight.shape == (c // 16, c)
    assert isinstance(model.ups[0], nn.Module) and model.ups[0].op.kernel_size == (2, 2)
    assert model.ups[0].op.stride == (2, 2)

    # MDPAC at C = 1024, growth g = 256, dilations 1, 2, 4 (3×3 convs without bias, BN γ/β):
    #   9·1024·256 + 9·1280·256 + 9·1536·256 = 2 359 296 + 2 949 120 + 3 538 944 = 8 847 360
    #   fuse 1×1: 1792·1024 = 1 835 008;  BN: 3·2·256 + 2·1024 = 3 584   → 10 685 952
    assert _n_params(model.bottleneck) == 10_685_952
    # ResPath IV (512 channels, 1 block): 3×3 conv 9·512² = 2 359 296, BN 1 024, SE 2·512·32 = 32 768,
    #   spatial attention 7·7·2 + 1 = 99, 1×1 shortcut 512² = 262 144, BN 1 024, post-BN 1 024 → 2 657 379
    assert _n_params(model.skips[3]) == 2_657_379
    # ResSE over a plain DoubleConv stage adds the SE (2·c²/16 = c²/8) and, when the width changes,
    # the 1×1 projection + BN (cin·c + 2c). Encoder cin→c: 1→64 (no SE), 64→128, …, 512→1024;
    # decoder 2c→c for c = 512, 256, 128, 64.
    enc = [(1, 64, False), (64, 128, True), (128, 256, True), (256, 512, True), (512, 1024, True)]
    dec = [(2 * c, c, True) for c in (512, 256, 128, 64)]
    extra_resse = sum(ci * c + 2 * c + (c * c // 8 if se else 0) for ci, c, se in enc + dec)
    respaths = sum(_n_params(p) for p in model.skips)
    total = _n_params(model)
    assert total == _n_params(UNet()) + extra_resse + 10_685_952 + respaths
    # reported (the paper gives none): 47 991 330 without ResPath's post-BNs, + 2·(4·64 + 3·128 + 2·256 + 512)
    # = 2·1 664 = 3 328 for them
    assert total == 47_994_658


# --------------------------------------------------------------------------------- SE (Eq. 1–3)


def test_se_matches_eq1_to_eq3_by_hand():
    se = SqueezeExcitation(2, reduction=2)  # hidden = 2 // 2 = 1
    assert se.fc1.bias is None and se.fc2.bias is None  # Eq. 2 has no bias terms
    with torch.no_grad():
        se.fc1.weight.copy_(torch.tensor([[1.0, -1.0]]))  # W1 ∈ R^{1×2}
        se.fc2.weight.copy_(torch.tensor([[2.0], [-1.0]]))  # W2 ∈ R^{2×1}
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 4.0]]]])  # (1, 2, 2, 2)
    # Eq. 1: z = (10/4, 4/4) = (2.5, 1.0); W1 z = 2.5 - 1.0 = 1.5, ReLU → 1.5
    # Eq. 2: W2 · 1.5 = (3.0, -1.5); s = (σ(3), σ(-1.5)) = (0.9525741, 0.1824255)
    s = torch.tensor([1 / (1 + math.exp(-3.0)), 1 / (1 + math.exp(1.5))])
    torch.testing.assert_close(se.weights(x), s[None])
    # Eq. 3: x̃_c = s_c u_c
    torch.testing.assert_close(se(x), x * s.view(1, 2, 1, 1))
    # The ReLU (δ) matters: flipping W1 gives W1 z = -1.5 → 0, so s = σ(0) = ½ for both channels.
    with torch.no_grad():
        se.fc1.weight.neg_()
    torch.testing.assert_close(se(x), x * 0.5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_se_equals_monai_channel_se_layer(spatial_dims):
    torch.manual_seed(0)
    c, r = 32, 16
    monai_se = ChannelSELayer(spatial_dims, c, r=r)
    x = torch.randn(2, c, *([5] * spatial_dims))
    ours = SqueezeExcitation(c, spatial_dims=spatial_dims, reduction=r, bias=True)
    with torch.no_grad():
        ours.fc1.weight.copy_(monai_se.fc[0].weight)
        ours.fc1.bias.copy_(monai_se.fc[0].bias)
        ours.fc2.weight.copy_(monai_se.fc[2].weight)
        ours.fc2.bias.copy_(monai_se.fc[2].bias)
        torch.testing.assert_close(ours(x), monai_se(x))
        # the default (Eq. 2, no bias) equals MONAI's layer with its biases zeroed
        plain = SqueezeExcitation(c, spatial_dims=spatial_dims, reduction=r)
        plain.fc1.weight.copy_(monai_se.fc[0].weight)
        plain.fc2.weight.copy_(monai_se.fc[2].weight)
        monai_se.fc[0].bias.zero_()
        monai_se.fc[2].bias.zero_()
        torch.testing.assert_close(plain(x), monai_se(x))
    assert SqueezeExcitation(8, reduction=16).fc1.out_features == 1  # narrow models: max(1, C // r)


def test_spatial_attention_by_hand():
    sa = SpatialAttention(kernel_size=7)
    with torch.no_grad():
        sa.conv.weight.zero_()
        sa.conv.weight[0, 0, 3, 3] = 1.0  # centre tap on the channel mean
        sa.conv.weight[0, 1, 3, 3] = -1.0  # centre tap on the channel max
        sa.conv.bias.fill_(0.5)
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, 1, 1], x[0, 1, 1, 1] = 1.0, 3.0
    # centre: mean 2, max 3 → σ(2 - 3 + 0.5) = σ(-0.5) = 0.3775407; elsewhere all zero → σ(0.5)
    expected_map = torch.full((3, 3), 1 / (1 + math.exp(-0.5)))
    expected_map[1, 1] = 1 / (1 + math.exp(0.5))
    torch.testing.assert_close(sa.weights(x)[0, 0], expected_map)
    torch.testing.assert_close(sa(x), x * expected_map)
    # a neighbour tap makes the map depend on the next pixel: weight on the max one column to the left
    with torch.no_grad():
        sa.conv.weight[0, 1, 3, 2] = 10.0  # output (i, j) reads max at (i, j - 1)
    assert sa.weights(x)[0, 0, 1, 2] > 0.99  # σ(10·3 + 0.5)


# ------------------------------------------------------------------------------------ ResSE block


def test_resse_block_adds_its_input():
    torch.manual_seed(0)
    same = ResSEBlock(8, 8).eval()
    assert isinstance(same.shortcut, nn.Identity)
    with torch.no_grad():  # zero the last BN: body → ReLU(0) = 0, SE(0) = 0, so the block is x + 0
        same.body[1][1].weight.zero_()
        same.body[1][1].bias.zero_()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(same(x), x)
    proj = ResSEBlock(4, 8).eval()
    assert isinstance(proj.shortcut[0], nn.Conv2d) and proj.shortcut[0].kernel_size == (1, 1)
    with torch.no_grad():
        proj.body[1][1].weight.zero_()
        proj.body[1][1].bias.zero_()
        y = torch.randn(2, 4, 6, 6)
        torch.testing.assert_close(proj(y), proj.shortcut(y))
    # the SE rescales the body output per channel before the addition
    blk = ResSEBlock(8, 8).eval()
    with torch.no_grad():
        u = blk.body(x)
        torch.testing.assert_close(blk(x) - x, u * blk.se.weights(u)[:, :, None, None])
    assert isinstance(ResSEBlock(8, 8, se=False).se, nn.Identity)


# ---------------------------------------------------------------------------------------- MDPAC


def _support(module: nn.Module, channels: int, size: int = 41) -> torch.Tensor:
    """|∂ out[centre] / ∂ input| summed over channels: where the centre output looks."""
    torch.manual_seed(1)
    x = torch.randn(1, channels, size, size, requires_grad=True)
    module(x)[0, :, size // 2, size // 2].sum().backward()
    return x.grad.abs().sum(1)[0] > 0


def _offsets(mask: torch.Tensor) -> set[tuple[int, int]]:
    c = mask.shape[0] // 2
    return {(int(i) - c, int(j) - c) for i, j in mask.nonzero()}


@pytest.mark.parametrize("mode", ["dense", "sum"])
def test_mdpac_receptive_field_is_sum_of_dilations(mode):
    torch.manual_seed(0)
    # Linear layers (no norm, no activation) so no ReLU can switch a path off: the support is exact.
    mod = MDPAC(8, dilations=(1, 2, 4), mode=mode, growth=4, norm="none", act="none")
    # 3×3 taps at rates 1, 2, 4 reach offsets {-1,0,1}+{-2,0,2}+{-4,0,4} = every integer in [-7, 7]
    # (1, 2, 4 are binary digits), so the centre sees a full 15×15 square and nothing outside it.
    assert _offsets(_support(mod, 8)) == {(i, j) for i in range(-7, 8) for j in range(-7, 8)}
    # The default module (BN in eval mode, ReLU) looks no further and does reach 7 pixels.
    torch.manual_seed(0)
    default = MDPAC(16, dilations=(1, 2, 4), mode=mode).eval()
    offsets = _offsets(_support(default, 16))
    assert max(max(abs(i), abs(j)) for i, j in offsets) == 7


def test_mdpac_rates_2_4_8_reach_14_but_only_even_offsets():
    torch.manual_seed(0)
    mod = MDPAC(8, dilations=(2, 4, 8), growth=4, norm="none", act="none")
    # sums of subsets of {±2, ±4, ±8} are the even integers in [-14, 14]: a 29×29 field with holes
    assert _offsets(_support(mod, 8)) == {(i, j) for i in range(-14, 15, 2) for j in range(-14, 15, 2)}


def test_mdpac_dense_connectivity():
    mod = MDPAC(16, dilations=(1, 2, 4), growth=4)
    # layer j sees the input F and every earlier output: 16, 16 + 4, 16 + 8 channels; the fuse sees 16 + 12
    assert [layer[0].in_channels for layer in mod.layers] == [16, 20, 24]
    assert [layer[0].dilation for layer in mod.layers] == [(1, 1), (2, 2), (4, 4)]
    assert mod.fuse[0].in_channels == 28 and mod.fuse[0].out_channels == 16
    assert MDPAC(1024).layers[0][0].out_channels == 256  # default growth C // 4
    x = torch.randn(1, 16, 8, 8)
    assert mod(x).shape == x.shape
    # sum mode (Eq. 4 literal): output = o_3 + F, so with the last layer's BN zeroed the output is F
    lit = MDPAC(16, mode="sum").eval()
    with torch.no_grad():
        lit.layers[-1][1].weight.zero_()
        lit.layers[-1][1].bias.zero_()
        torch.testing.assert_close(lit(x), x)


# --------------------------------------------------------------------------------------- ResPath


def test_respath_block_counts_and_attention():
    assert [len(p) for p in RSEUNet(depth=3, **SMALL).skips] == [3, 2, 1]
    assert [len(p) for p in RSEUNet(depth=5, **SMALL).skips] == [5, 4, 3, 2, 1]
    assert [len(p) for p in RSEUNet(depth=4, respath_blocks=[2, 2, 1, 1], **SMALL).skips] == [2, 2, 1, 1]
    blk = AttentionResPathBlock(16)
    assert isinstance(blk.channel_att, SqueezeExcitation) and isinstance(blk.spatial_att, SpatialAttention)
    assert isinstance(AttentionResPathBlock(16, attention="channel").spatial_att, nn.Identity)
    assert isinstance(AttentionResPathBlock(16, attention="none").channel_att, nn.Identity)
    # The attention sits on the residual branch: with the spatial-attention conv pushed to σ(-50) ≈ 2e-22 the
    # branch vanishes and the block is BN(ReLU(shortcut(x))) (MultiResUNet's add → act → norm).
    blk.eval()
    with torch.no_grad():
        blk.spatial_att.conv.weight.zero_()
        blk.spatial_att.conv.bias.fill_(-50.0)
        x = torch.randn(1, 16, 9, 9)
        torch.testing.assert_close(blk(x), blk.norm(torch.relu(blk.shortcut(x))), atol=1e-12, rtol=0)
        # and the channel attention scales the branch: s = SE weights of the conv output
        blk.spatial_att = nn.Identity()
        u = blk.conv(x)
        branch = u * blk.channel_att.weights(u)[:, :, None, None]
        torch.testing.assert_close(blk(x), blk.norm(torch.relu(branch + blk.shortcut(x))))
    assert isinstance(AttentionResPathBlock(16, post_norm=False).norm, nn.Identity)
    with pytest.raises(ValueError):
        RSEUNet(depth=4, respath_blocks=[1, 1, 1], **SMALL)
    with pytest.raises(ValueError):
        AttentionResPathBlock(8, attention="both")


def test_invalid_options():
    with pytest.raises(ValueError):
        MDPAC(8, mode="concat")
    with pytest.raises(ValueError):
        MDPAC(8, dilations=())
    with pytest.raises(ValueError):
        RSEUNet(depth=0)


def test_res_se_off_uses_plain_double_conv():
    model = RSEUNet(res_se=False, **SMALL)
    assert all(type(b) is DoubleConv for b in list(model.encoder) + list(model.decoder))


# --------------------------------------------------------------------------------------- configs

# file → (depth, res_se, mdpac, res_path); the seven rows of Table 5 plus Table 3's 3L and 5L.
EXPECTED = {
    "rse_unet.yaml": (4, True, True, True),
    "rse_unet_3l.yaml": (3, True, True, True),
    "rse_unet_5l.yaml": (5, True, True, True),
    "rse_ablation_rse.yaml": (4, True, False, False),
    "rse_ablation_mdpac.yaml": (4, False, True, False),
    "rse_ablation_respath.yaml": (4, False, False, True),
    "rse_ablation_rse_mdpac.yaml": (4, True, True, False),
    "rse_ablation_mdpac_respath.yaml": (4, False, True, True),
    "rse_ablation_rse_respath.yaml": (4, True, False, True),
}


def test_registered():
    assert "rse_unet" in available_models()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_configs_load_and_build(name):
    assert {p.name for p in CONFIGS.glob("rse_*.yaml")} == set(EXPECTED)
    cfg = load_config(CONFIGS / name)
    depth, res_se, mdpac, res_path = EXPECTED[name]
    m = cfg["model"]
    assert m["name"] == "rse_unet"
    assert (m["depth"], m["res_se"], m["mdpac"], m["res_path"]) == (depth, res_se, mdpac, res_path)
    assert cfg["loss"] == [{"name": "focal", "alpha": 0.25, "gamma": 2.0}]
    assert cfg["train"]["batch_size"] == 8 and cfg["train"]["lr"] == 1.0e-3
    build_loss(cfg["loss"], cfg["task"]["mode"])
    with torch.device("meta"):  # full width without allocating (the 5L model has 192 M parameters)
        model = build_model(m["name"], **model_kwargs(cfg))
    assert isinstance(model, RSEUNet)
    present = (_count(model, ResSEBlock) > 0, _count(model, MDPAC) > 0, _count(model, AttentionResPath) > 0)
    assert present == (res_se, mdpac, res_path)
    assert len(model.channels) == depth + 1 and model.channels[0] == 64
