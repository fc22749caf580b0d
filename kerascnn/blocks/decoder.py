"""Decoder blocks of the segmentation models: U-Net's upsample-concatenate-convolve step and
DeepLabv3+'s low-level-feature decoder.

- Ronneberger et al., "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI
  2015, https://arxiv.org/abs/1505.04597.
- Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
  Segmentation" (DeepLabv3+), ECCV 2018, https://arxiv.org/abs/1802.02611, section 3.1.
"""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.aspp import apply_separable_conv_bn_act_block
from kerascnn.blocks.conv import BN_EPSILON, BN_MOMENTUM, apply_conv_bn_act_block
from kerascnn.blocks.upsample import apply_upsample_block


def apply_unet_decoder_block(x, skip, *, filters, up_filters=None, upsampling="nearest",
                             up_kernel_size=None, batch_norm=True, separable=False,
                             bn_epsilon=BN_EPSILON, bn_momentum=BN_MOMENTUM, name):
    """Upsample x2 [-> up-conv] [-> concat skip] -> (3x3 conv -> BN -> ReLU) x 2.

    Args:
        skip: the encoder map at the upsampled resolution, or None (a block without a skip).
        filters: width of the two 3x3 convolutions.
        up_filters: width of the up-convolution (U-Net's "up-conv" halves the channels). With a
            resize mode, None means no convolution after the resize (the 3x3 convolutions follow
            the concatenation anyway); with "transpose", None keeps the channel count.
        upsampling: "nearest", "bilinear" or "transpose" (see `apply_upsample_block`).
        up_kernel_size: kernel of the up-convolution (default: 3 after a resize, 2 for
            "transpose": the paper's 2x2 up-convolution, whose windows do not overlap).
        batch_norm: BatchNormalization after each 3x3 convolution (convolutions without it carry
            a bias).
        separable: depthwise-separable 3x3 convolutions (depthwise 3x3 -> BN -> ReLU -> 1x1 ->
            BN -> ReLU), as in DeepLabv3+'s decoder; needs `batch_norm`. Much cheaper at full
            resolution, where a U-Net spends most of its training step.

    Layer names: {name}_up_resize, {name}_up_conv or {name}_up_deconv, {name}_concat,
    {name}_conv1_*, {name}_conv2_* (separable: {name}_conv{j}_dw_*, {name}_conv{j}_pw_*).
    """
    if separable and not batch_norm:
        raise ValueError("`separable=True` needs `batch_norm=True` (each part of the separable "
                         "convolution is followed by batch norm). Received: separable=True, "
                         "batch_norm=False")
    if upsampling == "transpose":
        up_kernel_size = 2 if up_kernel_size is None else up_kernel_size
    x = apply_upsample_block(x, factor=2, mode=upsampling, filters=up_filters,
                             kernel_size=up_kernel_size, conv=up_filters is not None,
                             name=f"{name}_up")
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    for j in (1, 2):
        if separable:
            x = apply_separable_conv_bn_act_block(x, filters=filters, separable=True,
                                                  bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
                                                  name=f"{name}_conv{j}")
        else:
            x = apply_conv_bn_act_block(x, filters=filters, kernel_size=3, batch_norm=batch_norm,
                                        use_bias=not batch_norm, bn_epsilon=bn_epsilon,
                                        bn_momentum=bn_momentum, name=f"{name}_conv{j}")
    return x


def apply_deeplab_decoder_block(x, low_level, *, factor, filters=256, low_level_filters=48,
                                upsampling="nearest", separable=False, bn_epsilon=BN_EPSILON,
                                bn_momentum=BN_MOMENTUM, name="decoder"):
    """low_level -> 1x1 (48) -> BN -> ReLU; x -> upsample by `factor`; concat -> (3x3 conv -> BN ->
    ReLU) x 2.

    The 1x1 projection keeps the many low-level channels from outweighing the encoder's features
    (the paper's ablation: 48 channels). With a resize mode the upsampled encoder features are not
    convolved before the concatenation (the 3x3 convolutions after it do that); with "transpose"
    they go through a transposed convolution that keeps their width, initialised bilinear.

    Args:
        low_level: the backbone's stride-4 features (P2).
        factor: the upsampling from the encoder's output stride to 4 (4 at output stride 16).
        separable: depthwise-separable 3x3 convolutions (DeepLabv3+'s choice with Xception).

    Layer names: {name}_low_level_*, {name}_up_*, {name}_concat, {name}_conv1_*, {name}_conv2_*.
    """
    bn = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    low_level = apply_conv_bn_act_block(low_level, filters=low_level_filters, kernel_size=1,
                                        name=f"{name}_low_level", **bn)
    x = apply_upsample_block(x, factor=factor, mode=upsampling, conv=False, name=f"{name}_up")
    x = layers.Concatenate(name=f"{name}_concat")([x, low_level])
    for j in (1, 2):
        x = apply_separable_conv_bn_act_block(x, filters=filters, separable=separable,
                                              name=f"{name}_conv{j}", **bn)
    return x
