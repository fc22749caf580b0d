"""Deformable convolution (v1) and modulated deformable convolution (v2).

- Dai et al., "Deformable Convolutional Networks", ICCV 2017, https://arxiv.org/abs/1703.06211
  (v1: a learned 2-D offset per kernel tap and output position, bilinear sampling).
- Zhu et al., "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019,
  https://arxiv.org/abs/1811.11168 (v2: a learned modulation scalar in [0, 1] per tap).

For output position p0 and kernel tap k (grid offset pk, dilation included)::

    y(p0) = sum_k w_k * m_k(p0) * x(p0 + pk + dp_k(p0))

where x(.) is bilinear interpolation of the input, zero outside the image (as in the papers'
reference implementation), dp comes from a regular convolution over the same input, and m is
1 (v1) or the sigmoid of that convolution's extra channels (v2).

What differs from the papers and why:

- The offset branch is a plain `keras.layers.Conv2D` with the main kernel's size, strides,
  padding and dilation, initialised to zero, as in both papers, so that a fresh layer is a regular
  convolution (v1) and existing convolution weights can be dropped in. Its learning rate is not
  scaled (the papers' reference code uses 0.1x for it; Keras has no per-variable learning rate, so
  use an optimizer wrapper if that matters).
- The v2 mask is the plain sigmoid of the logits, so a fresh modulated layer computes *half* of
  the regular convolution (sigmoid(0) = 0.5). This is what DCNv2's paper and its public
  implementations (torchvision, mmcv) do, so trained weights transfer unchanged; scaling the mask
  by 2 would start at exactly the regular convolution, but would change the meaning of every
  trained mask logit. The following BatchNormalization absorbs the factor while training.
- Channel layout of the offset branch follows torchvision's `deform_conv2d`: for deformable group
  g and tap k = ky * kw + kx, channel ``2 * (g * K + k)`` is the vertical offset and the next one
  the horizontal offset (K = kh * kw); with `modulated=True` the last ``G * K`` channels are the
  mask logits, group-major. Offsets are in input pixels.
- The sampling is written as gathers on the flattened input plus one matrix product (the
  "im2col" form), with `keras.ops` only: it runs on every Keras backend and converts to TFLite
  builtin ops (FLOOR, CAST, GATHER, FULLY_CONNECTED, ...), not to Flex or custom ops. Those index
  computations have no integer kernels; for full-int8 export, the native QAT engine rewrites the
  layer into an integer form of the same sampling
  (`kerascnn.layers.quantization.QuantDeformableSampling`).
- Channels-last only.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

PADDINGS = ("valid", "same")


def _pair(arg: str, value) -> tuple:
    """An int or a pair of ints -> a pair of positive ints, with a Keras-style error."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)):
        raise ValueError(f"`{arg}` must be a positive integer or a pair of positive integers. "
                         f"Received: {arg}={value!r}")
    return tuple(pair)


