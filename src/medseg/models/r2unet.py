"""R2U-Net and R2AttU-Net (Alom et al., 2018, "Recurrent Residual Convolutional Neural Network based on U-Net
(R2U-Net) for Medical Image Segmentation").

The U-Net layout (4 poolings, 64 → 1024 channels) with every DoubleConv stage replaced by a recurrent
residual convolutional unit (:class:`~medseg.models.blocks.RRCNNBlock`: a 1×1 conv, then two recurrent conv
layers unfolded for t = 2 steps, plus the residual, §III Eq. 1–3). R2AttU-Net adds the attention gates of
Attention U-Net on the skips. Both are AMFL Table II baselines; with ``in_channels=3, out_channels=1`` and
the defaults they have the 39.09 M / 39.44 M parameters of AMFL Table IV, the counts of the public code
(LeeJunHyun/Image_Segmentation: nearest ×2 + 3×3 conv upsampling, shared feed-forward/recurrent weights).

The encoder and decoder reuse the U-Net's forward passes (:class:`~medseg.models.unet.UNetEncoder`,
:class:`~medseg.models.attention_unet.AttentionUNetDecoder`); only the stage blocks differ.
"""

from __future__ import annotations

from monai.networks.layers.factories import Conv
from torch import nn

from medseg.models.attention_unet import AttentionUNetDecoder, make_gates
from medseg.models.blocks import EncoderDecoderNet, RRCNNBlock, UpSample, make_pool
from medseg.models.registry import register_model
from medseg.models.unet import UNetEncoder


class R2UNetEncoder(UNetEncoder):
    """The U-Net contracting path (pool → stage, every stage's features returned) with RRCNN stages."""

    def __init__(
        self,
        in_channels: int,
        channels: list[int],
        *,
        spatial_dims: int,
        norm: str,
        act: str,
        t: int = 2,
        weights: str = "shared",
        pool: str = "max",
    ):
        nn.Module.__init__(self)  # UNetEncoder.__init__ would build DoubleConv stages; only its forward is reused
        kw = dict(t=t, spatial_dims=spatial_dims, norm=norm, act=act, weights=weights)
        ins = [in_channels] + channels[:-1]
        self.stages = nn.ModuleList(RRCNNBlock(cin, cout, **kw) for cin, cout in zip(ins, channels, strict=True))
        self.pool = make_pool(spatial_dims, pool)


class R2UNetDecoder(AttentionUNetDecoder):
    """The U-Net expanding path with RRCNN stages, and attention gates on the skips when ``attention``."""

    def __init__(
        self,
        channels: list[int],
        *,
        spatial_dims: int,
        norm: str,
        act: str,
        upsample: str = "upconv",
        t: int = 2,
        weights: str = "shared",
        attention: bool = False,
        gate_stride: int = 1,
    ):
        nn.Module.__init__(self)  # the parent builders make DoubleConv stages; only the forward is reused
        kw = dict(t=t, spatial_dims=spatial_dims, norm=norm, act=act, weights=weights)
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        for deep, skip in zip(channels[:0:-1], channels[-2::-1], strict=True):
            self.ups.append(UpSample(deep, skip, spatial_dims=spatial_dims, mode=upsample, norm=norm, act=act))
            self.convs.append(RRCNNBlock(2 * skip, skip, **kw))
        self.gate_stride = gate_stride
        self.gates = (
            make_gates(channels, spatial_dims=spatial_dims, norm=norm, gate_stride=gate_stride) if attention else None
        )


@register_model("r2unet")
class R2UNet(EncoderDecoderNet):
    """R2U-Net: U-Net with recurrent residual conv stages.

    Args:
        in_channels, out_channels, spatial_dims: as :class:`~medseg.models.unet.UNet`.
        depth: number of poolings (4 in the paper).
        base_channels: width of the first stage (64 → 1024).
        t: recurrent steps of each recurrent conv layer (2 in the paper: the conv runs t + 1 = 3 times).
        recurrent_weights: ``shared`` (default: one conv for the feed-forward and the recurrent input, the
            public code and Table IV's count) or ``separate`` (Eq. 1's distinct w_f and w_r).
        norm, act: normalisation and activation.
        upsample: ``upconv`` (default, public code) or another :class:`~medseg.models.blocks.UpSample` mode.
        attention: add Attention U-Net gates on the skips (R2AttU-Net).
        gate_stride: see :class:`~medseg.models.attention_unet.AttentionUNet`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        *,
        spatial_dims: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        t: int = 2,
        recurrent_weights: str = "shared",
        norm: str = "batch",
        act: str = "relu",
        upsample: str = "upconv",
        attention: bool = False,
        gate_stride: int = 1,
    ):
        super().__init__()
        self.init_stages(spatial_dims, depth, base_channels)
        kw = dict(spatial_dims=spatial_dims, norm=norm, act=act, t=t, weights=recurrent_weights)
        self.encoder = R2UNetEncoder(in_channels, self.channels, **kw)
        self.decoder = R2UNetDecoder(
            self.channels, upsample=upsample, attention=attention, gate_stride=gate_stride, **kw
        )
        self.head = Conv[Conv.CONV, spatial_dims](self.channels[0], out_channels, kernel_size=1)


@register_model("r2attunet")
class R2AttUNet(R2UNet):
    """R2AttU-Net: R2U-Net with Attention U-Net gates on the skips (``attention=True``)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 4, *, attention: bool = True, **kwargs):
        super().__init__(in_channels, out_channels, attention=attention, **kwargs)
