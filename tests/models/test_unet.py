"""Tests of the U-Net family (medseg.models.unet), its blocks and the model registry."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from medseg.errors import ConfigError
from medseg.models import UNet, available_models, build_model
from medseg.models.blocks import SegmentationNet, stage_channels

# Small widths keep every forward pass cheap on a 2-core CPU; shapes do not depend on the width.
SMALL = {"base_channels": 4}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
@pytest.mark.parametrize("size", [(128, 128), (94, 93)], ids=["128x128", "raw94x93"])
def test_output_shape_every_depth(depth, size):
    torch.manual_seed(0)
    model = UNet(1, 4, depth=depth, **SMALL).eval()
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 4, *size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model.divisor == 2**depth
    assert len(model.encoder.stages) == depth + 1
    assert len(model.decoder.ups) == depth


def test_3d_unet_on_odd_sized_volume():
    torch.manual_seed(0)
    model = UNet(1, 3, spatial_dims=3, depth=2, base_channels=4).eval()
    assert any(isinstance(m, nn.Conv3d) for m in model.modules())
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    x = torch.randn(1, 1, 13, 10, 7)  # none of the sizes is a multiple of the divisor 4
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 3, 13, 10, 7)
    assert torch.isfinite(out).all()


class _Identity(SegmentationNet):
    """forward_features returns its (padded) input, so forward must crop back to exactly the input."""

    divisor = 16

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Size] = []

    def forward_features(self, x):
        self.seen.append(x.shape)
        return x


def test_base_class_pads_replicate_and_crops_back_the_same_pixels():
    net = _Identity()
    x = torch.arange(94 * 93, dtype=torch.float32).reshape(1, 1, 94, 93)
    out = net(x)
    # 94 -> 96 (2 rows: 1 top, 1 bottom); 93 -> 96 (3 cols: 1 left, 2 right)
    assert net.seen == [torch.Size([1, 1, 96, 96])]
    assert torch.equal(out, x)  # a crop that is off by one pixel would fail here


def test_base_class_leaves_divisible_input_alone():
    net = _Identity()
    x = torch.randn(1, 2, 32, 48)
    out = net(x)
    assert net.seen == [torch.Size([1, 2, 32, 48])]
    assert torch.equal(out, x)


# ------------------------------------------------------------------------------------ parameter count


def _conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _bn(c: int) -> int:
    return 2 * c  # weight + bias (running stats are buffers, not parameters)


def _double_conv(cin: int, cout: int) -> int:
    # 3x3 conv without bias (a norm follows) + BN, twice
    return _conv(cin, cout, 3, False) + _bn(cout) + _conv(cout, cout, 3, False) + _bn(cout)


def _expected_unet_params(in_ch: int, out_ch: int, depth: int, base: int) -> int:
    chans = [base * 2**i for i in range(depth + 1)]  # 64, 128, 256, 512, 1024
    total = 0
    prev = in_ch
    for c in chans:  # encoder stages
        total += _double_conv(prev, c)
        prev = c
    for deep, skip in zip(
        chans[:0:-1], chans[-2::-1], strict=True
    ):  # decoder: (1024,512), (512,256), (256,128), (128,64)
        total += _conv(deep, skip, 2, True)  # 2x2 transposed conv, with bias
        total += _double_conv(2 * skip, skip)  # concat(skip, up) -> skip
    total += _conv(chans[0], out_ch, 1, True)  # 1x1 head
    return total


def test_expected_count_helper_by_hand_for_a_tiny_unet():
    # depth 1, base 2, 1 in, 3 out; channels [2, 4]
    # enc0: 1*2*9 + 4 + 2*2*9 + 4          = 18 + 4 + 36 + 4   = 62
    # enc1: 2*4*9 + 8 + 4*4*9 + 8          = 72 + 8 + 144 + 8  = 232
    # up:   4*2*4 + 2                       = 34
    # dec:  4*2*9 + 4 + 2*2*9 + 4          = 72 + 4 + 36 + 4   = 116
    # head: 2*3 + 3                         = 9
    # total = 62 + 232 + 34 + 116 + 9       = 453
    assert _expected_unet_params(1, 3, 1, 2) == 453
    assert _n_params(UNet(1, 3, depth=1, base_channels=2)) == 453


def test_standard_unet_parameter_count():
    model = UNet(1, 4, depth=4, base_channels=64)
    expected = _expected_unet_params(1, 4, 4, 64)
    assert expected == 31_036_676  # ≈ 31.04 M, the standard U-Net
    assert _n_params(model) == expected
    assert model.channels == [64, 128, 256, 512, 1024]


def test_stage_channels_cap():
    assert stage_channels(64, 4) == [64, 128, 256, 512, 1024]
    assert stage_channels(64, 5, max_channels=512) == [64, 128, 256, 512, 512, 512]


# ----------------------------------------------------------------------------------------- gradients


def test_backward_gives_finite_gradients_for_every_parameter():
    torch.manual_seed(0)
    model = UNet(1, 4, depth=3, base_channels=4, dropout=0.1).train()
    x = torch.randn(2, 1, 40, 36)
    target = torch.randint(0, 4, (2, 40, 36))
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # The gradient reaches the very first layer (the skips and the bottleneck are wired in).
    first = model.encoder.stages[0][0][0].weight.grad
    assert first.abs().sum() > 0


# -------------------------------------------------------------------------------------------- registry


def test_registry_lists_the_unet_family():
    names = available_models()
    assert {"unet", "sim_unet", "saleh_unet"} <= set(names)
    assert names == sorted(names)


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    name = "medseg_test_tiny_models_mod"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
        import torch
        from torch import nn

        class TinyNet(nn.Module):
            def __init__(self, in_channels=1, out_channels=2, width=3):
                super().__init__()
                self.width = width
                self.body = nn.Conv2d(in_channels, width, 3, padding=1)
                self.head = nn.Conv2d(width, out_channels, 1)

            def forward(self, x):
                return self.head(torch.relu(self.body(x)))

        NOT_A_CLASS = 1
        """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_build_model_from_dotted_path(tiny_module):
    model = build_model(f"{tiny_module}:TinyNet", trust_code=True, in_channels=1, out_channels=5, width=7)
    assert type(model).__name__ == "TinyNet"
    assert model.width == 7
    out = model(torch.randn(1, 1, 9, 11))
    assert out.shape == (1, 5, 9, 11)


