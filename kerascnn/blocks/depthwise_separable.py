"""Depthwise-separable convolution (MobileNet V1, Howard et al., 2017, https://arxiv.org/abs/1704.04861)."""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.conv import (BN_EPSILON, BN_MOMENTUM, apply_activation,
                                  apply_conv_bn_act_block, make_divisible)
from kerascnn.blocks.se import apply_se_block


def apply_depthwise_separable_block(x, *, filters, kernel_size=3, strides=1, dilation_rate=1,
                                    depth_multiplier=1, activation="relu6", se_ratio=None,
                                    bn_epsilon=BN_EPSILON, bn_momentum=BN_MOMENTUM, name):
    """Depthwise kxk -> BN -> act [-> SE] -> pointwise 1x1 -> BN -> act.

    Its cost relative to a standard convolution is 1/filters + 1/kernel_size^2.

    Layer names: {name}_dw_conv, {name}_dw_bn, {name}_dw_{act}, {name}_se_*, {name}_pw_conv,
    {name}_pw_bn, {name}_pw_{act}.
    """
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, dilation_rate=dilation_rate,
                               padding="same", depth_multiplier=depth_multiplier, use_bias=False,
                               name=f"{name}_dw_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_dw_bn")(x)
    x = apply_activation(x, activation, name=f"{name}_dw_{activation}")
    if se_ratio:
        channels = x.shape[-1]
        x = apply_se_block(x, filters=channels, squeeze_filters=make_divisible(channels * se_ratio),
                           name=f"{name}_se")
    return apply_conv_bn_act_block(x, filters=filters, kernel_size=1, activation=activation,
                                   bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, name=f"{name}_pw")
