"""Semantic segmentation models: one family per module (FCN, U-Net, DeepLab with Mobile DeepLabv3
and LR-ASPP). Importing this package registers them with task="segmentation".

Every model maps (N, H, W, C) images to (N, H, W, classes) float32 scores at the input resolution
(softmax by default, logits with `classifier_activation=None`). docs/segmentation_models.md lists
them with their sizes and costs.
"""

from kerascnn.models.segmentation import deeplab, fcn, unet  # noqa: F401
from kerascnn.models.segmentation.common import transfer_backbone

__all__ = ["transfer_backbone"]
