"""Residual blocks (He et al., 2016: https://arxiv.org/abs/1512.03385 and, pre-activation,
https://arxiv.org/abs/1603.05027), with a squeeze-and-excitation option (SENet) and a `shortcut=False`
option that turns them into the "plain" blocks of the degradation experiment."""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.conv import BN_MOMENTUM, apply_conv_bn_act_block, make_divisible
from kerascnn.blocks.se import apply_se_block

RESNET_BN_EPSILON = 1.001e-5  # keras.applications' value; torchvision uses 1e-5


def _apply_se(x, se_ratio, name):
    channels = x.shape[-1]
    return apply_se_block(x, filters=channels, squeeze_filters=make_divisible(channels * se_ratio),
                          name=f"{name}_se")


def _apply_projection_shortcut(x, *, filters, strides, shortcut_type, use_bias, bn_epsilon,
                               bn_momentum, name):
    """The shortcut when the block changes shape.

    "projection": 1x1 convolution + BN (the paper's option B).
    "padding": subsample by striding and append zero channels (option A: no parameters, used for
    the CIFAR networks so that residual and plain nets have the same parameter count).
    """
    if shortcut_type == "projection":
        return apply_conv_bn_act_block(x, filters=filters, kernel_size=1, strides=strides,
                                       activation=None, use_bias=use_bias, bn_epsilon=bn_epsilon,
                                       bn_momentum=bn_momentum, name=f"{name}_shortcut")
    if strides > 1:
        x = layers.MaxPooling2D(1, strides=strides, name=f"{name}_shortcut_pool")(x)
    extra = filters - x.shape[-1]
    if extra > 0:
        if extra != x.shape[-1]:
            raise ValueError("The 'padding' shortcut doubles the channels; got "
                             f"{x.shape[-1]} -> {filters}.")
        zeros = layers.Rescaling(0.0, name=f"{name}_shortcut_zeros")(x)
        x = layers.Concatenate(name=f"{name}_shortcut_concat")([x, zeros])
    return x


def close_residual_block(x, residual, *, strides, shortcut, shortcut_type="projection",
                         se_ratio=None, drop_rate=0.0, use_bias, bn_epsilon, bn_momentum, name):
    """The end every post-activation block shares: [SE ->] [+ shortcut ->] ReLU.

    `x` is the residual branch after its last BN, `residual` the block's input. The shortcut is
    projected when the block changes the resolution or the channels. Layer names: {name}_se_*,
    {name}_shortcut_*, {name}_drop, {name}_add, {name}_out.
    """
    if se_ratio:
        x = _apply_se(x, se_ratio, name)
    if shortcut:
        if strides != 1 or residual.shape[-1] != x.shape[-1]:
            residual = _apply_projection_shortcut(
                residual, filters=x.shape[-1], strides=strides, shortcut_type=shortcut_type,
                use_bias=use_bias, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, name=name)
        x = _add_residual(residual, x, drop_rate, name)
    return layers.ReLU(name=f"{name}_out")(x)


