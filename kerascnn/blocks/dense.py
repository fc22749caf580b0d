"""Dense blocks and transition layers (DenseNet, Huang et al., 2017,
https://arxiv.org/abs/1608.06993).

Every layer of a dense block reads the concatenation of all feature maps before it and adds
`growth_rate` new channels, so a block of L layers turns C channels into C + L * growth_rate. The
transition between two blocks compresses the channels (DenseNet-C) and halves the resolution.
Both use pre-activation (BN -> ReLU -> conv), as in the paper and keras.applications.
"""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.conv import BN_MOMENTUM

DENSENET_BN_EPSILON = 1.001e-5  # keras.applications' value (its weights were trained with it)


def _bn_relu_conv(x, *, filters, kernel_size, dilation_rate=1, bn_epsilon, bn_momentum, name):
    x = layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=dilation_rate,
                         use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv")(x)


def apply_dense_block(x, *, num_layers, growth_rate, bottleneck_width=4, dilation_rate=1,
                      drop_rate=0.0, bn_epsilon=DENSENET_BN_EPSILON, bn_momentum=BN_MOMENTUM,
                      name):
    """num_layers x [BN -> ReLU -> 1x1 conv (4k) -> BN -> ReLU -> 3x3 conv (k) -> concat to input].

    Args:
        num_layers: layers in the block (L); the output has `x.shape[-1] + L * growth_rate`
            channels.
        growth_rate: channels each layer adds (k).
        bottleneck_width: the 1x1 "bottleneck" convolution has `bottleneck_width * growth_rate`
            filters (4 in DenseNet-B); None leaves it out (the paper's plain DenseNet layer,
            BN -> ReLU -> 3x3 conv).
        dilation_rate: dilation of the 3x3 convolutions (for a reduced output stride).
        drop_rate: stochastic depth: each layer's new feature maps are dropped per sample with
            this probability while training (scaled by 1 / (1 - p) otherwise); a float for every
            layer or a sequence of `num_layers` rates.
        name: the stage prefix, e.g. "stage2"; layer j of the block is named `{name}_block{j}`.

    Returns:
        The concatenation of `x` and every layer's new feature maps.

    Layer names (j = 1..num_layers): {name}_block{j}_conv1_{bn,relu,conv} (the bottleneck),
    {name}_block{j}_conv2_{bn,relu,conv} (the 3x3), {name}_block{j}_drop, {name}_block{j}_concat.
    """
    rates = [drop_rate] * num_layers if isinstance(drop_rate, (int, float)) else list(drop_rate)
    if len(rates) != num_layers:
        raise ValueError(f"`drop_rate` must be a number or one rate per layer ({num_layers}). "
                         f"Received: drop_rate={drop_rate!r}")
    for j, rate in enumerate(rates, start=1):
        prefix = f"{name}_block{j}"
        y = x
        if bottleneck_width:
            y = _bn_relu_conv(y, filters=bottleneck_width * growth_rate, kernel_size=1,
                              bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
                              name=f"{prefix}_conv1")
        y = _bn_relu_conv(y, filters=growth_rate, kernel_size=3, dilation_rate=dilation_rate,
                          bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, name=f"{prefix}_conv2")
        if rate > 0:
            y = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(y)
        x = layers.Concatenate(name=f"{prefix}_concat")([x, y])
    return x


def apply_transition_block(x, *, compression=0.5, strides=2, bn_epsilon=DENSENET_BN_EPSILON,
                           bn_momentum=BN_MOMENTUM, return_features=False, name):
    """BN -> ReLU -> 1x1 conv (floor(compression * C) filters) -> 2x2 average pool, stride 2.

    The pool pads like "same" (ceil(H / 2) rows: an odd last row is averaged on its own, where
    keras.applications' "valid" pool drops it); at even sizes the two are identical.

    Args:
        compression: the paper's theta in (0, 1]; 0.5 in DenseNet-BC, 1 keeps the channels.
        strides: 2, or 1 for a reduced output stride: the same 2x2 average at every position, so
            that the original output is every other pixel of the new one (the "a trous" trick;
            the layers after it must then dilate by 2).
        return_features: also return the ReLU output: the dense block's features, normalised and
            not yet compressed, at the input resolution (what a dense-prediction head reads).

    Returns:
        The pooled tensor, or (pooled tensor, ReLU output) with `return_features=True`.

    Layer names: {name}_bn, {name}_relu, {name}_conv, {name}_pool.
    """
    filters = max(1, int(x.shape[-1] * compression))
    x = layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=f"{name}_bn")(x)
    features = layers.ReLU(name=f"{name}_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv")(features)
    x = layers.AveragePooling2D(2, strides=strides, padding="same", name=f"{name}_pool")(x)
    return (x, features) if return_features else x
