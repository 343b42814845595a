"""Deep supervision for the U-Net (nnU-Net's recipe, an option): extra heads only in the training loss."""

import pytest
import torch
import torch.nn.functional as F

from medseg.losses import build_loss
from medseg.metrics import count_parameters
from medseg.models import build_model, training_loss


def test_off_by_default_and_outputs_unchanged():
    torch.manual_seed(0)
    plain = build_model("unet", in_channels=1, out_channels=3, depth=3, base_channels=4)
    torch.manual_seed(0)
    ds = build_model("unet", in_channels=1, out_channels=3, depth=3, base_channels=4, deep_supervision=2)
    # the two extra 1×1 heads (stage widths 8 and 16) are the only new parameters
    assert count_parameters(ds) - count_parameters(plain) == (8 * 3 + 3) + (16 * 3 + 3)
    ds.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 1, 30, 27)
    with torch.no_grad():
        torch.testing.assert_close(ds.eval()(x), plain.eval()(x))


@pytest.mark.parametrize("dims", [2, 3])
def test_loss_is_the_weighted_sum_over_stages(dims):
    torch.manual_seed(1)
    model = build_model(
        "unet", in_channels=1, out_channels=2, depth=2, base_channels=4, spatial_dims=dims, deep_supervision=1
    ).eval()
    loss_fn = build_loss([{"name": "ce"}], "multiclass")
    shape = (1, 1, 13, 14) if dims == 2 else (1, 1, 9, 10, 11)
    x = torch.randn(shape)
    y = torch.randint(0, 2, (1, *shape[2:]))
    loss, logits = training_loss(model, loss_fn, x, y)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x))
        padded, pads = model.pad_input(x)
        outs = model.decoder(model.encoder(padded), return_all=True)
        aux = F.interpolate(
            model.aux_heads[0](outs[-2]),
            size=padded.shape[2:],
            mode="bilinear" if dims == 2 else "trilinear",
            align_corners=False,
        )
        aux = model.crop_output(aux, x.shape[2:], pads)
    assert model.supervision_weights() == pytest.approx([2 / 3, 1 / 3])
    torch.testing.assert_close(loss, 2 / 3 * loss_fn(logits, y) + 1 / 3 * loss_fn(aux, y))


def test_too_many_supervised_stages_is_a_config_error():
    from medseg.errors import ConfigError

    with pytest.raises(ConfigError, match="deep_supervision"):
        build_model("unet", depth=2, deep_supervision=2)
