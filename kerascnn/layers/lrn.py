"""Local response normalization across channels (Krizhevsky et al., 2012, section 3.3,
https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks).

Keras has no built-in LRN layer, and it cannot be composed from built-in layers without a Lambda:
the square and the channel-window sum can be (Multiply, a fixed 1x1 convolution), but the
fractional power ``(k + alpha * s) ** -beta`` has no built-in layer or activation. Hence this small
custom layer.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerascnn")
class LocalResponseNormalization(keras.layers.Layer):
    """Normalizes each activation by the energy of its `size` neighbouring channels.

    ``b[..., c] = a[..., c] / (k + alpha * sum(a[..., c'] ** 2 for c' in window(c))) ** beta``

    with the window ``c - size // 2 .. c + size // 2`` clipped to the existing channels. This is
    the paper's formula and `tf.nn.local_response_normalization` with ``depth_radius=size // 2``
    (PyTorch's `LocalResponseNorm` divides alpha by `size`). Channels-last inputs only.

    Args:
        size: the window width `n` in channels (odd; the paper's n = 5).
        alpha: the paper's alpha (1e-4).
        beta: the paper's beta (0.75).
        k: the paper's k (2).

    Example:
        >>> y = LocalResponseNormalization(name="stem_lrn")(keras.Input((55, 55, 96)))
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"`size` must be a positive odd integer. Received: size={size!r}")
        for arg, value in (("alpha", alpha), ("beta", beta), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{arg}` must be a non-negative number. Received: {arg}={value!r}")
        self.size, self.alpha, self.beta, self.k = size, float(alpha), float(beta), float(k)

    def call(self, inputs):
        radius = self.size // 2
        channels = inputs.shape[-1]
        squared = ops.square(inputs)
        padding = [[0, 0]] * (len(inputs.shape) - 1) + [[radius, radius]]
        padded = ops.pad(squared, padding)
        # A sum of `size` shifted slices: cheap for the small windows LRN uses, backend-agnostic,
        # and converts to built-in TFLite ops (SQUARE, PAD, STRIDED_SLICE, ADD, POW, MUL).
        window_sum = padded[..., 0:channels]
        for offset in range(1, self.size):
            window_sum = window_sum + padded[..., offset:offset + channels]
        return inputs * ops.power(self.k + self.alpha * window_sum, -self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)
        return config
