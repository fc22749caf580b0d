"""Fake-quantization layers for quantization-aware training (QAT) on Keras 3.

QAT simulates the integer arithmetic of the phone during training: every tensor that the int8
TFLite model stores is rounded to its 8-bit grid in the forward pass, and the gradient passes
straight through the rounding (Jacob et al., "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", CVPR 2018, https://arxiv.org/abs/1712.05877;
Krishnamoorthi, "Quantizing deep convolutional networks for efficient inference",
https://arxiv.org/abs/1806.08342).

Both layers are built on `keras.quantizers.fake_quant_with_min_max_vars`. On the TensorFlow
backend it lowers to TensorFlow's FakeQuantWithMinMaxVars(PerChannel) ops, which the TFLite
converter reads as the quantization parameters of the tensor they sit on: a model made of these
layers converts to a fully integer model without a representative data set, and the phone runs
the numbers that were trained.

- `FakeQuant`: an activation quantizer, per tensor, asymmetric (zero point free), with its range
  tracked by an exponential moving average of the batch minimum and maximum (as TensorFlow's
  contrib.quantize and tfmot do), learned by gradient descent (`mode="learned"`, as in LSQ/PACT-style
  methods), or fixed (`fixed_range`: the ranges TFLite prescribes for sigmoid, softmax and tanh
  outputs).
- `QuantConv`: a Conv2D or DepthwiseConv2D with the following BatchNormalization folded in and
  its folded kernel fake-quantized per output channel, symmetrically with the narrow range
  [-127, 127], which is what TFLite's int8 convolution kernels expect. The BN statistics are frozen
  (the moving mean and variance of the float model are used in training too), the standard
  practice when fine-tuning a trained float model with QAT; gamma and beta keep training.
  Folding before quantizing is what makes the trained kernel the phone's kernel: if BN stays a
  separate layer, the converter folds it after QAT and re-quantizes the product, so the phone runs
  weights that training never saw.
- `QuantDense`: a Dense layer with its kernel fake-quantized per tensor (symmetric).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kerascnn.layers.deformable import tap_positions

_MODES = ("ema", "learned")
# A range narrower than this would give a zero scale; a tensor that is constantly zero (the zero
# half of a CIFAR ResNet's padding shortcut) still needs a valid one.
_MIN_RANGE = 1e-6
# The output range TFLite's int8 LOGISTIC (and SOFTMAX) prescribes: scale 1/256, zero point -128.
SIGMOID_RANGE = (0.0, 255.0 / 256.0)


def _check_bits(num_bits):
    if not isinstance(num_bits, int) or not 2 <= num_bits <= 16:
        raise ValueError(f"`num_bits` must be an integer in [2, 16]. Received: num_bits={num_bits!r}")


def symmetric_fake_quant(kernel, axis: int | None, num_bits: int = 8):
    """Symmetric fake quantization with the narrow range (e.g. [-127, 127] for 8 bits).

    Args:
        kernel: the weights.
        axis: the channel axis (one scale per index along it), or None for one scale.
        num_bits: bit width.

    Returns:
        The fake-quantized weights: values on the grid scale * k, k in [-(2^(b-1)-1), 2^(b-1)-1],
        with scale = max|w| / (2^(b-1)-1) per channel (or per tensor).
    """
    if axis is None:
        reduce_axes = None
    else:
        axis = axis % len(kernel.shape)
        reduce_axes = tuple(i for i in range(len(kernel.shape)) if i != axis)
    max_abs = ops.stop_gradient(ops.max(ops.abs(kernel), axis=reduce_axes))
    max_abs = ops.maximum(max_abs, _MIN_RANGE)
    return keras.quantizers.fake_quant_with_min_max_vars(
        kernel, -max_abs, max_abs, num_bits=num_bits, narrow_range=True, axis=axis)


@keras.saving.register_keras_serializable(package="kerascnn")
class FakeQuant(keras.layers.Layer):
    """Per-tensor fake quantization of an activation with a tracked, learned or fixed range.

    Args:
        num_bits: bit width (8 for int8).
        mode: "ema" (range = moving average of the batch min/max, updated in training) or
            "learned" (range variables trained by gradient descent, initialised like "ema" on the
            first training batch).
        ema_decay: decay of the moving average in "ema" mode.
        fixed_range: (min, max) that never changes, e.g. (0, 255/256) for a sigmoid output, the
            only range TFLite's int8 LOGISTIC accepts.
        **kwargs: Layer arguments (name, dtype, ...).

    Call arguments:
        inputs: a float tensor.
        training: in training (with a tracked range), update the range from the batch.
    """

    def __init__(self, num_bits=8, mode="ema", ema_decay=0.999, fixed_range=None, **kwargs):
        super().__init__(**kwargs)
        _check_bits(num_bits)
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {list(_MODES)}. Received: mode={mode!r}")
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1). Received: ema_decay={ema_decay!r}")
        if fixed_range is not None:
            fixed_range = tuple(float(v) for v in fixed_range)
            if len(fixed_range) != 2 or not fixed_range[0] <= 0.0 <= fixed_range[1] \
                    or fixed_range[0] == fixed_range[1]:
                raise ValueError("`fixed_range` must be (min, max) with min <= 0 <= max and "
                                 f"min < max. Received: fixed_range={fixed_range!r}")
        self.num_bits = num_bits
        self.mode = mode
        self.ema_decay = float(ema_decay)
        self.fixed_range = fixed_range
        self.supports_masking = True

    def build(self, input_shape):
        low, high = self.fixed_range or (0.0, 0.0)
        learned = self.mode == "learned" and self.fixed_range is None
        self.range_min = self.add_weight(name="range_min", shape=(),
                                         initializer=keras.initializers.Constant(low),
                                         trainable=learned)
        self.range_max = self.add_weight(name="range_max", shape=(),
                                         initializer=keras.initializers.Constant(high),
                                         trainable=learned)
        # 0 until the first training batch has set the range.
        self.initialized = self.add_weight(name="initialized", shape=(), initializer="zeros",
                                           trainable=False)

    def _batch_range(self, x):
        low = ops.stop_gradient(ops.minimum(ops.min(x), 0.0))
        high = ops.stop_gradient(ops.maximum(ops.max(x), 0.0))
        return low, high

    def call(self, inputs, training=None):
        x = ops.cast(inputs, "float32")
        if self.fixed_range is not None:
            low, high = self.fixed_range
            return keras.quantizers.fake_quant_with_min_max_vars(x, low, high, self.num_bits)
        low, high = self.range_min, self.range_max
        if training:
            batch_low, batch_high = self._batch_range(x)
            first = ops.equal(self.initialized, 0.0)
            if self.mode == "ema":
                decay = self.ema_decay
                low = ops.where(first, batch_low, decay * self.range_min + (1 - decay) * batch_low)
                high = ops.where(first, batch_high, decay * self.range_max + (1 - decay) * batch_high)
                self.range_min.assign(low)
                self.range_max.assign(high)
            else:
                # Learned: start from the first batch's range, then let the gradient move it.
                self.range_min.assign(ops.where(first, batch_low, self.range_min))
                self.range_max.assign(ops.where(first, batch_high, self.range_max))
                low = ops.where(first, batch_low, self.range_min)
                high = ops.where(first, batch_high, self.range_max)
            self.initialized.assign(1.0)
        low = ops.minimum(low, 0.0)
        high = ops.maximum(ops.maximum(high, 0.0), low + _MIN_RANGE)
        return keras.quantizers.fake_quant_with_min_max_vars(x, low, high, self.num_bits)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(num_bits=self.num_bits, mode=self.mode, ema_decay=self.ema_decay,
                      fixed_range=self.fixed_range)
        return config


@keras.saving.register_keras_serializable(package="kerascnn")
class QuantConv(keras.layers.Layer):
    """Conv2D or DepthwiseConv2D, optionally with a folded BatchNormalization, whose (folded)
    kernel is fake-quantized per output channel.

    Computes ``conv(x, fq(W * s)) + beta + (b - mean) * s`` with ``s = gamma / sqrt(var + eps)``
    (without BN: ``conv(x, fq(W)) + b``). The moving mean and variance are frozen.

    Args:
        kind: "conv" or "depthwise".
        filters: output channels of a "conv" (ignored for "depthwise").
        kernel_size, strides, padding, dilation_rate, groups, depth_multiplier, use_bias: as in
            the Keras layer being replaced.
        batchnorm: whether a BatchNormalization follows (its weights live in this layer).
        bn_epsilon, bn_center, bn_scale: the BatchNormalization's settings.
        num_bits: weight bit width.
        kernel_chunks: compute a "conv" as this many convolutions over equal slices of the
            output channels, concatenated (the same numbers: the quantization is per channel).
            For kernels too large for the TFLite converter to fold their fake quantization (it
            keeps a Flex op above about 100 MB, see docs/qat_coverage.md); needs `filters`
            divisible by it and groups=1.
        activation: None, "relu" or "relu6", applied to the output (to each slice before the
            concatenation with `kernel_chunks`, so that TFLite fuses it into each CONV_2D and the
            slices take the concatenation's output scale).
        **kwargs: Layer arguments.
    """

    def __init__(self, kind="conv", filters=None, kernel_size=(3, 3), strides=(1, 1),
                 padding="valid", dilation_rate=(1, 1), groups=1, depth_multiplier=1,
                 use_bias=True, batchnorm=False, bn_epsilon=1e-3, bn_center=True, bn_scale=True,
                 num_bits=8, kernel_chunks=1, activation=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("conv", "depthwise"):
            raise ValueError(f"`kind` must be 'conv' or 'depthwise'. Received: kind={kind!r}")
        _check_bits(num_bits)
        if (not isinstance(kernel_chunks, int) or kernel_chunks < 1
                or (kernel_chunks > 1 and (kind != "conv" or groups != 1
                                           or not filters or filters % kernel_chunks))):
            raise ValueError("`kernel_chunks` must be an int >= 1 that divides `filters` of a "
                             "'conv' with groups=1. Received: "
                             f"kernel_chunks={kernel_chunks!r}, kind={kind!r}, "
                             f"filters={filters!r}, groups={groups!r}")
        self.kernel_chunks = kernel_chunks
        if activation not in (None, "relu", "relu6"):
            raise ValueError("`activation` must be None, 'relu' or 'relu6'. "
                             f"Received: activation={activation!r}")
        self.activation = activation
        self.kind = kind
        self.filters = filters
        self.kernel_size = tuple(kernel_size)
        self.strides = tuple(strides)
        self.padding = padding
        self.dilation_rate = tuple(dilation_rate)
        self.groups = groups
        self.depth_multiplier = depth_multiplier
        self.use_bias = use_bias
        self.batchnorm = batchnorm
        self.bn_epsilon = bn_epsilon
        self.bn_center = bn_center
        self.bn_scale = bn_scale
        self.num_bits = num_bits

    def build(self, input_shape):
        channels_in = int(input_shape[-1])
        if self.kind == "conv":
            shape = (*self.kernel_size, channels_in // self.groups, self.filters)
            channels_out = self.filters
        else:
            shape = (*self.kernel_size, channels_in, self.depth_multiplier)
            channels_out = channels_in * self.depth_multiplier
        self.channels_out = channels_out
        if self.kernel_chunks == 1:
            self.kernel = self.add_weight(name="kernel", shape=shape, initializer="glorot_uniform")
            self.kernel_parts = [self.kernel]
        else:
            # Separate variables, not slices of one: the converter must see constants of the
            # slice size to fold their fake quantization.
            part = (*shape[:-1], shape[-1] // self.kernel_chunks)
            self.kernel_parts = [self.add_weight(name=f"kernel_{i}", shape=part,
                                                 initializer="glorot_uniform")
                                 for i in range(self.kernel_chunks)]
        self.bias = (self.add_weight(name="bias", shape=(channels_out,), initializer="zeros")
                     if self.use_bias else None)
        if self.batchnorm:
            self.gamma = (self.add_weight(name="gamma", shape=(channels_out,), initializer="ones")
                          if self.bn_scale else None)
            self.beta = (self.add_weight(name="beta", shape=(channels_out,), initializer="zeros")
                         if self.bn_center else None)
            self.moving_mean = self.add_weight(name="moving_mean", shape=(channels_out,),
                                               initializer="zeros", trainable=False)
            self.moving_variance = self.add_weight(name="moving_variance", shape=(channels_out,),
                                                   initializer="ones", trainable=False)

    def folded(self):
        """The folded float kernel and bias (before fake quantization)."""
        parts, bias = self.folded_parts()
        return (parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)), bias

    def folded_parts(self):
        """`folded()` with the kernel as its `kernel_chunks` output-channel slices."""
        parts, bias = self.kernel_parts, self.bias
        if bias is None:
            bias = ops.zeros((self.channels_out,), dtype=parts[0].dtype)
        if not self.batchnorm:
            return list(parts), bias
        scale = ops.rsqrt(self.moving_variance + self.bn_epsilon)
        if self.gamma is not None:
            scale = scale * self.gamma
        bias = (bias - self.moving_mean) * scale
        if self.beta is not None:
            bias = bias + self.beta
        if self.kind == "depthwise":
            scale = ops.reshape(scale, (int(parts[0].shape[2]), self.depth_multiplier))
            return [parts[0] * scale], bias
        scales = ops.split(scale, len(parts)) if len(parts) > 1 else [scale]
        return [k * sc for k, sc in zip(parts, scales)], bias

    def quantized_kernel(self):
        """The folded kernel as the int8 model stores it (dequantized to float)."""
        kernel, _ = self.folded()
        if self.kind == "depthwise" and self.depth_multiplier != 1:
            kh, kw, cin, mult = kernel.shape
            flat = symmetric_fake_quant(ops.reshape(kernel, (kh, kw, cin * mult)), -1,
                                        self.num_bits)
            return ops.reshape(flat, (kh, kw, cin, mult))
        return symmetric_fake_quant(kernel, 2 if self.kind == "depthwise" else -1, self.num_bits)

    def call(self, inputs):
        if self.kernel_chunks > 1:
            return self._chunked_call(inputs)
        return self._activate(self._linear_call(inputs))

    def _activate(self, y):
        if self.activation == "relu":
            return ops.relu(y)
        return ops.relu6(y) if self.activation == "relu6" else y

    def _linear_call(self, inputs):
        _, bias = self.folded()
        kernel = self.quantized_kernel()
        if self.kind == "conv":
            y = ops.conv(inputs, kernel, strides=self.strides, padding=self.padding,
                         dilation_rate=self.dilation_rate)
        else:
            y = ops.depthwise_conv(inputs, kernel, strides=self.strides, padding=self.padding,
                                   dilation_rate=self.dilation_rate)
        return ops.add(y, bias)

    def _chunked_call(self, inputs):
        parts, bias = self.folded_parts()
        outputs = []
        for part, part_bias in zip(parts, ops.split(bias, len(parts))):
            part = symmetric_fake_quant(part, -1, self.num_bits)
            y = ops.conv(inputs, part, strides=self.strides, padding=self.padding,
                         dilation_rate=self.dilation_rate)
            outputs.append(self._activate(ops.add(y, part_bias)))
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        layer = (keras.layers.Conv2D(self.filters or 1, self.kernel_size, strides=self.strides,
                                     padding=self.padding, dilation_rate=self.dilation_rate)
                 if self.kind == "conv" else
                 keras.layers.DepthwiseConv2D(self.kernel_size, strides=self.strides,
                                              padding=self.padding,
                                              dilation_rate=self.dilation_rate))
        shape = layer.compute_output_shape(input_shape)
        return (*shape[:-1], self.channels_out if self.built else
                (self.filters if self.kind == "conv" else None))

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, filters=self.filters, kernel_size=self.kernel_size,
                      strides=self.strides, padding=self.padding,
                      dilation_rate=self.dilation_rate, groups=self.groups,
                      depth_multiplier=self.depth_multiplier, use_bias=self.use_bias,
                      batchnorm=self.batchnorm, bn_epsilon=self.bn_epsilon,
                      bn_center=self.bn_center, bn_scale=self.bn_scale, num_bits=self.num_bits,
                      kernel_chunks=self.kernel_chunks, activation=self.activation)
        return config


@keras.saving.register_keras_serializable(package="kerascnn")
class QuantDense(keras.layers.Layer):
    """A Dense layer (no activation) whose kernel is fake-quantized (per tensor, symmetric).

    Args:
        units: output units.
        use_bias: whether the layer has a bias.
        num_bits: weight bit width.
        **kwargs: Layer arguments.
    """

    def __init__(self, units, use_bias=True, num_bits=8, **kwargs):
        super().__init__(**kwargs)
        _check_bits(num_bits)
        self.units = units
        self.use_bias = use_bias
        self.num_bits = num_bits

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer="glorot_uniform")
        self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
                     if self.use_bias else None)

    def quantized_kernel(self):
        """The kernel as the int8 model stores it (dequantized to float)."""
        # One scale for the whole kernel: TFLite stores FULLY_CONNECTED weights transposed
        # (units, inputs), and the converter rejects a per-unit axis across that transpose.
        return symmetric_fake_quant(self.kernel, None, self.num_bits)

    def call(self, inputs):
        y = ops.matmul(inputs, self.quantized_kernel())
        return y if self.bias is None else ops.add(y, self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, use_bias=self.use_bias, num_bits=self.num_bits)
        return config


@keras.saving.register_keras_serializable(package="kerascnn")
class QuantBatchNorm(keras.layers.Layer):
    """A BatchNormalization that no convolution absorbs (pre-activation ResNetV2, DenseNet),
    frozen and quantized as TFLite runs it: ``x * fq(s) -> fq -> + fq(o)`` with
    ``s = gamma / sqrt(var + eps)`` and ``o = beta - mean * s``.

    TFLite has no int8 batch normalization: the converter lowers it to MUL and ADD with constant
    operands, and those constants must be quantized too, or they stay float and split the model.
    Both constants are quantized per tensor (TFLite's MUL and ADD take one scale per operand);
    the product gets its own tracked range. The caller quantizes the output.

    Args:
        epsilon, center, scale: the BatchNormalization's settings.
        num_bits: bit width.
        mode, ema_decay: how the product's range is tracked (see `FakeQuant`).
        **kwargs: Layer arguments.
    """

    def __init__(self, epsilon=1e-3, center=True, scale=True, num_bits=8, mode="ema",
                 ema_decay=0.999, **kwargs):
        super().__init__(**kwargs)
        _check_bits(num_bits)
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.num_bits = num_bits
        self.mode = mode
        self.ema_decay = ema_decay
        self.product_quantizer = FakeQuant(num_bits=num_bits, mode=mode, ema_decay=ema_decay,
                                           name="product_fq")

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = (self.add_weight(name="gamma", shape=(channels,), initializer="ones",
                                      trainable=False) if self.scale else None)
        self.beta = (self.add_weight(name="beta", shape=(channels,), initializer="zeros",
                                     trainable=False) if self.center else None)
        self.moving_mean = self.add_weight(name="moving_mean", shape=(channels,),
                                           initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(channels,),
                                               initializer="ones", trainable=False)
        self.product_quantizer.build(input_shape)

    def affine(self):
        """The per-channel (scale, offset) of the frozen normalization."""
        s = ops.rsqrt(self.moving_variance + self.epsilon)
        if self.gamma is not None:
            s = s * self.gamma
        o = -self.moving_mean * s
        if self.beta is not None:
            o = o + self.beta
        return s, o

    def call(self, inputs, training=None):
        s, o = self.affine()
        y = self.product_quantizer(inputs * symmetric_fake_quant(s, None, self.num_bits),
                                   training=training)
        low = ops.minimum(ops.min(o), 0.0)
        high = ops.maximum(ops.maximum(ops.max(o), 0.0), low + _MIN_RANGE)
        return y + keras.quantizers.fake_quant_with_min_max_vars(o, low, high, self.num_bits)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, center=self.center, scale=self.scale,
                      num_bits=self.num_bits, mode=self.mode, ema_decay=self.ema_decay)
        return config


@keras.saving.register_keras_serializable(package="kerascnn")
class QuantDeformableSampling(keras.layers.Layer):
    """The bilinear sampling of a `DeformableConv2D`, in a form that TFLite runs in int8.

    The float layer gathers the four neighbours of each sampling point with indices computed
    from the offsets (FLOOR, CAST, GATHER). An int8 model cannot do that: TFLite has no integer
    FLOOR, and the converter keeps the index arithmetic in float. Here the sampling is written
    as the same bilinear interpolation over *all* input pixels j, with the tent weights

        w(p, k, j) = m(p, k) * tent(y(p, k) - j_y) * tent(x(p, k) - j_x),
        tent(t) = 1 - |min(max(t, -1), 1)|

    (zero except at the four neighbours of the sampling point; pixels outside the image simply
    do not exist, which is the float layer's zero padding), so that the sampled columns are one
    batched matrix product ``w @ x``. Every step is an int8 builtin op (ADD, ABS, SUB, MUL,
    LOGISTIC, BATCH_MATMUL) with a fixed quantization range, fake-quantized here exactly where
    TFLite stores the tensor:

    - ``y - j_y`` is computed as offset + (grid - j_y): the constant is quantized with scale 1
      (range [-2^(b-1), 2^(b-1) - 1], exact integers; an 8-bit constant holds distances up to
      127 pixels, beyond which the tent is zero anyway unless the offsets exceed 126 pixels),
      and the sum is clamped to [-2^(b-1) / (2^(b-1) - 1), 1] by its quantizer, which gives
      the clamp of the tent for free;
    - |t|, the tent, the mask products and the weights have the range [0, 1] (the mask is the
      sigmoid output, range [0, 255/256] as TFLite's int8 LOGISTIC prescribes).

    The caller quantizes the output (tracked range) and applies the kernel as a 1x1 convolution
    over the ``taps * channels`` columns (`QuantConv`, where a following BN folds).

    Cost: the weights are (out_h * out_w * taps) x (height * width) per image and deformable
    group, instead of four gathers per sample in the float layer, so the multiply-accumulates
    grow with the square of the feature map: fine at the 7x7-28x28 maps of a ResNet's last
    stages, expensive far above that.

    Args:
        kernel_size, strides, padding, dilation_rate, modulated, deformable_groups: those of the
            `DeformableConv2D` being replaced.
        num_bits: bit width of the fixed-range quantizers.
        **kwargs: Layer arguments.

    Call arguments:
        inputs: [x, branch]: the (quantized) input (batch, height, width, channels) with static
            height and width, and the (quantized) output of the offset convolution.

    Returns:
        The sampled columns, (batch, out_height, out_width, taps * channels), tap-major.
    """

    def __init__(self, kernel_size=(3, 3), strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                 modulated=False, deformable_groups=1, num_bits=8, **kwargs):
        super().__init__(**kwargs)
        _check_bits(num_bits)
        self.kernel_size = tuple(kernel_size)
        self.strides = tuple(strides)
        self.padding = padding
        self.dilation_rate = tuple(dilation_rate)
        self.modulated = modulated
        self.deformable_groups = deformable_groups
        self.num_bits = num_bits
        top = 2 ** (num_bits - 1)
        self._distance_range = (-float(top), float(top - 1))  # scale 1: integers are exact
        self._clamp_range = (-top / (top - 1), 1.0)  # scale 1/(top-1): 1 and 0 are exact
        self._unit_range = (0.0, 1.0)

    def _fq(self, x, value_range):
        return keras.quantizers.fake_quant_with_min_max_vars(x, *value_range, self.num_bits)

    def build(self, input_shape):
        x_shape, branch_shape = input_shape
        height, width, channels = x_shape[1:]
        out_h, out_w = branch_shape[1:3]
        if None in (height, width, out_h, out_w):
            raise ValueError(
                f"Layer {self.name!r}: the int8 form of a deformable convolution needs a static "
                f"input height and width. Received: input shape {tuple(x_shape)}; build the "
                "model with a fixed `input_shape`.")
        if channels % self.deformable_groups:
            raise ValueError(f"The input channels ({channels}) must be divisible by "
                             f"`deformable_groups`. Received: deformable_groups={self.deformable_groups}")
        ys = tap_positions(height, out_h, self.kernel_size[0], self.strides[0],
                           self.dilation_rate[0], self.padding)  # (out_h, kh)
        xs = tap_positions(width, out_w, self.kernel_size[1], self.strides[1],
                           self.dilation_rate[1], self.padding)  # (out_w, kw)
        grid = (out_h, out_w, *self.kernel_size)

        def distances(coords, size):
            # (out_h, out_w, kh, kw) grid coordinates flattened as (position, tap), minus every
            # input row/column index, tiled over the deformable groups: (1, G * P * K, size).
            flat = np.broadcast_to(coords, grid).reshape(-1, 1) - np.arange(size)
            flat = np.clip(flat, *self._distance_range)
            return np.tile(flat, (self.deformable_groups, 1))[None].astype("float32")

        self._distance_y = distances(ys[:, None, :, None], height)
        self._distance_x = distances(xs[None, :, None, :], width)

    def _tent(self, offsets, distance):
        """tent(offset + distance), (batch, G * P * K, size), on the int8 grid."""
        distance = self._fq(ops.convert_to_tensor(distance), self._distance_range)
        t = self._fq(offsets + distance, self._clamp_range)
        magnitude = self._fq(ops.abs(t), self._unit_range)
        return self._fq(1.0 - magnitude, self._unit_range)

    def call(self, inputs):
        x, branch = inputs
        _, height, width, channels = x.shape
        _, out_h, out_w, _ = branch.shape
        groups, taps = self.deformable_groups, self.kernel_size[0] * self.kernel_size[1]
        positions = out_h * out_w
        rows = groups * positions * taps

        def group_major(t, last):
            # (batch, P, G, K[, 2]) -> (batch, G * P * K, last)
            t = ops.reshape(t, (-1, positions, groups, taps * last))
            if groups > 1:
                t = ops.transpose(t, (0, 2, 1, 3))
            return ops.reshape(t, (-1, rows, last))

        offsets = group_major(branch[..., :2 * groups * taps], 2)
        weight_y = self._tent(offsets[..., 0:1], self._distance_y)
        weight_x = self._tent(offsets[..., 1:2], self._distance_x)
        if self.modulated:
            mask = ops.sigmoid(group_major(branch[..., 2 * groups * taps:], 1))
            mask = self._fq(mask, SIGMOID_RANGE)
            weight_y = self._fq(weight_y * mask, self._unit_range)
        weights = self._fq(weight_y[:, :, :, None] * weight_x[:, :, None, :], self._unit_range)
        pixels = height * width
        if groups == 1:
            columns = ops.matmul(ops.reshape(weights, (-1, rows, pixels)),
                                 ops.reshape(x, (-1, pixels, channels)))
        else:
            weights = ops.reshape(weights, (-1, groups, positions * taps, pixels))
            values = ops.transpose(ops.reshape(x, (-1, pixels, groups, channels // groups)),
                                   (0, 2, 1, 3))
            columns = ops.transpose(ops.matmul(weights, values), (0, 2, 1, 3))
        return ops.reshape(columns, (-1, out_h, out_w, taps * channels))

    def compute_output_shape(self, input_shape):
        x_shape, branch_shape = input_shape
        taps = self.kernel_size[0] * self.kernel_size[1]
        return (x_shape[0], branch_shape[1], branch_shape[2], taps * x_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                      dilation_rate=self.dilation_rate, modulated=self.modulated,
                      deformable_groups=self.deformable_groups, num_bits=self.num_bits)
        return config
