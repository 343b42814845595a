"""The GI-tract paper's U-Nets (issue 13): explicit stage widths (``UNet(channels=...)``) reconstructed from the
paper's parameter counts, 2.50 M (4 poolings) and 5.72 M (5 poolings)."""

from __future__ import annotations

import json

import pytest
import torch

from medseg.errors import ConfigError
from medseg.losses import build_loss
from medseg.models import UNet, build_model, training_loss
from medseg.models.unet import GI_UNET_CHANNELS

# exact counts with 3 output maps (large bowel, small bowel, stomach): BatchNorm, transposed-conv upsampling
EXPECTED = {(4, 1): 2_502_003, (4, 3): 2_502_291, (5, 1): 5_719_135, (5, 3): 5_719_423}
PAPER_MILLIONS = {4: 2.50, 5: 5.72}


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("depth", [4, 5])
def test_parameter_counts_match_the_paper(depth, in_channels):
    model = UNet(in_channels, 3, channels=GI_UNET_CHANNELS[depth])
    n = _n_params(model)
    assert n == EXPECTED[depth, in_channels]
    assert round(n / 1e6, 2) == PAPER_MILLIONS[depth]
    assert model.divisor == 2**depth and len(model.encoder.stages) == depth + 1
    assert model.channels == GI_UNET_CHANNELS[depth]


def test_widths_double_from_16_up_to_the_chosen_bottleneck():
    assert GI_UNET_CHANNELS[4] == [16, 32, 64, 128, 336]
    assert GI_UNET_CHANNELS[5] == [16, 32, 64, 128, 256, 322]
    # plain doubling from 16 gives neither count: that is why the bottleneck is set explicitly
    assert round(_n_params(UNet(3, 3, depth=4, base_channels=16)) / 1e6, 2) != 2.50
    assert round(_n_params(UNet(3, 3, depth=5, base_channels=16)) / 1e6, 2) != 5.72


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("depth", [4, 5])
def test_forward_shapes_128(depth, in_channels):
    torch.manual_seed(0)
    model = UNet(in_channels, 3, channels=GI_UNET_CHANNELS[depth]).eval()
    x = torch.randn(2, in_channels, 128, 128)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 3, 128, 128) and torch.isfinite(out).all()


def test_channels_override_base_and_max_channels():
    a = UNet(1, 2, channels=[4, 8, 12], base_channels=64, max_channels=8)
    b = UNet(1, 2, channels=[4, 8, 12])
    assert a.channels == b.channels == [4, 8, 12] and _n_params(a) == _n_params(b)
    assert UNet(1, 2, channels=[4, 8, 12], depth=2).divisor == 4  # an agreeing depth is fine
    assert UNet(1, 2, base_channels=4).channels == [4, 8, 16, 32, 64]  # without channels: depth 4 as before


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": [16, 32, 64, 128, 336], "depth": 5}, "disagrees"),
        ({"channels": [16, 32, 64, 128, 256, 322], "depth": 4}, "disagrees"),
        ({"channels": [16]}, "at least 2"),
        ({"channels": []}, "at least 2"),
        ({"channels": [16, 0]}, ">= 1"),
        ({"channels": [16, -4, 8]}, ">= 1"),
        ({"channels": [16, 32.5]}, "whole numbers"),
    ],
)
def test_bad_channels_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(1, 3, **kwargs)


def test_disagreement_is_a_config_error_through_the_registry():
    with pytest.raises(ConfigError, match="disagrees"):
        build_model("unet", in_channels=1, out_channels=3, depth=4, channels=[4, 8, 16])


def test_rebuilt_from_json_kwargs_gives_the_same_model():
    torch.manual_seed(0)
    kwargs = {"in_channels": 3, "out_channels": 3, "spatial_dims": 2, "channels": [4, 8, 16, 42]}
    model = build_model("unet", **kwargs).eval()
    again = build_model("unet", **json.loads(json.dumps(kwargs))).eval()
    again.load_state_dict(model.state_dict())  # same layers, same shapes
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_deep_supervision_with_explicit_channels():
    torch.manual_seed(1)
    model = build_model("unet", in_channels=3, out_channels=3, channels=[4, 8, 16, 20], deep_supervision=2)
    # the extra heads sit on the decoder stages of widths 8 and 16
    assert [h.in_channels for h in model.aux_heads] == [8, 16]
    loss_fn = build_loss([{"name": "bce"}, {"name": "dice", "weight": 0.5}], "multilabel")
    x = torch.randn(2, 3, 24, 24)
    y = (torch.rand(2, 3, 24, 24) > 0.7).float()
    loss, logits = training_loss(model, loss_fn, x, y)
    assert logits.shape == (2, 3, 24, 24) and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match="deep_supervision"):
        UNet(1, 3, channels=[4, 8, 16], deep_supervision=2)  # only depth - 1 = 1 lower stage