def test_dotted_path_without_trust_code_is_refused_before_importing(tiny_module, monkeypatch):
    import importlib

    imported = []
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imported.append(name))
    with pytest.raises(ConfigError, match="--trust-code") as info:
        build_model("os:system", command="echo pwned")
    assert "'os:system'" in str(info.value)
    assert imported == [] or all(n.startswith("medseg") for n in imported)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"base_channels": 10**9}, "outside"),
        ({"base_channels": float("nan")}, "finite"),
        ({"norm": {"__class__": "x"}}, "type dict"),
        ({"depth": list(range(1000))}, "list of 1000"),
    ],
)
def test_model_settings_are_plain_bounded_values(kwargs, problem):
    with pytest.raises(ConfigError, match=problem):
        build_model("unet", **kwargs)


@pytest.mark.parametrize("kwargs", [{"base_channels": -3}, {"spatial_dims": 5}, {"depth": 60000}])
def test_settings_a_constructor_cannot_build_are_config_errors(kwargs):
    for name in ("unet", "rse_unet", "ctv_unet3d"):
        with pytest.raises(ConfigError, match="does not take these settings"):
            build_model(name, **kwargs)


def test_dotted_path_with_missing_attribute_is_config_error(tiny_module):
    with pytest.raises(ConfigError, match="NoSuchNet"):
        build_model(f"{tiny_module}:NoSuchNet", trust_code=True)


def test_dotted_path_with_missing_module_is_config_error():
    with pytest.raises(ConfigError, match="medseg_no_such_module_xyz"):
        build_model("medseg_no_such_module_xyz:Net", trust_code=True)


def test_dotted_path_with_bad_kwargs_is_config_error(tiny_module):
    with pytest.raises(ConfigError, match="TinyNet") as info:
        build_model(f"{tiny_module}:TinyNet", trust_code=True, depth=3)
    assert "depth" in str(info.value)


def test_unknown_model_name_is_config_error_listing_available():
    with pytest.raises(ConfigError) as info:
        build_model("unett")
    msg = str(info.value)
    assert "unett" in msg
    for known in ("unet", "sim_unet", "saleh_unet"):
        assert known in msg


