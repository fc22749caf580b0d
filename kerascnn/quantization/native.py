"""The native QAT engine: a Keras 3 functional model rewritten with fake-quantization layers.

`quantize_model(model)` walks the model's layer graph (`kerascnn.analysis.graph.walk`) and builds
a new functional model that computes the same function with every tensor the int8 TFLite model
stores passed through a fake quantizer:

- Conv2D / DepthwiseConv2D followed by their only consumer BatchNormalization become one
  `QuantConv` (BN folded, folded kernel quantized per channel). A lone BatchNormalization (ResNetV2,
  DenseNet) becomes a frozen `QuantBatchNorm` whose scale and offset constants are quantized, so
  that the converter's MUL and ADD are integer too.
- Dense becomes `QuantDense`; an activation built into a Conv2D or Dense is split off.
- `DeformableConv2D` becomes its offset convolution (`QuantConv`), the integer form of its bilinear
  sampling (`QuantDeformableSampling`, which needs a static input size) and its kernel as a 1x1
  `QuantConv` over the sampled columns, into which a following BN folds.
- A convolution whose float32 kernel exceeds `MAX_FOLDED_KERNEL_BYTES` (VGG16-FCN's fc6) becomes
  a `QuantConv` with `kernel_chunks`: convolutions over output-channel slices, each slice its own
  variable, concatenated; a following ReLU/ReLU6 is applied per slice. Larger kernels are not
  folded by the TFLite converter, which then leaves Flex fake-quant ops.
- Activation ranges (`FakeQuant`) go where TFLite keeps a tensor: after each layer, except
  * where TFLite fuses the next op into this one: a conv or fully connected layer whose only
    consumer is ReLU or ReLU6 gets its quantizer after the activation;
  * layers that TFLite runs with the input's scale (max/average pooling, padding, reshaping,
    nearest/bilinear upsampling, dropout, the mirror-image batch of `FlipConcat`): they pass the
    quantized tensor through.
- Activations TFLite quantizes with a fixed scale get that range: sigmoid and softmax [0, 255/256]
  (the int8 LOGISTIC/SOFTMAX output scale 1/256, zero point -128; a [0, 1] range would leave a
  float island), tanh [-1, 127/128]. Activations without a TFLite kernel of their own are
  rewritten as the ops TFLite runs, each output quantized: swish = x * sigmoid(x) (LOGISTIC, MUL),
  hard sigmoid = relu6(x + 3) / 6 (ADD with fused RELU6, MUL). Hard swish stays one layer: the
  converter recognises it as HARD_SWISH.

Concatenate inputs keep their own ranges; TFLite's int8 CONCATENATION needs one scale for all of
them, and the converter inserts integer re-quantize ops where they differ (they remain integer).

Anything else raises `UnsupportedLayerError` naming the layer and what to do.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers

from kerascnn.analysis.graph import walk
from kerascnn.layers.deformable import DeformableConv2D
from kerascnn.layers.flip_average import FlipConcat, PairMean
from kerascnn.layers.quantization import (SIGMOID_RANGE, FakeQuant, QuantBatchNorm, QuantConv,
                                          QuantDeformableSampling, QuantDense)

TANH_RANGE = (-1.0, 127.0 / 128.0)

# Layers that TFLite runs with the scale of their input: no quantizer of their own.
_PASS_THROUGH = (layers.ZeroPadding2D, layers.MaxPooling2D, layers.AveragePooling2D,
                 layers.GlobalMaxPooling2D, layers.Dropout, layers.SpatialDropout2D,
                 layers.Flatten, layers.Reshape, layers.Cropping2D, layers.UpSampling2D,
                 layers.Permute, layers.Identity, layers.GaussianNoise, layers.GaussianDropout,
                 FlipConcat)
# Layers re-created from their config and followed by a quantizer.
_REQUANTIZING = (layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum,
                 layers.Minimum, layers.Concatenate, layers.GlobalAveragePooling2D,
                 layers.Rescaling, layers.Resizing, PairMean)
_FUSABLE_ACTIVATIONS = ("relu", "relu6")
_FIXED_RANGES = {"sigmoid": SIGMOID_RANGE, "softmax": SIGMOID_RANGE, "tanh": TANH_RANGE}
_SPLIT_ACTIVATIONS = ("swish", "silu", "hard_sigmoid")
# The TFLite converter stops folding a kernel's fake quantization into int8 constants somewhere
# between 98 and 196 MB (docs/qat_coverage.md) and keeps a Flex op; larger conv kernels are
# computed in output-channel slices of at most this size (QuantConv's `kernel_chunks`).
MAX_FOLDED_KERNEL_BYTES = 64 * 2**20
_SINGLE_ACTIVATIONS = ("relu", "relu6", "hard_silu", "hard_swish", "sigmoid", "softmax", "tanh",
                       "linear", "elu", "leaky_relu")


class UnsupportedLayerError(ValueError):
    """A layer the QAT engine cannot quantize."""


def _activation_name(layer) -> str | None:
    """The activation a ReLU/Activation layer applies ("relu", "relu6", ...), or None."""
    if isinstance(layer, layers.ReLU):
        config = layer.get_config()
        if config.get("negative_slope", 0.0) or config.get("threshold", 0.0):
            return "leaky_relu"
        max_value = config.get("max_value")
        if max_value is None:
            return "relu"
        return "relu6" if float(max_value) == 6.0 else f"relu_max{max_value}"
    if isinstance(layer, layers.Activation):
        return keras.activations.serialize(layer.activation)
    if isinstance(layer, layers.Softmax):
        return "softmax"
    return None


def _inline_activation(layer) -> str:
    act = getattr(layer, "activation", None)
    return "linear" if act is None else keras.activations.serialize(act)


class _Rewriter:
    """Builds the QAT model node by node (one instance per `quantize_model` call)."""

    def __init__(self, model, *, num_bits, mode, ema_decay, quantize_input):
        self.model = model
        self.graph = walk(model)
        self.num_bits = num_bits
        self.mode = mode
        self.ema_decay = ema_decay
        self.quantize_input = quantize_input
        self.new = {}  # (position, index) -> new tensor
        self.fused_bn = {}  # BN position -> conv position
        self.absorbed = set()  # positions of activation layers computed inside a QuantConv
        self.output_positions = {ref.node for ref in self.graph.outputs}
        self.copies = []  # (new layer, [source layers]) for the weight transfer

    # -- helpers --------------------------------------------------------------------------
    def fq(self, x, name, fixed_range=None):
        return FakeQuant(num_bits=self.num_bits, mode=self.mode, ema_decay=self.ema_decay,
                         fixed_range=fixed_range, name=f"{name}_fq")(x)

    def consumers(self, node):
        return [self.graph.nodes[p] for p in node.consumers]

    def sole_consumer(self, node):
        consumers = self.consumers(node)
        if len(consumers) == 1 and node.position not in self.output_positions:
            return consumers[0]
        return None

    def fused_activation_follows(self, node) -> bool:
        consumer = self.sole_consumer(node)
        return consumer is not None and _activation_name(consumer.layer) in _FUSABLE_ACTIVATIONS

    def unsupported(self, node, why):
        raise UnsupportedLayerError(
            f"Layer {node.name!r} ({node.type_name}) cannot be quantized by the native QAT "
            f"engine: {why}. Replace it with standard Keras layers that TFLite runs in int8 "
            "(Conv2D, DepthwiseConv2D, BatchNormalization, ReLU, Add, Concatenate, pooling, "
            "Dense ...), or keep the model in float (export kinds 'float16'/'dynamic_int8').")

    # -- the rewrite ----------------------------------------------------------------------
    def run(self):
        inputs = []
        for node in self.graph.nodes:
            if node.is_input:
                shape = node.output_shape
                x = keras.Input(shape=shape[1:], batch_size=shape[0], name=node.name)
                inputs.append(x)
                self.new[(node.position, 0)] = (self.fq(x, node.name) if self.quantize_input
                                                else x)
                continue
            if not node.is_layer:
                self.unsupported(node, "it is a raw operation, not a Keras layer")
            args = [self.new[(ref.node, ref.index)] for ref in node.inputs]
            outputs = self.rewrite(node, args)
            for i, tensor in enumerate(outputs if isinstance(outputs, (list, tuple)) else [outputs]):
                self.new[(node.position, i)] = tensor
        outputs = [self.new[(ref.node, ref.index)] for ref in self.graph.outputs]
        model_outputs = self.model.outputs
        if isinstance(self.model.output, dict):
            outputs = dict(zip(self.model.output.keys(), outputs))
        elif len(model_outputs) == 1:
            outputs = outputs[0]
        qat_model = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs,
                                name=f"{self.model.name}_qat")
        for new_layer, assign in self.copies:
            assign(new_layer)
        return qat_model

    def rewrite(self, node, args):
        layer = node.layer
        x = args[0] if len(args) == 1 else args
        if node.position in self.fused_bn or node.position in self.absorbed:
            return x  # folded into the convolution already
        if isinstance(layer, DeformableConv2D):
            return self.deformable(node, x)
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)) and \
                not isinstance(layer, (layers.Conv2DTranspose, layers.SeparableConv2D)):
            return self.conv(node, x)
        if isinstance(layer, layers.Dense):
            return self.dense(node, x)
        if isinstance(layer, layers.BatchNormalization):
            return self.lone_batchnorm(node, x)
        if isinstance(layer, (layers.ReLU, layers.Activation, layers.Softmax)):
            return self.activation(node, x, _activation_name(layer))
        if isinstance(layer, _PASS_THROUGH):
            if isinstance(layer, layers.UpSampling2D) and layer.interpolation not in (
                    "nearest", "bilinear"):
                self.unsupported(node, f"interpolation {layer.interpolation!r} has no int8 kernel")
            return self.clone(layer)(x)
        if isinstance(layer, _REQUANTIZING):
            return self.fq(self.clone(layer)(x), layer.name)
        if isinstance(layer, layers.InputLayer):
            return x
        self.unsupported(node, "no quantized equivalent is known")

    def clone(self, layer):
        new = layer.__class__.from_config(layer.get_config())
        if layer.weights:
            self.copies.append((new, lambda n, src=layer: n.set_weights(src.get_weights())))
        return new

    def finish_linear(self, node, y, activation, name):
        """Quantizes the output of a conv/dense (`node`, possibly with its folded BN) and applies
        an inline activation."""
        if activation not in (None, "linear"):
            if activation in _FUSABLE_ACTIVATIONS:
                y = self.activation_layer(activation, f"{name}_act")(y)
                return self.fq(y, f"{name}_act")
            y = self.fq(y, name)
            return self.apply_activation(y, activation, f"{name}_act", node)
        if self.fused_activation_follows(node):
            return y
        return self.fq(y, name)

    def deformable(self, node, x):
        """A DeformableConv2D as three quantized steps: its offset branch (a `QuantConv`), the
        bilinear sampling in int8 form (`QuantDeformableSampling`), and its kernel as a 1x1
        `QuantConv` over the sampled columns, where a following BN folds as for any conv."""
        layer, branch_conv = node.layer, node.layer.offset_conv
        offsets = QuantConv(
            kind="conv", filters=branch_conv.filters, kernel_size=branch_conv.kernel_size,
            strides=branch_conv.strides, padding=branch_conv.padding,
            dilation_rate=branch_conv.dilation_rate, use_bias=branch_conv.use_bias,
            num_bits=self.num_bits, name=f"{layer.name}_offset")
        branch = self.fq(offsets(x), f"{layer.name}_offset")
        self.copies.append((offsets, lambda n, src=branch_conv: _copy_conv(n, src, None)))
        columns = QuantDeformableSampling(
            kernel_size=layer.kernel_size, strides=layer.strides, padding=layer.padding,
            dilation_rate=layer.dilation_rate, modulated=layer.modulated,
            deformable_groups=layer.deformable_groups, num_bits=self.num_bits,
            name=f"{layer.name}_sampling")([x, branch])
        columns = self.fq(columns, f"{layer.name}_sampling")
        return self.conv(node, columns, pointwise=True)

    def conv(self, node, x, pointwise=False):
        """A Conv2D/DepthwiseConv2D (with its BN folded where one follows); `pointwise`: the
        kernel of a DeformableConv2D applied as a 1x1 convolution to its sampled columns."""
        layer = node.layer
        config = layer.get_config()
        if pointwise:
            config.update(kernel_size=(1, 1), strides=(1, 1), padding="valid",
                          dilation_rate=(1, 1))
        bn_node = self.sole_consumer(node)
        activation = _inline_activation(layer)
        fold = (bn_node is not None and isinstance(bn_node.layer, layers.BatchNormalization)
                and activation == "linear" and bn_node.layer.axis in (-1, 3, [-1], [3]))
        depthwise = isinstance(layer, layers.DepthwiseConv2D)
        if config.get("data_format", "channels_last") != "channels_last":
            self.unsupported(node, "only channels_last is supported")
        bn = bn_node.layer if fold else None
        chunks = 1 if depthwise else _kernel_chunks(layer)
        # A sliced convolution computes its ReLU itself, per slice, so that the slices share the
        # concatenation's quantizer (the one range TFLite's CONCATENATION needs).
        inner_activation, activation_name = None, f"{layer.name}_act"
        if chunks > 1:
            last = bn_node if fold else node
            if activation in _FUSABLE_ACTIVATIONS:
                inner_activation = activation
            elif activation == "linear" and self.fused_activation_follows(last):
                consumer = self.sole_consumer(last)
                inner_activation, activation_name = _activation_name(consumer.layer), consumer.name
                self.absorbed.add(consumer.position)
        new = QuantConv(
            kind="depthwise" if depthwise else "conv",
            filters=None if depthwise else config["filters"],
            kernel_size=config["kernel_size"], strides=config["strides"],
            padding=config["padding"], dilation_rate=config["dilation_rate"],
            groups=config.get("groups", 1), depth_multiplier=config.get("depth_multiplier", 1),
            use_bias=config["use_bias"], batchnorm=fold,
            bn_epsilon=bn.epsilon if fold else 1e-3,
            bn_center=bn.center if fold else True, bn_scale=bn.scale if fold else True,
            num_bits=self.num_bits, kernel_chunks=chunks, activation=inner_activation,
            name=layer.name)
        y = new(x)
        self.copies.append((new, lambda n, conv=layer, bn=bn: _copy_conv(n, conv, bn)))
        if fold:
            self.fused_bn[bn_node.position] = node.position
        if inner_activation is not None:
            return self.fq(y, activation_name)
        if fold:
            # The quantizer decision depends on what follows the BN.
            return self.finish_linear(bn_node, y, None, bn.name)
        return self.finish_linear(node, y, activation, layer.name)

    def dense(self, node, x):
        layer = node.layer
        new = QuantDense(layer.units, use_bias=layer.use_bias, num_bits=self.num_bits,
                         name=layer.name)
        y = new(x)
        self.copies.append((new, lambda n, src=layer: n.set_weights(src.get_weights())))
        return self.finish_linear(node, y, _inline_activation(layer), layer.name)

    def lone_batchnorm(self, node, x):
        layer = node.layer
        if layer.axis not in (-1, len(node.input_shape) - 1, [-1], [len(node.input_shape) - 1]):
            self.unsupported(node, "only channels-last batch normalization is supported")
        new = QuantBatchNorm(epsilon=layer.epsilon, center=layer.center, scale=layer.scale,
                             num_bits=self.num_bits, mode=self.mode, ema_decay=self.ema_decay,
                             name=layer.name)
        y = new(x)
        self.copies.append((new, lambda n, src=layer: _copy_batchnorm(n, src)))
        # TFLite does not fuse an activation into the MUL/ADD of a lone BN: always quantize.
        return self.fq(y, layer.name)

    def activation_layer(self, activation, name):
        if activation == "relu6":
            return layers.ReLU(max_value=6.0, name=name)
        if activation == "relu":
            return layers.ReLU(name=name)
        return layers.Activation(activation, name=name)

    def activation(self, node, x, activation):
        # A call inside a nested model is named "inner/layer"; Keras names cannot hold "/".
        return self.apply_activation(x, activation, node.name.replace("/", "_"), node)

    def apply_activation(self, x, activation, name, node):
        if activation in _SPLIT_ACTIVATIONS:
            if activation == "hard_sigmoid":
                y = layers.Rescaling(1.0, offset=3.0, name=f"{name}_shift")(x)
                y = layers.ReLU(max_value=6.0, name=f"{name}_relu6")(y)
                y = self.fq(y, f"{name}_relu6")
                y = layers.Rescaling(1.0 / 6.0, name=name)(y)
                return self.fq(y, name)
            gate = layers.Activation("sigmoid", name=f"{name}_sigmoid")(x)
            gate = self.fq(gate, f"{name}_sigmoid", fixed_range=SIGMOID_RANGE)
            y = layers.Multiply(name=name)([x, gate])
            return self.fq(y, name)
        if activation not in _SINGLE_ACTIVATIONS:
            self.unsupported(node, f"activation {activation!r} has no int8 TFLite kernel")
        y = self.activation_layer(activation, name)(x)
        return self.fq(y, name, fixed_range=_FIXED_RANGES.get(activation))


def _kernel_chunks(conv) -> int:
    """How many output-channel slices keep each of `conv`'s float32 kernel slices within
    MAX_FOLDED_KERNEL_BYTES: the smallest divisor of its filters that does (1 for most layers)."""
    size = 4 * math.prod(int(d) for d in conv.kernel.shape)
    filters = int(conv.kernel.shape[-1])
    if size <= MAX_FOLDED_KERNEL_BYTES or conv.get_config().get("groups", 1) != 1:
        return 1
    for chunks in range(2, filters + 1):
        if filters % chunks == 0 and size / chunks <= MAX_FOLDED_KERNEL_BYTES:
            return chunks
    return filters


def _copy_batchnorm(new, bn):
    values = {w.path.split("/")[-1]: w.numpy() for w in bn.weights}
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        variable = getattr(new, name)
        if variable is not None:
            variable.assign(values[name])


def _copy_conv(new: QuantConv, conv, bn):
    kernel = conv.kernel.numpy()
    # A DeformableConv2D's (kh, kw, C, F) kernel becomes the (1, 1, kh * kw * C, F) kernel of a
    # 1x1 convolution over its tap-major sampled columns; a no-op for the other convolutions.
    kernel = kernel.reshape(*new.kernel_size, -1, kernel.shape[-1])
    weights = np.split(kernel, new.kernel_chunks, axis=-1)
    if conv.use_bias:
        weights.append(conv.bias.numpy())
    if bn is not None:
        weights.extend(w.numpy() for w in bn.weights)
    new.set_weights(weights)


def quantize_model(model, *, num_bits: int = 8, mode: str = "ema", ema_decay: float = 0.999,
                   quantize_input: bool = True):
    """A quantization-aware copy of a Keras 3 functional model (weights copied, BN folded).

    Args:
        model: a functional Keras 3 model built from standard layers (a nested functional model
            used as a layer is expanded).
        num_bits: bit width of weights and activations (8 for TFLite int8).
        mode: how activation ranges are found: "ema" (moving average of batch min/max) or
            "learned".
        ema_decay: decay of the moving average.
        quantize_input: quantize the model input too (needed for a fully integer model).

    Returns:
        A new `keras.Model`: the same function with fake quantization, ready to train and to
        convert with `kerascnn.export.to_tflite(qat_model, kind="qat_int8")`. Its activation
        ranges are unset until it has seen data in training mode (`calibrate`, or training).

    Raises:
        UnsupportedLayerError: a layer with no int8 equivalent (names the layer).
        ValueError: a model without a layer graph (subclassed).

    Example:
        >>> qat_model = quantize_model(kerascnn.build("mobilenet_v2", input_shape=(96, 96, 3)))
    """
    return _Rewriter(model, num_bits=num_bits, mode=mode, ema_decay=ema_decay,
                     quantize_input=quantize_input).run()


def fake_quant_layers(model) -> list:
    """The `FakeQuant` layers of a QAT model."""
    return [layer for layer in model.layers if isinstance(layer, FakeQuant)]


def calibrate(qat_model, data, steps: int = 10) -> int:
    """Sets the activation ranges of a fresh QAT model from a few batches, without training.

    The ranges become the exact min/max over the batches (a moving average started from a cold
    value would need hundreds of steps to settle).

    Args:
        qat_model: a model from `quantize_model`.
        data: a batched tf.data.Dataset (or iterable) of inputs or (inputs, labels).
        steps: batches to look at.

    Returns:
        The number of batches used.
    """
    quantizers = [q for q in fake_quant_layers(qat_model) if q.fixed_range is None]
    forward = _training_forward(qat_model)
    lows = {id(q): np.inf for q in quantizers}
    highs = {id(q): -np.inf for q in quantizers}
    used = 0
    for batch in data:
        if used >= steps:
            break
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        for q in quantizers:
            q.initialized.assign(0.0)  # each call then takes the batch's own range
        forward(x)
        for q in quantizers:
            lows[id(q)] = min(lows[id(q)], float(q.range_min.numpy()))
            highs[id(q)] = max(highs[id(q)], float(q.range_max.numpy()))
        used += 1
    if not used:
        raise ValueError("`data` is empty: calibration needs at least one batch.")
    for q in quantizers:
        q.range_min.assign(lows[id(q)])
        q.range_max.assign(highs[id(q)])
        q.initialized.assign(1.0)
    return used


def _training_forward(model):
    """`model(x, training=True)`, traced once into a graph on TensorFlow, eager elsewhere.

    Eagerly, every FakeQuant and QuantConv call runs its Python for each batch: ten batches of
    the flip-averaged default QAT model took 17 s on the 2-core CPU, traced about 5 s
    (docs/main_job.md).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x, training=True), reduce_retracing=True)
    return lambda x: model(x, training=True)
