"""Atrous Spatial Pyramid Pooling (ASPP), DeepLabv3's context module.

Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", 2017,
https://arxiv.org/abs/1706.05587, section 3.3: one 1x1 convolution, three 3x3 convolutions with
atrous rates (6, 12, 18) at output stride 16 (doubled, (12, 24, 36), at output stride 8) and
image-level features (global average pooling, a 1x1 convolution, upsampled back), each with 256
filters and batch normalization, concatenated and projected by another 1x1 convolution.
DeepLabv3+ (https://arxiv.org/abs/1802.02611) makes the atrous convolutions depthwise-separable
(`separable=True`); the MobileNetV2 paper's "Mobile DeepLabv3" keeps only the 1x1 and pooling
branches (`rates=()`).

The pooled branch is resized back with a nearest `Resizing` from 1x1 to the map's size: every
output pixel is the same vector, so nearest and bilinear give identical results and nearest is an
exact copy in int8 (TFLite RESIZE_NEAREST_NEIGHBOR). That needs the feature map's size when the
model is built, so a model with ASPP image pooling has a fixed input size.
"""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.conv import BN_EPSILON, BN_MOMENTUM, apply_conv_bn_act_block
from kerascnn.blocks.depthwise_separable import apply_depthwise_separable_block


def aspp_rates(output_stride: int) -> tuple:
    """DeepLabv3's atrous rates: (6, 12, 18) at output stride 16, scaled by 16 / output_stride."""
    scale = 16 // output_stride
    return tuple(rate * scale for rate in (6, 12, 18))


def apply_separable_conv_bn_act_block(x, *, filters, kernel_size=3, dilation_rate=1,
                                      separable=False, activation="relu", bn_epsilon=BN_EPSILON,
                                      bn_momentum=BN_MOMENTUM, name):
    """Conv kxk -> BN -> act, or with `separable`: depthwise kxk -> BN -> act -> 1x1 -> BN -> act
    (DeepLabv3+'s depthwise-separable convolution, with batch norm and ReLU after each part).

    Layer names: {name}_conv, {name}_bn, {name}_{act}; separable: {name}_dw_conv, {name}_dw_bn,
    {name}_dw_{act}, {name}_pw_conv, {name}_pw_bn, {name}_pw_{act}.
    """
    bn = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    if separable:
        return apply_depthwise_separable_block(x, filters=filters, kernel_size=kernel_size,
                                               dilation_rate=dilation_rate, activation=activation,
                                               name=name, **bn)
    return apply_conv_bn_act_block(x, filters=filters, kernel_size=kernel_size,
                                   dilation_rate=dilation_rate, activation=activation, name=name,
                                   **bn)


def apply_aspp_block(x, *, filters=256, rates=(6, 12, 18), image_pooling=True, separable=False,
                     dropout_rate=0.1, bn_epsilon=BN_EPSILON, bn_momentum=BN_MOMENTUM,
                     name="aspp"):
    """[1x1 | 3x3 rate r for r in rates | pool -> 1x1 -> resize] -> concat -> 1x1 -> BN -> ReLU
    -> dropout. Every branch is conv -> BN -> ReLU.

    Args:
        filters: width of each branch and of the projection (the paper: 256).
        rates: atrous rates of the 3x3 branches (`aspp_rates(output_stride)`); () leaves only the
            1x1 and pooling branches.
        image_pooling: add the image-level branch; the map's height and width must be known.
        separable: depthwise-separable 3x3 branches (DeepLabv3+).
        dropout_rate: dropout after the projection (DeepLab's reference code: 0.1).

    Returns:
        The projected features, `filters` channels at the input's resolution.

    Raises:
        ValueError: image pooling on a map of unknown size.

    Layer names: {name}_b0_*, {name}_b{i}_* (i = 1.. for the rates), {name}_pool_avg,
    {name}_pool_conv, {name}_pool_bn, {name}_pool_relu, {name}_pool_resize, {name}_concat,
    {name}_project_*, {name}_dropout.
    """
    bn = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    branches = [apply_conv_bn_act_block(x, filters=filters, kernel_size=1, name=f"{name}_b0", **bn)]
    for i, rate in enumerate(rates, start=1):
        branches.append(apply_separable_conv_bn_act_block(
            x, filters=filters, dilation_rate=rate, separable=separable, name=f"{name}_b{i}", **bn))
    if image_pooling:
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None:
            raise ValueError("ASPP image pooling needs the feature map's height and width when the "
                             "model is built; pass a fixed input_shape, e.g. (512, 512, 3). "
                             f"Received a feature map of shape {tuple(x.shape)}")
        pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool_avg")(x)
        pooled = apply_conv_bn_act_block(pooled, filters=filters, kernel_size=1,
                                         name=f"{name}_pool", **bn)
        branches.append(layers.Resizing(height, width, interpolation="nearest",
                                        name=f"{name}_pool_resize")(pooled))
    x = layers.Concatenate(name=f"{name}_concat")(branches) if len(branches) > 1 else branches[0]
    x = apply_conv_bn_act_block(x, filters=filters, kernel_size=1, name=f"{name}_project", **bn)
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    return x
