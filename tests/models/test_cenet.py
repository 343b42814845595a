"""Tests of CE-Net (medseg.models.cenet) and its DAC / RMP blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.models import available_models, build_model
from medseg.models.blocks import DAC, RMP
from medseg.models.cenet import BasicBlock, CENet, ResNetEncoder

LIGHT = {"widths": (4, 8, 8, 16), "blocks": (1, 1, 1, 1), "head_channels": 4}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered():
    assert "cenet" in available_models()
    assert isinstance(build_model("cenet", **LIGHT), CENet)


@pytest.mark.parametrize("size", [(128, 128), (94, 93)], ids=["128x128", "raw94x93"])
def test_forward_backward(size):
    torch.manual_seed(0)
    model = build_model("cenet", **LIGHT)
    out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 4, *size)
    out.square().mean().backward()
    assert model.encoder.stem[0].weight.grad.abs().sum() > 0
    assert model.divisor == 32


def test_encoder_strides_and_depth():
    enc = ResNetEncoder(1, widths=(4, 8, 8, 16), blocks=(3, 4, 6, 3))
    assert sum(isinstance(m, BasicBlock) for m in enc.modules()) == 16  # ResNet-34: 3 + 4 + 6 + 3
    with torch.no_grad():
        feats = enc(torch.randn(1, 1, 128, 128))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]  # ÷4 (stem), ÷8, ÷16, ÷32
    assert [f.shape[1] for f in feats] == [4, 8, 8, 16]


def test_rmp_on_the_4x4_bottom_of_a_128_input():
    # 5×5 and 6×6 windows do not fit a 4×4 map: they shrink to global max pooling.
    rmp = RMP(3)
    x = torch.randn(1, 3, 4, 4)
    out = rmp(x)
    assert out.shape == (1, 3 + 4, 4, 4)
    assert rmp.last_pool_sizes == (2, 3, 5, 6)
    assert torch.equal(out[:, 4:], x)  # the input is concatenated last, unchanged
    conv = rmp.reduce
    global_max = x.amax(dim=(2, 3))  # (1, 3)
    expected = (global_max @ conv.weight.view(1, 3).T + conv.bias).item()
    assert torch.allclose(out[:, 2], torch.full((1, 4, 4), expected), atol=1e-6)  # window 5 -> one value
    assert torch.allclose(out[:, 3], torch.full((1, 4, 4), expected), atol=1e-6)  # window 6 -> one value
    # window 3, step 3 on 4×4: one window over rows/cols 0-2 (PyTorch floor mode), upsampled bilinearly
    corner_max = x[:, :, :3, :3].amax(dim=(2, 3))
    assert torch.allclose(
        out[:, 1], torch.full((1, 4, 4), (corner_max @ conv.weight.view(1, 3).T + conv.bias).item()), atol=1e-6
    )


def test_dac_parameters_and_sharing():
    c = 8
    shared, separate = DAC(c), DAC(c, share_weights=False)
    # shared (official code): 3 atrous convs (9c² + c) + one 1×1 (c² + c)
    assert _n_params(shared) == 3 * (9 * c * c + c) + (c * c + c)
    # separate: branches [1], [3, 1×1], [1, 3, 1×1], [1, 3, 5, 1×1] -> 1 + 1 + 2 + 3 = 7 atrous + 3 1×1
    assert _n_params(separate) == 7 * (9 * c * c + c) + 3 * (c * c + c)
    x = torch.randn(1, c, 9, 9)
    assert shared(x).shape == separate(x).shape == x.shape
    assert DAC(4, 8)(torch.randn(1, 4, 9, 9)).shape == (1, 8, 9, 9)  # 1×1 projection when widths differ


def test_parameter_count_matches_official_cenet():
    # Official CE_Net_ (3 input channels, 1 class):
    #   ResNet-34 without fc 21,284,672 (21,797,672 - 513,000)
    #   DAC 3·(512·512·9 + 512) + (512·512 + 512) = 7,342,080;  RMP 1×1 512 -> 1: 513
    #   decoders 516->256: 250,899; 256->128: 62,208; 128->64: 15,744; 64->64: 4,640
    #   final deconv 64·32·16 + 32 = 32,800; conv 32·32·9 + 32 = 9,248; conv 32·1·9 + 1 = 289
    #   total 29,003,093
    model = CENet(3, 1)
    assert _n_params(model.encoder) == 21_284_672
    assert _n_params(model.dac) == 7_342_080
    assert _n_params(model.rmp) == 513
    assert [_n_params(d) for d in model.decoders] == [250_899, 62_208, 15_744, 4_640]
    assert _n_params(model) == 29_003_093
    # ours: grey input (stem 7·7·1·64 = 3,136 instead of 9,408) and 4 classes (32·4·9 + 4 = 1,156 instead of 289)
    assert _n_params(CENet()) == 29_003_093 - 9_408 + 3_136 - 289 + 1_156


def test_3d_cenet():
    model = CENet(1, 2, spatial_dims=3, **LIGHT).eval()
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    with torch.no_grad():
        out = model(torch.randn(1, 1, 32, 32, 32))
    assert out.shape == (1, 2, 32, 32, 32)
