"""Convolution + batch norm + activation, and the activation vocabulary shared by all blocks."""

from __future__ import annotations

from keras import layers

ACTIVATIONS = ("relu", "relu6", "hard_swish", "swish", "sigmoid", "hard_sigmoid", "tanh", None)

# Keras 3 applications use epsilon 1e-3 for MobileNets; BN momentum 0.99 (Keras' default) lets
# the moving statistics follow the data within a few hundred steps when training from scratch.
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to the nearest multiple of `divisor`, never going below 90% of it.

    This is the rounding the MobileNet papers' reference code applies after a width multiplier.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def apply_activation(x, activation, *, name):
    """Applies one of `ACTIVATIONS` as its own named layer; None returns `x` (linear).

    ReLU6 is a `ReLU(max_value=6)` layer so that TFLite fuses it into the preceding convolution.
    """
    if activation is None:
        return x
    if activation == "relu":
        return layers.ReLU(name=name)(x)
    if activation == "relu6":
        return layers.ReLU(6.0, name=name)(x)
    if activation in ACTIVATIONS:
        return layers.Activation(activation, name=name)(x)
    raise ValueError(f"`activation` must be one of {list(ACTIVATIONS)}. Received: activation={activation!r}")


def apply_conv_bn_act_block(x, *, filters, kernel_size, strides=1, dilation_rate=1,
                            activation="relu", use_bias=False, padding="same",
                            bn_epsilon=BN_EPSILON, bn_momentum=BN_MOMENTUM, batch_norm=True,
                            name):
    """Conv2D -> BatchNormalization -> activation.

    Args:
        padding: "same" (TensorFlow's asymmetric SAME) or "symmetric": explicit zero padding of
            dilation * (kernel_size - 1) // 2 on every side, then a valid convolution, which is
            what Caffe/PyTorch-trained ResNets use.
        activation: one of `ACTIVATIONS`; None keeps the block linear.

    Layer names: {name}_pad (symmetric only), {name}_conv, {name}_bn, {name}_{activation}.
    """
    if padding == "symmetric" and strides == 1:
        padding = "same"  # identical for odd kernels at stride 1, and needs no PAD op
    if padding == "symmetric":
        pad = dilation_rate * (kernel_size - 1) // 2
        if pad:
            x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        conv_padding = "valid"
    elif padding == "same":
        conv_padding = "same"
    else:
        raise ValueError(f"`padding` must be 'same' or 'symmetric'. Received: padding={padding!r}")
    x = layers.Conv2D(filters, kernel_size, strides=strides, dilation_rate=dilation_rate,
                      padding=conv_padding, use_bias=use_bias, kernel_initializer="he_normal",
                      name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_bn")(x)
    return apply_activation(x, activation, name=f"{name}_{activation}")