def test_bad_kwargs_is_config_error_naming_model_and_setting():
    with pytest.raises(ConfigError) as info:
        build_model("unet", base_chanels=16)
    msg = str(info.value)
    assert "'unet'" in msg
    assert "base_chanels" in msg


def test_presets_have_their_depth():
    sim = build_model("sim_unet", base_channels=4)
    saleh = build_model("saleh_unet", base_channels=4)
    assert isinstance(sim, UNet) and isinstance(saleh, UNet)
    assert len(sim.encoder.stages) == 3  # 2 poolings -> 3 encoder stages
    assert len(saleh.encoder.stages) == 4  # 3 poolings -> 4 encoder stages
    assert sim.divisor == 4 and saleh.divisor == 8
    # An explicit depth still wins over the preset's default.
    assert len(build_model("sim_unet", base_channels=4, depth=3).encoder.stages) == 4


def test_invalid_depth_and_norm_are_rejected():
    with pytest.raises(ValueError, match="depth"):
        UNet(1, 4, depth=0)
    with pytest.raises(ValueError, match="norm"):
        UNet(1, 4, depth=2, base_channels=4, norm="layer")
    with pytest.raises(ValueError, match="upsampling"):
        UNet(1, 4, depth=2, base_channels=4, upsample="pixelshuffle")


# ------------------------------------------------------------------------------- norms and upsampling

_NORM_TYPES = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d, "group": nn.GroupNorm}


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_each_norm_builds_and_runs(norm):
    torch.manual_seed(0)
    model = UNet(1, 3, depth=2, base_channels=8, norm=norm)
    norm_layers = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm))]
    convs3 = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    # 3 encoder + 2 decoder DoubleConvs = 10 3x3 convs, each followed by a norm unless norm == none
    assert len(convs3) == 10
    if norm == "none":
        assert norm_layers == []
        assert all(c.bias is not None for c in convs3)
    else:
        assert len(norm_layers) == 10
        assert all(isinstance(m, _NORM_TYPES[norm]) for m in norm_layers)
        assert all(c.bias is None for c in convs3)
    if norm == "group":
        assert all(m.num_groups == 8 for m in norm_layers)  # 8, 16, 32 channels are all divisible by 8
    x = torch.randn(2, 1, 30, 30)
    out = model.train()(x)
    out.mean().backward()
    assert out.shape == (2, 3, 30, 30)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x)).all()


@pytest.mark.parametrize("mode", ["transpose", "bilinear", "nearest"])
def test_each_upsample_mode_builds_and_runs(mode):
    torch.manual_seed(0)
    model = UNet(1, 2, depth=2, base_channels=4, upsample=mode).eval()
    has_transpose = any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    assert has_transpose == (mode == "transpose")
    with torch.no_grad():
        out = model(torch.randn(1, 1, 33, 27))
    assert out.shape == (1, 2, 33, 27)
    assert torch.isfinite(out).all()


def test_group_norm_falls_back_to_fewer_groups():
    model = UNet(1, 2, depth=1, base_channels=6, norm="group")  # 6 and 12 channels
    groups = {m.num_channels: m.num_groups for m in model.modules() if isinstance(m, nn.GroupNorm)}
    assert groups[6] == 2  # 6 % 8 != 0, 6 % 4 != 0, 6 % 2 == 0
    assert groups[12] == 4  # 12 % 8 != 0, 12 % 4 == 0


# ------------------------------------------------------------------------------------------ determinism


def test_eval_mode_is_deterministic_and_batch_independent():
    torch.manual_seed(0)
    model = UNet(1, 4, depth=3, base_channels=4, dropout=0.5)
    x = torch.randn(3, 1, 48, 40)
    model.train()
    model(x)  # move the BN running statistics away from their initial values
    model.eval()
    bn = model.encoder.stages[0][0][1]
    running = bn.running_mean.clone()
    with torch.no_grad():
        a = model(x)
        b = model(x)
        single = model(x[1:2])
    assert torch.equal(a, b)
    assert torch.equal(bn.running_mean, running)  # eval does not update the statistics
    torch.testing.assert_close(single, a[1:2], rtol=1e-5, atol=1e-5)  # no batch statistics leak in eval


def test_train_mode_dropout_is_random():
    torch.manual_seed(0)
    model = UNet(1, 2, depth=2, base_channels=4, dropout=0.5)
    x = torch.randn(1, 1, 32, 32)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
