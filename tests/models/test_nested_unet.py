import pytest
import torch

from medseg.artifact import model_kwargs
from medseg.config import load_config
from medseg.models import build_model
from medseg.models.nested_unet import NestedUNet


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_logits_at_128_and_at_the_raw_pommier_size():
    net = NestedUNet(1, 4, base_channels=4).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 128, 128)).shape == (1, 4, 128, 128)
        # 94×93 is padded to 96×96 (divisor 2⁴ = 16) and cropped back.
        assert net(torch.randn(1, 1, 94, 93)).shape == (1, 4, 94, 93)


def test_every_node_has_the_channels_and_size_of_eq_1_and_2():
    f = [4, 8, 16, 32, 64]
    net = NestedUNet(1, 4, base_channels=4).eval()
    with torch.no_grad():
        out = net.node_outputs(torch.randn(1, 1, 64, 64))
    assert [len(level) for level in out] == [5, 4, 3, 2, 1]  # X^{i,0..4-i}
    for i, level in enumerate(out):
        for x in level:
            assert x.shape == (1, f[i], 64 >> i, 64 >> i)
    # Input channels of the first conv of node X^{i,j}: f(i-1) (image channels for i = 0) when j = 0,
    # j·f(i) + f(i+1) when j > 0, e.g. X^{0,4}: 4·4 + 8 = 24, X^{1,2}: 2·8 + 16 = 32, X^{3,1}: 32 + 64 = 96.
    first_conv_in = {(i, j): net.nodes[i][j][0].in_channels for i in range(5) for j in range(5 - i)}
    assert first_conv_in[(0, 0)] == 1 and first_conv_in[(3, 0)] == 16 and first_conv_in[(4, 0)] == 32
    assert first_conv_in[(0, 4)] == 24 and first_conv_in[(1, 2)] == 32 and first_conv_in[(3, 1)] == 96
    # M_ij = O_ij = f(i): both convolutions of a node output f(i) channels.
    assert all(
        net.nodes[i][j][3].out_channels == net.nodes[i][j][0].out_channels == f[i]
        for i in range(5)
        for j in range(5 - i)
    )


def test_dense_skip_nodes_feed_the_output():
    # Without deep supervision only x^{0,4} reaches the head; the inner nodes X^{0,1} and X^{2,1} must still
    # change the logits, through the dense skips [x^{0,0..3}, U(x^{1,3})] of Eq. 1.
    torch.manual_seed(0)
    net = NestedUNet(1, 4, base_channels=4).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        before = net(x)
        for i, j in ((0, 1), (2, 1)):
            net.nodes[i][j][0].weight.add_(0.5)
            after = net(x)
            assert not torch.allclose(after, before)
            before = after


def test_deep_supervision_averages_the_four_heads():
    torch.manual_seed(0)
    net = NestedUNet(1, 4, base_channels=4, deep_supervision=True).eval()
    assert len(net.heads) == 4
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        top = net.node_outputs(x)[0]
        expected = sum(head(t) for head, t in zip(net.heads, top[1:], strict=True)) / 4
        torch.testing.assert_close(net(x), expected)


def test_3d_and_gradients():
    net = NestedUNet(1, 3, spatial_dims=3, depth=2, base_channels=2)
    x = torch.randn(1, 1, 8, 8, 8)
    out = net(x)
    assert out.shape == (1, 3, 8, 8, 8)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_full_width_parameter_count_matches_amfl_table_iv():
    # AMFL Table IV: NestedUNet 36.63M (3 input channels, as the public implementation counts).
    # Per node: I·M·9 + M·O·9 conv weights (+ M + O biases) + 2·(M + O) BatchNorm; head 64·4 + 4.
    # With biases and 3 input channels the sum over the 15 nodes is 36,629,828; without the redundant
    # biases (medseg default) 7,296 fewer (= 2 × Σ f(i) over the nodes = 2 × (5·64 + 4·128 + 3·256 + 2·512 + 1024)).
    exact = n_params(NestedUNet(3, 4, conv_bias=True))
    assert exact == 36_629_828
    assert round(exact / 1e6, 2) == 36.63
    ours3 = n_params(NestedUNet(3, 4))
    assert ours3 == exact - 2 * (5 * 64 + 4 * 128 + 3 * 256 + 2 * 512 + 1024) == 36_622_532
    assert abs(ours3 / 36.63e6 - 1) < 0.05
    # medseg's grey input: 2 fewer input channels of node X^{0,0}'s first conv: 2·64·9 = 1,152 fewer.
    assert n_params(NestedUNet(1, 4)) == ours3 - 2 * 64 * 9 == 36_621_380


def test_built_from_the_amfl_configs_by_name():
    cfg = load_config("configs/chromosomes/nested_unet.yaml")
    kwargs = model_kwargs(cfg)
    assert cfg["model"]["name"] == "nested_unet" and kwargs["deep_supervision"] is False
    kwargs["base_channels"] = 4  # narrow: this test is about the config plumbing
    net = build_model("nested_unet", **kwargs)
    assert isinstance(net, NestedUNet) and net.channels == [4, 8, 16, 32, 64]


def test_bad_options_are_refused():
    with pytest.raises(ValueError):
        NestedUNet(depth=0)
    with pytest.raises(ValueError):
        NestedUNet(upsample="transpose")
