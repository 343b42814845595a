"""MONAI's UNet as a registered medseg model (the reference network of the own-data comparison)."""

import pytest
import torch

from medseg.errors import ConfigError
from medseg.metrics import count_parameters
from medseg.models import build_model


@pytest.mark.parametrize("shape", [(1, 1, 94, 93), (2, 1, 64, 64)])
def test_any_size_in_2d(shape):
    model = build_model("monai_unet", in_channels=1, out_channels=3, channels=[4, 8, 16], strides=[2, 2]).eval()
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == (shape[0], 3, *shape[2:])


def test_3d_and_parameter_count_matches_monai():
    from monai.networks.nets import UNet

    kwargs = dict(channels=[4, 8, 16], strides=[2, 2], num_res_units=1)
    model = build_model("monai_unet", in_channels=1, out_channels=2, spatial_dims=3, **kwargs)
    ref = UNet(spatial_dims=3, in_channels=1, out_channels=2, **kwargs)
    assert count_parameters(model) == count_parameters(ref)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 10, 12, 9)).shape == (1, 2, 10, 12, 9)


def test_mismatched_strides_are_a_config_error():
    with pytest.raises(ConfigError, match="strides"):
        build_model("monai_unet", channels=[4, 8, 16], strides=[2])


def test_the_unet_family_settings_give_monais_layout():
    """depth / base_channels / max_channels (what a plan and ``--set model.depth=2`` say) → channels and strides."""
    import torch

    from medseg.models import build_model

    net = build_model(
        "monai_unet", in_channels=1, out_channels=3, depth=3, base_channels=16, max_channels=32, act="leakyrelu"
    )
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(c.out_channels for c in convs) == 32 and net.divisor == 8  # 16, 32, 32, 32; strides 2, 2, 2
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in net.modules())
    assert net(torch.randn(1, 1, 40, 44)).shape == (1, 3, 40, 44)
    with pytest.raises(Exception, match="not both"):
        build_model("monai_unet", in_channels=1, out_channels=3, depth=3, channels=[8, 16, 32, 64])