def _output_size(size, kernel, stride, dilation, padding):
    """Output length of a convolution along one axis (None stays None)."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    return max((size - dilation * (kernel - 1) - 1) // stride + 1, 0)


def pad_before(padding, size, out_size, kernel, stride, dilation):
    """Implicit zero padding before the first input pixel along one axis (TensorFlow's SAME puts
    the odd pixel at the end); `size` and `out_size` may be ints or (dynamic) tensors."""
    if padding == "valid":
        return 0
    total = (out_size - 1) * stride + dilation * (kernel - 1) + 1 - size
    if isinstance(total, int):
        return max(total, 0) // 2
    return ops.maximum(total, 0) // 2


def tap_positions(size, out_size, kernel, stride, dilation, padding) -> np.ndarray:
    """Input coordinate of every (output position, kernel tap) of the undeformed grid along one
    axis, for static sizes: an int array (out_size, kernel), in unpadded input coordinates."""
    first = np.arange(out_size) * stride - pad_before(padding, size, out_size, kernel, stride,
                                                       dilation)
    return first[:, None] + np.arange(kernel)[None, :] * dilation


@keras.saving.register_keras_serializable(package="kerascnn")
class DeformableConv2D(keras.layers.Layer):
    """2-D deformable convolution (DCN v1), or modulated deformable convolution (DCN v2).

    The layer takes the arguments of `keras.layers.Conv2D` (channels-last, no groups) plus
    `modulated` and `deformable_groups`. It owns the offset branch, a `Conv2D` named
    "offset_conv" with ``2 * G * K`` (+ ``G * K`` mask logits when modulated) output channels,
    initialised to zero.

    Args:
        filters: output channels.
        kernel_size: an int or (kh, kw).
        strides: an int or (sh, sw).
        padding: "valid" or "same" (TensorFlow's SAME: the extra pixel goes at the end).
        dilation_rate: an int or (dh, dw); spacing of the undeformed sampling grid.
        activation: applied to the output (a Keras activation name, callable or None).
        use_bias: add a bias per filter.
        modulated: DCN v2: multiply every sample by a learned sigmoid mask. With zero-initialised
            mask logits the mask starts at 0.5 (see the module docstring).
        deformable_groups: the input channels are split into this many groups, each with its own
            offsets (and mask); 1 shares one offset field across all channels.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        kernel_constraint, bias_constraint: as in `keras.layers.Conv2D`, for the main kernel and
            bias (the offset branch is zero-initialised and unregularised).
        **kwargs: base layer arguments (name, dtype, trainable, activity_regularizer).

    Input shape: (batch, height, width, channels), channels divisible by `deformable_groups`.
    Output shape: (batch, out_height, out_width, filters), sizes as for `Conv2D`.

    Raises:
        ValueError: for a bad argument, or input channels not divisible by `deformable_groups`.

    Example:
        >>> layer = DeformableConv2D(64, 3, padding="same", modulated=True, name="stage3_block1_conv2_conv")
        >>> y = layer(keras.Input((28, 28, 128)))  # (None, 28, 28, 64)
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias=True, modulated=False, deformable_groups=1,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"`filters` must be a positive integer. Received: filters={filters!r}")
        if padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {list(PADDINGS)}. Received: padding={padding!r}")
        if not isinstance(modulated, bool):
            raise ValueError(f"`modulated` must be True or False. Received: modulated={modulated!r}")
        if (isinstance(deformable_groups, bool) or not isinstance(deformable_groups, int)
                or deformable_groups < 1):
            raise ValueError("`deformable_groups` must be a positive integer. "
                             f"Received: deformable_groups={deformable_groups!r}")
        self.filters = filters
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.dilation_rate = _pair("dilation_rate", dilation_rate)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            # As keras.layers.Conv2D: TensorFlow's convolution rejects the combination, and the
            # offset branch is a Conv2D.
            raise ValueError("`strides` > 1 is not supported together with `dilation_rate` > 1. "
                             f"Received: strides={strides!r}, dilation_rate={dilation_rate!r}")
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.modulated = modulated
        self.deformable_groups = deformable_groups
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        taps = self.kernel_size[0] * self.kernel_size[1]
        # Zero kernel and bias: offsets (and mask logits) start at 0, so the layer starts as the
        # regular convolution of its kernel (DCN v1 and v2 both initialise this way).
        self.offset_conv = keras.layers.Conv2D(
            deformable_groups * taps * (3 if modulated else 2), self.kernel_size,
            strides=self.strides, padding=padding, dilation_rate=self.dilation_rate,
            kernel_initializer="zeros", bias_initializer="zeros", dtype=self.dtype_policy,
            name="offset_conv")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("DeformableConv2D needs a known number of input channels. "
                             f"Received: input_shape={tuple(input_shape)}")
        if channels % self.deformable_groups:
            raise ValueError(f"The input channels ({channels}) must be divisible by "
                             f"`deformable_groups`. Received: deformable_groups={self.deformable_groups}")
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, channels, self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        else:
            self.bias = None
        self.offset_conv.build(input_shape)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        return (batch, _output_size(height, kh, sh, dh, self.padding),
                _output_size(width, kw, sw, dw, self.padding), self.filters)

    def compute_macs(self, input_shapes) -> int:
        """Multiply-accumulates per example, for `kerascnn.analysis.count_macs`.

        The offset branch (a convolution), bilinear sampling (4 per sampled value, plus 1 for
        the mask when modulated) and the convolution over the samples; index arithmetic is not
        counted, as elsewhere in the analysis.
        """
        _, out_h, out_w, _ = self.compute_output_shape(input_shapes)
        channels = input_shapes[-1]
        if out_h is None or out_w is None:
            raise ValueError(f"Counting MACs needs known shapes, but layer {self.name!r} has "
                             f"input shape {tuple(input_shapes)}.")
        positions, taps = out_h * out_w, self.kernel_size[0] * self.kernel_size[1]
        samples = positions * taps * channels
        branch = positions * self.offset_conv.filters * taps * channels
        return branch + samples * (5 if self.modulated else 4) + samples * self.filters

    def _pad_before(self, size, out_size, axis):
        """Implicit zero padding before the first pixel along `axis` (0: height, 1: width)."""
        return pad_before(self.padding, size, out_size, self.kernel_size[axis],
                          self.strides[axis], self.dilation_rate[axis])

    def call(self, inputs):
        groups = self.deformable_groups
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        taps = kh * kw
        batch, height, width, channels = ops.shape(inputs)
        group_channels = channels // groups

        branch = self.offset_conv(inputs)
        _, out_h, out_w, _ = ops.shape(branch)
        # (batch, out_h, out_w, group, tap, yx) -> tap-major, so that the gathered samples come
        # out in the (tap, channel) order of the reshaped kernel and need no transpose.
        offsets = ops.reshape(branch[..., :2 * groups * taps], (-1, out_h, out_w, groups, taps, 2))
        offsets = ops.transpose(offsets, (0, 1, 2, 4, 3, 5))
        # Coordinates in float32 even under mixed precision: float16 cannot hold e.g. 200.3.
        offsets = ops.cast(offsets, "float32")

        # The undeformed grid, in unpadded input coordinates: padding is implicit, because a
        # sample outside the image is zero either way.
        top = self._pad_before(height, out_h, 0)
        left = self._pad_before(width, out_w, 1)
        tap_y = np.repeat(np.arange(kh, dtype="int32") * dh, kw).reshape(1, 1, taps, 1)
        tap_x = np.tile(np.arange(kw, dtype="int32") * dw, kh).reshape(1, 1, taps, 1)
        grid_y = ops.reshape(ops.arange(out_h, dtype="int32") * sh - top, (out_h, 1, 1, 1)) + tap_y
        grid_x = ops.reshape(ops.arange(out_w, dtype="int32") * sw - left, (1, out_w, 1, 1)) + tap_x
        y = ops.cast(grid_y, "float32") + offsets[..., 0]  # (batch, out_h, out_w, taps, groups)
        x = ops.cast(grid_x, "float32") + offsets[..., 1]

        y0 = ops.floor(y)
        x0 = ops.floor(x)
        frac_y, frac_x = y - y0, x - x0  # carry the gradient with respect to the offsets
        y0 = ops.cast(y0, "int32")
        x0 = ops.cast(x0, "int32")

        if self.modulated:
            logits = ops.reshape(branch[..., 2 * groups * taps:], (-1, out_h, out_w, groups, taps))
            mask = ops.sigmoid(ops.cast(ops.transpose(logits, (0, 1, 2, 4, 3)), "float32"))
        else:
            mask = None

        # Row index into the input seen as (batch * height * width * groups, group_channels):
        # ((b * height + row) * width + col) * groups + g.
        image_base = ops.reshape(ops.arange(batch, dtype="int32") * (height * width),
                                 (-1, 1, 1, 1, 1))
        group_index = ops.reshape(ops.arange(groups, dtype="int32"), (1, 1, 1, 1, groups))
        flat_inputs = ops.reshape(inputs, (-1, group_channels))

        samples = None
        for row_step, weight_y in ((0, 1.0 - frac_y), (1, frac_y)):
            row = y0 + row_step
            row_inside = ops.logical_and(row >= 0, row <= height - 1)
            for col_step, weight_x in ((0, 1.0 - frac_x), (1, frac_x)):
                col = x0 + col_step
                inside = ops.logical_and(row_inside, ops.logical_and(col >= 0, col <= width - 1))
                # Corners outside the image get weight 0 (zero padding) and gather their
                # image's first pixel, only to stay in bounds. A select rather than clipping row and
                # column: the TFLite converter turns an int32 clip to [0, 6] (a 7x7 map) into
                # RELU6, which has no int32 builtin kernel.
                weight = weight_y * weight_x * ops.cast(inside, "float32")
                if mask is not None:
                    weight = weight * mask
                index = ops.where(inside, row * width + col, 0)
                index = (image_base + index) * groups + group_index
                corner = ops.take(flat_inputs, ops.reshape(index, (-1,)), axis=0)
                weight = ops.cast(ops.reshape(weight, (-1, 1)), corner.dtype)
                samples = corner * weight if samples is None else samples + corner * weight

        # (batch * out_h * out_w, taps * channels) @ (taps * channels, filters): the
        # convolution as one matrix product over the sampled columns.
        columns = ops.reshape(samples, (-1, taps * channels))
        kernel = ops.reshape(self.kernel, (taps * channels, self.filters))
        outputs = ops.reshape(ops.matmul(columns, kernel), (-1, out_h, out_w, self.filters))
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            modulated=self.modulated,
            deformable_groups=self.deformable_groups,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
            kernel_constraint=keras.constraints.serialize(self.kernel_constraint),
            bias_constraint=keras.constraints.serialize(self.bias_constraint),
        )
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = keras.regularizers.serialize(self.activity_regularizer)
        return config
