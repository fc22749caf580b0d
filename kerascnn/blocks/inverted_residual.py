"""The inverted residual block with a linear bottleneck (MobileNetV2, Sandler et al., 2018,
https://arxiv.org/abs/1801.04381), with MobileNetV3's squeeze-and-excitation and hard-swish options
and EfficientNet's stochastic depth."""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.conv import BN_EPSILON, BN_MOMENTUM, apply_activation, apply_conv_bn_act_block
from kerascnn.blocks.se import apply_se_block


def apply_inverted_residual_block(x, *, filters, expand_filters, kernel_size=3, strides=1,
                                  dilation_rate=1, activation="relu6", se_filters=None,
                                  se_gate="hard_sigmoid", se_activation="relu", residual=True,
                                  drop_rate=0.0, bn_epsilon=BN_EPSILON, bn_momentum=BN_MOMENTUM,
                                  name):
    """[1x1 expand -> BN -> act] -> depthwise kxk -> BN -> act [-> SE] -> 1x1 project -> BN [+ x].

    The projection is linear (no activation): a ReLU on the narrow bottleneck would destroy
    information, which is the paper's argument for linear bottlenecks.

    Args:
        filters: output channels.
        expand_filters: channels after the expansion; equal to the input channels means no
            expansion convolution (the first MobileNetV2 block).
        se_filters: squeeze width of an SE block after the depthwise convolution, or None.
        residual: add the input when the shapes allow it (stride 1, same channels).
        drop_rate: stochastic depth: drop the residual branch per sample with this probability.

    Layer names: {name}_expand_*, {name}_dw_conv, {name}_dw_bn, {name}_dw_{act}, {name}_se_*,
    {name}_project_conv, {name}_project_bn, {name}_drop, {name}_add.
    """
    shortcut = x
    in_filters = x.shape[-1]
    if expand_filters != in_filters:
        x = apply_conv_bn_act_block(x, filters=expand_filters, kernel_size=1, activation=activation,
                                    bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
                                    name=f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, dilation_rate=dilation_rate,
                               padding="same", use_bias=False, name=f"{name}_dw_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_dw_bn")(x)
    x = apply_activation(x, activation, name=f"{name}_dw_{activation}")
    if se_filters:
        x = apply_se_block(x, filters=expand_filters, squeeze_filters=se_filters,
                           activation=se_activation, gate=se_gate, name=f"{name}_se")
    x = apply_conv_bn_act_block(x, filters=filters, kernel_size=1, activation=None,
                                bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
                                name=f"{name}_project")
    if residual and strides == 1 and in_filters == filters:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x
