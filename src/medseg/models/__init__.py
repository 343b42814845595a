"""Networks: one file per architecture, shared pieces in :mod:`medseg.models.blocks`."""

# Importing a module registers its networks: in this order (the order models are listed in).
# isort: off
from medseg.models.registry import available_models, build_model, register_model
from medseg.models import unet  # noqa: F401  (registers the U-Net family)
from medseg.models import rse_unet  # noqa: F401  (registers rse_unet)
from medseg.models import nested_unet, patchgan  # noqa: F401  (registers nested_unet, patchgan)
from medseg.models import arms_net, cenet  # noqa: F401  (registers arms_net, unet_r/pr/ar/dar/aar, cenet)
from medseg.models import attention_unet  # noqa: F401  (registers attention_unet)
from medseg.models import r2unet  # noqa: F401  (registers r2unet, r2attunet)
from medseg.models import segnet  # noqa: F401  (registers segnet)
from medseg.models import deeplabv3plus  # noqa: F401  (registers deeplabv3plus)
from medseg.models import enet  # noqa: F401  (registers enet)
from medseg.models import bisenetv2  # noqa: F401  (registers bisenetv2)
from medseg.models import ctv_unet3d  # noqa: F401  (registers ctv_unet3d)
from medseg.models import monai_unet  # noqa: F401  (registers monai_unet)
from medseg.models import chromosome_classifier  # noqa: F401  (registers chromosome_classifier)
from medseg.models.blocks import training_loss
from medseg.models.unet import UNet
# isort: on

__all__ = ["UNet", "available_models", "build_model", "register_model", "training_loss"]