def apply_basic_block(x, *, filters, strides=1, dilation_rate=1, shortcut=True,
                      shortcut_type="projection", se_ratio=None, use_bias=False,
                      bn_epsilon=RESNET_BN_EPSILON, bn_momentum=BN_MOMENTUM, drop_rate=0.0, name):
    """3x3 conv -> BN -> ReLU -> 3x3 conv -> BN [-> SE] [+ shortcut] -> ReLU (ResNet-18/34, CIFAR).

    Layer names: {name}_conv1_*, {name}_conv2_*, {name}_se_*, {name}_shortcut_*, {name}_add,
    {name}_out.
    """
    common = dict(use_bias=use_bias, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    residual = x
    x = apply_conv_bn_act_block(x, filters=filters, kernel_size=3, strides=strides,
                                dilation_rate=dilation_rate, padding="symmetric", activation="relu",
                                name=f"{name}_conv1", **common)
    x = apply_conv_bn_act_block(x, filters=filters, kernel_size=3, dilation_rate=dilation_rate,
                                padding="symmetric", activation=None, name=f"{name}_conv2", **common)
    return close_residual_block(x, residual, strides=strides, shortcut=shortcut,
                                shortcut_type=shortcut_type, se_ratio=se_ratio, drop_rate=drop_rate,
                                name=name, **common)


def apply_bottleneck_block(x, *, filters, strides=1, dilation_rate=1, shortcut=True,
                           se_ratio=None, use_bias=True, stride_in_1x1=True,
                           bn_epsilon=RESNET_BN_EPSILON, bn_momentum=BN_MOMENTUM, drop_rate=0.0,
                           name):
    """1x1 conv -> BN -> ReLU -> 3x3 conv -> BN -> ReLU -> 1x1 conv (4x filters) -> BN [-> SE]
    [+ shortcut] -> ReLU (ResNet-50/101/152).

    Args:
        stride_in_1x1: stride in the first 1x1 convolution, as in the paper's Caffe models and
            keras.applications; False strides the 3x3 (torchvision's "ResNet v1.5").

    Layer names: {name}_conv1_*, {name}_conv2_*, {name}_conv3_*, {name}_se_*, {name}_shortcut_*,
    {name}_add, {name}_out.
    """
    common = dict(use_bias=use_bias, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    residual = x
    x = apply_conv_bn_act_block(x, filters=filters, kernel_size=1,
                                strides=strides if stride_in_1x1 else 1, activation="relu",
                                name=f"{name}_conv1", **common)
    x = apply_conv_bn_act_block(x, filters=filters, kernel_size=3,
                                strides=1 if stride_in_1x1 else strides, dilation_rate=dilation_rate,
                                padding="symmetric", activation="relu", name=f"{name}_conv2",
                                **common)
    x = apply_conv_bn_act_block(x, filters=4 * filters, kernel_size=1, activation=None,
                                name=f"{name}_conv3", **common)
    return close_residual_block(x, residual, strides=strides, shortcut=shortcut,
                                se_ratio=se_ratio, drop_rate=drop_rate, name=name, **common)


def apply_preact_bottleneck_block(x, *, filters, strides=1, dilation_rate=1, conv_shortcut=False,
                                  shortcut=True, se_ratio=None, bn_epsilon=RESNET_BN_EPSILON,
                                  bn_momentum=BN_MOMENTUM, drop_rate=0.0, name):
    """BN -> ReLU -> 1x1 conv -> BN -> ReLU -> 3x3 conv -> BN -> ReLU -> 1x1 conv [-> SE]
    [+ shortcut] (ResNet v2, pre-activation).

    The projection shortcut reads the pre-activated input; an identity shortcut that has to
    downsample takes every other pixel (a 1x1 max pool), as keras.applications' ResNetV2 does.

    Layer names: {name}_preact_bn, {name}_preact_relu, {name}_conv1_*, {name}_conv2_*,
    {name}_conv3_conv, {name}_se_*, {name}_shortcut_*, {name}_add.
    """
    preact = layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum,
                                       name=f"{name}_preact_bn")(x)
    preact = layers.ReLU(name=f"{name}_preact_relu")(preact)
    if not shortcut:
        residual = None
    elif conv_shortcut:
        residual = layers.Conv2D(4 * filters, 1, strides=strides, kernel_initializer="he_normal",
                                 name=f"{name}_shortcut_conv")(preact)
    elif strides > 1:
        residual = layers.MaxPooling2D(1, strides=strides, name=f"{name}_shortcut_pool")(x)
    else:
        residual = x
    common = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    y = apply_conv_bn_act_block(preact, filters=filters, kernel_size=1, activation="relu",
                                name=f"{name}_conv1", **common)
    y = apply_conv_bn_act_block(y, filters=filters, kernel_size=3, strides=strides,
                                dilation_rate=dilation_rate, padding="symmetric", activation="relu",
                                name=f"{name}_conv2", **common)
    y = layers.Conv2D(4 * filters, 1, kernel_initializer="he_normal", name=f"{name}_conv3_conv")(y)
    if se_ratio:
        y = _apply_se(y, se_ratio, name)
    if residual is None:
        return y
    return _add_residual(residual, y, drop_rate, name)


def _add_residual(residual, x, drop_rate, name):
    if drop_rate > 0:
        x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
    return layers.Add(name=f"{name}_add")([residual, x])
