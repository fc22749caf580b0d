"""Multiply-accumulates (MACs), counted analytically layer by layer, and the output-size formula.

A MAC is one multiplication and one addition (``acc += w * x``); FLOPs are counted as 2 x MACs, the
convention of TensorFlow's profiler and of most papers that quote FLOPs (the MobileNet, ResNet and
EfficientNet papers quote multiply-adds, i.e. MACs). Counts are per example (batch 1).

What each layer costs (``k`` = kernel elements, ``C_in``/``C_out`` channels, ``HW`` output
positions):

========================  =====================================================================
Conv (1D/2D/3D)           HW x C_out x k x C_in / groups  (dilation changes only HW)
DepthwiseConv             HW x C_in x depth_multiplier x k
SeparableConv             depthwise + HW x C_in x depth_multiplier x C_out
ConvTranspose             input positions x C_in x k x C_out
Dense                     positions x units x input features (a Dense on a 4-D map is a 1x1 conv)
Max/AveragePooling        output elements x window elements (one comparison or addition per
                          element of every window, counted as one MAC)
Global pooling            input elements (one addition or comparison each)
BatchNormalization        0 when it follows a convolution or Dense layer that feeds nothing else
                          (it folds into that layer's weights at inference); otherwise one
                          multiply-add per element (a per-channel scale and shift)
Add, Subtract, Multiply,  (number of inputs - 1) x output elements; Average: inputs x output
Maximum, Minimum          elements (the additions and the 1/n scale)
Rescaling, Normalization  one multiply-add per element
UpSampling2D, Resizing    nearest 0; bilinear 4, bicubic 16, lanczos3 36, lanczos5 100 per output
                          element; area: one per input element
LocalResponseNorm         size + 1 per element (the window's squares and the scale)
Activations, Dropout,     0 (nonlinearities are not multiply-accumulates; the papers' figures
reshapes, padding,        leave them out)
Concatenate, Flatten
========================  =====================================================================

Biases are not counted (an addition per output element, folded into the accumulator's start).
With these rules the counts agree with the published multiply-add figures (which count
convolutions and fully connected layers only) to within 1-2 %, see docs/analysis.md.

A layer of any other type is never guessed at: a layer with a ``compute_macs(input_shapes)``
method is asked (this is the hook for custom layers such as a deformable convolution), and any
other layer or raw ``keras.ops`` call is listed in ``MacCount.uncounted`` with 0 MACs.
"""

from __future__ import annotations

import dataclasses
import math

import keras
from keras import layers

from kerascnn.analysis.graph import GraphNode, walk

PADDING_CHOICES = ("valid", "same")

_INTERPOLATION_MACS = {"nearest": 0, "bilinear": 4, "bicubic": 16, "lanczos3": 36, "lanczos5": 100}

# Layers that cost nothing by the conventions above.
_FREE = (
    layers.InputLayer, layers.Dropout, layers.SpatialDropout1D, layers.SpatialDropout2D,
    layers.SpatialDropout3D, layers.GaussianDropout, layers.GaussianNoise, layers.AlphaDropout,
    layers.ActivityRegularization, layers.Flatten, layers.Reshape, layers.Permute,
    layers.RepeatVector, layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D,
    layers.Cropping1D, layers.Cropping2D, layers.Cropping3D, layers.Concatenate,
    layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU, layers.PReLU, layers.Softmax,
    layers.Identity, layers.Masking,
)
_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_TRANSPOSE = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_POOL = (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
         layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D)
_GLOBAL_POOL = (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
                layers.GlobalAveragePooling3D, layers.GlobalMaxPooling1D,
                layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D)
_MERGE = (layers.Add, layers.Subtract, layers.Multiply, layers.Maximum, layers.Minimum)
_FOLDS_BN = _CONV + _DEPTHWISE + _SEPARABLE + _TRANSPOSE + (layers.Dense,)


@dataclasses.dataclass(frozen=True)
class LayerMacs:
    """The MACs of one layer call: ``(name, type, output_shape, macs)``, unpackable as a tuple."""

    name: str
    type: str
    output_shape: tuple
    macs: int

    def __iter__(self):
        return iter((self.name, self.type, self.output_shape, self.macs))


@dataclasses.dataclass(frozen=True)
class Uncounted:
    """A layer call whose cost is unknown (counted as 0): name, type and why."""

    name: str
    type: str
    reason: str


