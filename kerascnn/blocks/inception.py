"""The inception module with 1x1 reductions (GoogLeNet, Szegedy et al., 2015,
https://arxiv.org/abs/1409.4842)."""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.conv import BN_MOMENTUM, apply_conv_bn_act_block


def apply_inception_block(x, *, filters_1x1, reduce_3x3, filters_3x3, reduce_5x5, filters_5x5,
                          pool_proj, kernel_size_5x5=5, batch_norm=True, bn_epsilon=1e-3,
                          bn_momentum=BN_MOMENTUM, name):
    """[1x1] | [1x1 -> 3x3] | [1x1 -> 5x5] | [3x3/1 max pool -> 1x1], concatenated.

    The 1x1 reductions are what make the module affordable: a 5x5 convolution from 192 to 32
    channels on a 28x28 map costs 120M multiply-adds, a 1x1 reduction to 16 channels first 12.4M.
    Every convolution is followed by ReLU (and BN when `batch_norm`; without BN the convolutions
    carry biases, as in the paper).

    Layer names: {name}_1x1_*, {name}_3x3_reduce_*, {name}_3x3_*, {name}_5x5_reduce_*,
    {name}_5x5_*, {name}_pool, {name}_pool_proj_*, {name}_concat.
    """
    def conv(t, filters, kernel_size, suffix):
        return apply_conv_bn_act_block(t, filters=filters, kernel_size=kernel_size, activation="relu",
                                       use_bias=not batch_norm, batch_norm=batch_norm,
                                       bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
                                       name=f"{name}_{suffix}")

    b1 = conv(x, filters_1x1, 1, "1x1")
    b2 = conv(conv(x, reduce_3x3, 1, "3x3_reduce"), filters_3x3, 3, "3x3")
    b3 = conv(conv(x, reduce_5x5, 1, "5x5_reduce"), filters_5x5, kernel_size_5x5, "5x5")
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv(b4, pool_proj, 1, "pool_proj")
    return layers.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])
