"""Upsampling for dense prediction: a resize (optionally followed by a convolution) or a transposed
convolution, chosen by one `upsampling` argument shared by every segmentation decoder.

- Long et al., "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
  https://arxiv.org/abs/1411.4038: learned "deconvolution" (transposed convolution) layers with
  kernel 2f and stride f, initialised to bilinear interpolation (`BilinearUpsampling` below).
- Odena et al., "Deconvolution and Checkerboard Artifacts", Distill 2016,
  https://distill.pub/2016/deconv-checkerboard/: a transposed convolution whose kernel size is not
  a multiple of its stride overlaps unevenly and paints a checkerboard; resizing and then
  convolving cannot (docs/checkerboard.png, scripts/checkerboard_figure.py).

Why "nearest" is the zoo's default: nearest-neighbour resizing only copies values, so in an int8
model its output has exactly its input's scale and zero point and no rounding happens; with a
known input size it is a `keras.layers.Resizing` layer, which converts to TFLite's builtin
RESIZE_NEAREST_NEIGHBOR. Bilinear resizing (RESIZE_BILINEAR) computes weighted means, which int8
must round, and a transposed convolution (TRANSPOSE_CONV) is a full convolution to quantize and
may paint checkerboards.

When the height or width is unknown when the model is built (``input_shape=(None, None, 3)``),
`Resizing` cannot be used (it needs its target size), so the block falls back to
`keras.layers.UpSampling2D`; Keras implements its nearest mode with `repeat`, which TFLite turns
into RESHAPE + TILE (still exact). Export needs a known size anyway, so exported models get
RESIZE_NEAREST_NEIGHBOR.
"""

from __future__ import annotations

import numpy as np

import keras
from keras import layers

from kerascnn.blocks.conv import BN_EPSILON, BN_MOMENTUM, apply_activation

UPSAMPLING_MODES = ("nearest", "bilinear", "transpose")


def bilinear_kernel(factor: int, size: int | None = None) -> np.ndarray:
    """The 1-D bilinear interpolation weights of an upsampling by `factor` (length 2f - f % 2).

    Their outer product is the 2-D kernel of a transposed convolution with stride `factor` that
    interpolates bilinearly (Long et al.'s initialisation of their deconvolution layers).
    """
    size = 2 * factor - factor % 2 if size is None else size
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1.0 - np.abs(np.arange(size) - center) / factor


@keras.saving.register_keras_serializable(package="kerascnn")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initialises a `Conv2DTranspose` kernel of shape (k, k, C, C) to per-channel bilinear
    upsampling by `factor`: channel c of the output interpolates channel c of the input and no
    channels mix.

    With stride `factor`, "same" padding and k = 2 * factor, the layer's output then equals a
    bilinear (half-pixel) resize everywhere except the outermost `factor // 2` rows and columns,
    where the resize repeats the edge pixel and the transposed convolution fades into its zero
    padding.

    Args:
        factor: the stride of the transposed convolution.
    """

    def __init__(self, factor):
        self.factor = int(factor)

    def __call__(self, shape, dtype=None):
        kh, kw, out_channels, in_channels = shape
        if out_channels != in_channels:
            raise ValueError("BilinearUpsampling needs as many output as input channels. "
                             f"Received: kernel shape {tuple(shape)}")
        kernel = np.zeros(shape, dtype="float32")
        weights = np.outer(bilinear_kernel(self.factor, kh), bilinear_kernel(self.factor, kw))
        for c in range(in_channels):
            kernel[:, :, c, c] = weights
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {"factor": self.factor}


def apply_upsample_block(x, *, factor, mode="nearest", filters=None, kernel_size=None, conv=True,
                         batch_norm=False, activation=None, use_bias=None, dtype=None,
                         bn_epsilon=BN_EPSILON, bn_momentum=BN_MOMENTUM, name):
    """Resize by `factor` [-> Conv2D kxk] or Conv2DTranspose(k, strides=factor); [-> BN -> act].

    Args:
        factor: integer upsampling factor (the same for height and width).
        mode: "nearest" or "bilinear" (a resize, then a convolution when `conv`), or "transpose"
            (a transposed convolution).
        filters: output channels of the convolution (default: the input's).
        kernel_size: of the convolution after the resize (default 3), or of the transposed
            convolution (default 2 * factor, so that the windows overlap evenly: no
            checkerboard). A transposed convolution with that kernel that keeps the channel
            count starts as bilinear upsampling (`BilinearUpsampling`); others start random.
        conv: with a resize mode, follow it by a convolution. False when the layer that comes
            next is a convolution anyway (a classifier, or convolutions after a concatenation);
            "transpose" always convolves.
        batch_norm: BatchNormalization after the convolution.
        activation: one of `kerascnn.blocks.conv.ACTIVATIONS`, after the convolution (or BN).
        use_bias: convolution bias (default: when there is no batch norm).
        dtype: dtype policy of the block's layers (e.g. "float32" for a model's final upsampling
            under mixed precision).

    Returns:
        The upsampled tensor.

    Raises:
        ValueError: an unknown mode or a factor that is not a positive integer.

    Layer names: {name}_resize (Resizing, or UpSampling2D when the size is unknown), {name}_conv,
    {name}_deconv (Conv2DTranspose), {name}_bn, {name}_{activation}.
    """
    if mode not in UPSAMPLING_MODES:
        raise ValueError(f"`upsampling` must be one of {list(UPSAMPLING_MODES)}. "
                         f"Received: upsampling={mode!r}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"`factor` must be a positive integer. Received: factor={factor!r}")
    channels = x.shape[-1]
    filters = channels if filters is None else filters
    use_bias = not batch_norm if use_bias is None else use_bias
    if mode == "transpose":
        kernel_size = 2 * factor if kernel_size is None else kernel_size
        bilinear = filters == channels and kernel_size == 2 * factor
        initializer = BilinearUpsampling(factor) if bilinear else "glorot_uniform"
        x = layers.Conv2DTranspose(filters, kernel_size, strides=factor, padding="same",
                                   use_bias=use_bias, kernel_initializer=initializer, dtype=dtype,
                                   name=f"{name}_deconv")(x)
    else:
        if factor > 1:
            height, width = x.shape[1], x.shape[2]
            if height is not None and width is not None:
                x = layers.Resizing(height * factor, width * factor, interpolation=mode,
                                    dtype=dtype, name=f"{name}_resize")(x)
            else:
                x = layers.UpSampling2D(factor, interpolation=mode, dtype=dtype,
                                        name=f"{name}_resize")(x)
        if not conv:
            return x
        kernel_size = 3 if kernel_size is None else kernel_size
        x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=use_bias,
                          kernel_initializer="he_normal", dtype=dtype, name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, dtype=dtype,
                                      name=f"{name}_bn")(x)
    return apply_activation(x, activation, name=f"{name}_{activation}")
