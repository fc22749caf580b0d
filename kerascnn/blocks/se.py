"""Squeeze-and-excitation (Hu et al., 2018, https://arxiv.org/abs/1709.01507)."""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.conv import apply_activation


def apply_se_block(x, *, filters, squeeze_filters, activation="relu", gate="sigmoid", name):
    """Global average pool -> 1x1 conv (reduce) -> activation -> 1x1 conv (expand) -> gate -> x * gate.

    The two 1x1 convolutions on a (1, 1, C) map are the paper's two fully connected layers; as
    convolutions they keep the tensor 4-D, which TFLite and the QAT engine handle without reshapes.

    Args:
        filters: channels of `x` (the gate's width).
        squeeze_filters: width of the bottleneck.
        gate: "sigmoid" (the paper) or "hard_sigmoid" (MobileNetV3).

    Layer names: {name}_squeeze, {name}_reduce, {name}_{activation}, {name}_expand, {name}_gate,
    {name}_scale.
    """
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv2D(squeeze_filters, 1, padding="same", name=f"{name}_reduce")(s)
    s = apply_activation(s, activation, name=f"{name}_{activation}")
    s = layers.Conv2D(filters, 1, padding="same", name=f"{name}_expand")(s)
    s = layers.Activation(gate, name=f"{name}_gate")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])