@dataclasses.dataclass(frozen=True)
class MacCount:
    """The result of `count_macs`.

    Attributes:
        total: multiply-accumulates per example.
        per_layer: one `LayerMacs` per layer call, in execution order.
        uncounted: layer calls whose cost is unknown and was counted as 0; empty when the total is
            complete.
    """

    total: int
    per_layer: tuple
    uncounted: tuple = ()

    @property
    def flops(self) -> int:
        """Floating-point operations, 2 x MACs (a multiply and an add)."""
        return 2 * self.total

    @property
    def gmacs(self) -> float:
        """MACs in billions."""
        return self.total / 1e9

    @property
    def complete(self) -> bool:
        """True when every layer's cost is known."""
        return not self.uncounted

    def by_type(self) -> dict:
        """Total MACs per layer type, largest first."""
        totals: dict[str, int] = {}
        for entry in self.per_layer:
            totals[entry.type] = totals.get(entry.type, 0) + entry.macs
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def __getitem__(self, name: str) -> LayerMacs:
        for entry in self.per_layer:
            if entry.name == name:
                return entry
        raise KeyError(f"No layer named {name!r}.")


def conv_output_size(size, kernel_size, strides=1, padding="valid", dilation_rate=1) -> int:
    """The output length of a convolution or pooling along one axis.

    ``(n + 2p - f) // s + 1`` with the effective kernel ``f = d * (k - 1) + 1`` of a dilated
    kernel; ``padding="same"`` gives ``ceil(n / s)`` (TensorFlow's SAME, which pads as needed).

    Args:
        size: input length n (a positive integer).
        kernel_size: kernel length k.
        strides: stride s.
        padding: "valid" (p = 0), "same", an integer p (zeros on each side) or a pair
            (before, after) of integers.
        dilation_rate: dilation d.

    Returns:
        The output length.

    Raises:
        ValueError: for a non-positive size, kernel, stride or dilation, a negative or unknown
            padding, or an input shorter than the effective kernel.

    Example:
        >>> conv_output_size(224, 7, strides=2, padding=3)
        112
        >>> conv_output_size(28, 3, dilation_rate=2)
        24
    """
    for arg, value in (("size", size), ("kernel_size", kernel_size), ("strides", strides),
                       ("dilation_rate", dilation_rate)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be a positive integer. Received: {arg}={value!r}")
    effective = dilation_rate * (kernel_size - 1) + 1
    if isinstance(padding, str):
        if padding not in PADDING_CHOICES:
            raise ValueError("`padding` must be 'valid', 'same', an integer or a pair of "
                             f"integers. Received: padding={padding!r}")
        if padding == "same":
            return -(-size // strides)
        before = after = 0
    else:
        pair = (padding, padding) if not isinstance(padding, (tuple, list)) else tuple(padding)
        if (len(pair) != 2 or any(isinstance(p, bool) or not isinstance(p, int) or p < 0
                                  for p in pair)):
            raise ValueError("`padding` must be 'valid', 'same', a non-negative integer or a pair "
                             f"of them. Received: padding={padding!r}")
        before, after = pair
    padded = size + before + after
    if padded < effective:
        raise ValueError(f"The input ({size}, padded to {padded}) is smaller than the effective "
                         f"kernel {effective} (kernel_size={kernel_size}, dilation_rate="
                         f"{dilation_rate}). Received: size={size}, padding={padding!r}")
    return (padded - effective) // strides + 1


def count_macs(model) -> MacCount:
    """Counts the multiply-accumulates of one forward pass (batch 1).

    See the module docstring for the cost of each layer type. The spatial input size must be known
    (build the model with e.g. ``input_shape=(224, 224, 3)``).

    Args:
        model: a functional Keras model.

    Returns:
        A `MacCount` with `.total`, `.flops`, `.per_layer` and `.uncounted`.

    Raises:
        ValueError: when a shape the count needs is unknown, or a custom layer's `compute_macs`
            returns something other than a non-negative integer.

    Example:
        >>> macs = count_macs(kerascnn.build("mobilenet_v2"))
        >>> round(macs.total / 1e6)
        301
    """
    graph = walk(model)
    per_layer, uncounted = [], []
    for node in graph.nodes:
        macs, reason = _node_macs(node, graph)
        if reason is not None:
            uncounted.append(Uncounted(node.name, node.type_name, reason))
        per_layer.append(LayerMacs(node.name, node.type_name, node.output_shape, int(macs)))
    return MacCount(total=sum(e.macs for e in per_layer), per_layer=tuple(per_layer),
                    uncounted=tuple(uncounted))


def _elements(shape, node: GraphNode) -> int:
    dims = tuple(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(f"Counting MACs needs known shapes, but layer {node.name!r} has shape "
                         f"{tuple(shape)}. Build the model with a fixed input size, e.g. "
                         f"input_shape=(224, 224, 3).")
    return math.prod(dims)


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") != "channels_first"


def _split(shape, layer):
    """(spatial dims, channels) of a batched shape."""
    dims = tuple(shape)[1:]
    return (dims[:-1], dims[-1]) if _channels_last(layer) else (dims[1:], dims[0])


def _spatial_positions(shape, node) -> int:
    _elements(shape, node)  # checks that every dimension is known
    return math.prod(_split(shape, node.layer)[0])


def _node_macs(node: GraphNode, graph) -> tuple:
    """(MACs, None) or (0, reason) when the cost is unknown."""
    layer = node.layer
    if node.is_input:
        return 0, None
    if not node.is_layer:
        return 0, f"{node.type_name} is a raw operation, not a layer: its cost is not modelled"
    hook = getattr(layer, "compute_macs", None)
    if callable(hook):
        shapes = node.input_shapes[0] if len(node.input_shapes) == 1 else list(node.input_shapes)
        macs = hook(shapes)
        if isinstance(macs, bool) or not isinstance(macs, int) or macs < 0:
            raise ValueError(f"{type(layer).__name__}.compute_macs() must return a non-negative "
                             f"integer. Received: {macs!r} from layer {node.name!r}")
        return macs, None
    out = node.output_shape
    inp = node.input_shape
    if isinstance(layer, _FREE):
        return 0, None
    if isinstance(layer, _DEPTHWISE):
        kernel = math.prod(layer.kernel_size)
        return _spatial_positions(out, node) * _split(out, layer)[1] * kernel, None
    if isinstance(layer, _SEPARABLE):
        c_in = _split(inp, layer)[1]
        mid = c_in * layer.depth_multiplier
        positions = _spatial_positions(out, node)
        return positions * mid * math.prod(layer.kernel_size) + positions * mid * layer.filters, None
    if isinstance(layer, _TRANSPOSE):
        c_in = _split(inp, layer)[1]
        return _spatial_positions(inp, node) * c_in * math.prod(layer.kernel_size) * layer.filters, None
    if isinstance(layer, _CONV):
        c_in = _split(inp, layer)[1]
        return (_spatial_positions(out, node) * layer.filters * math.prod(layer.kernel_size)
                * c_in // layer.groups), None
    if isinstance(layer, layers.Dense):
        return _elements(inp, node) * layer.units, None  # positions x features x units
    if isinstance(layer, _POOL):
        return _elements(out, node) * math.prod(layer.pool_size), None
    if isinstance(layer, _GLOBAL_POOL):
        return _elements(inp, node), None
    if isinstance(layer, layers.BatchNormalization):
        return (0 if _folds(node, graph) else _elements(out, node)), None
    if isinstance(layer, _MERGE):
        return (len(node.inputs) - 1) * _elements(out, node), None
    if isinstance(layer, layers.Average):
        return len(node.inputs) * _elements(out, node), None
    if isinstance(layer, (layers.Rescaling, layers.Normalization)):
        return _elements(out, node), None
    if isinstance(layer, (layers.UpSampling2D, layers.Resizing)):
        interpolation = getattr(layer, "interpolation", "nearest")
        if interpolation == "area":
            return _elements(inp, node), None
        if interpolation not in _INTERPOLATION_MACS:
            return 0, f"interpolation {interpolation!r} is not modelled"
        return _INTERPOLATION_MACS[interpolation] * _elements(out, node), None
    if isinstance(layer, (layers.UpSampling1D, layers.UpSampling3D)):
        return 0, None  # nearest-neighbour repetition only
    if _is_lrn(layer):
        return (layer.size + 1) * _elements(out, node), None
    has_weights = bool(getattr(layer, "weights", None))
    return 0, (f"no MAC rule for {type(layer).__name__}"
               + (" (a layer with weights)" if has_weights else "")
               + "; give it a compute_macs(input_shapes) method")


def _folds(node: GraphNode, graph) -> bool:
    """A BatchNormalization folds into the layer before it when that layer is linear with a
    kernel and the BN is its only reader."""
    if len(node.inputs) != 1:
        return False
    producer = graph.nodes[node.inputs[0].node]
    return isinstance(producer.layer, _FOLDS_BN) and producer.consumers == [node.position] and \
        getattr(producer.layer, "activation", None) in (None, keras.activations.linear)


def _is_lrn(layer) -> bool:
    from kerascnn.layers.lrn import LocalResponseNormalization

    return isinstance(layer, LocalResponseNormalization)
