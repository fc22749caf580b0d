"""Receptive fields of every layer, through branches, concatenations, additions and dilation.

Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural Networks", Distill,
2019, https://distill.pub/2019/computing-receptive-fields/.

For every layer output and every spatial axis three numbers are computed, in input pixels:

- size ``r``: how many input pixels one output pixel depends on;
- jump ``j`` (effective stride): the distance between the centers of two neighbouring output
  pixels' fields;
- start: the center of the field of the first output pixel, in input pixel coordinates (pixel
  centers are 0, 1, 2, ...; padding can make it negative).

A layer with kernel ``k``, stride ``s``, dilation ``d`` and left padding ``p`` maps them as

    k' = d (k - 1) + 1,   r = r_in + (k' - 1) j_in,   j = s j_in,
    start = start_in + ((k' - 1) / 2 - p) j_in.

Multi-path networks (residual additions, inception concatenations, SE multiplications): each
inbound path has its own field; the output's field is their union, the most conservative choice
(Araujo et al., section "Handling multi-path networks"). When the paths agree on the center (the
usual case: a residual branch and its identity shortcut), the union is simply the largest field.
When they do not (e.g. a strided 1x1 shortcut next to a strided 3x3 branch with asymmetric "same"
padding), the union spans both, and the layer is reported as misaligned in
`ReceptiveFields.misaligned`.

Global operations (global pooling, Flatten and Reshape over a spatial map) make each output depend
on the whole input: such outputs are marked `is_global`. A path through a global operation that is
merged back into a spatial map (the gate of squeeze-and-excitation) makes every output depend on
the whole image, but only through a per-channel scale; the field reported is then the one of the
spatial paths, and `global_context` is set. Upsampling and transposed convolutions are handled
approximately (nearest neighbour: the input field; bilinear: one more input pixel; jump divided by
the factor). A layer of an unknown kind is assumed to act pixel by pixel, and listed in
`ReceptiveFields.assumed_pointwise`.
"""

from __future__ import annotations

import dataclasses
import math

from keras import layers

from kerascnn.analysis.graph import walk

_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.DepthwiseConv1D,
         layers.DepthwiseConv2D, layers.SeparableConv1D, layers.SeparableConv2D)
_TRANSPOSE = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_POOL = (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
         layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D)
_GLOBAL = (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
           layers.GlobalAveragePooling3D, layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D,
           layers.GlobalMaxPooling3D)
_PADDING = (layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D)
_CROPPING = (layers.Cropping1D, layers.Cropping2D, layers.Cropping3D)
_UPSAMPLING = (layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D, layers.Resizing)
_MERGE = (layers.Add, layers.Subtract, layers.Multiply, layers.Average, layers.Maximum,
          layers.Minimum, layers.Concatenate)
# Layers that act on each pixel on its own (or on its channels only).
_POINTWISE = (
    layers.InputLayer, layers.BatchNormalization, layers.LayerNormalization, layers.Activation,
    layers.ReLU, layers.LeakyReLU, layers.ELU, layers.PReLU, layers.Softmax, layers.Dropout,
    layers.SpatialDropout1D, layers.SpatialDropout2D, layers.SpatialDropout3D,
    layers.GaussianDropout, layers.GaussianNoise, layers.AlphaDropout, layers.Rescaling,
    layers.Normalization, layers.Identity, layers.Dense, layers.ActivityRegularization,
    layers.Masking,
)
_EPS = 1e-9


@dataclasses.dataclass(frozen=True)
class LayerReceptiveField:
    """The receptive field of one layer call's output, per spatial axis (height, width, ...).

    Attributes:
        name: the layer call's name.
        type: the layer's class name.
        size: input pixels one output pixel sees, per axis; None when `is_global`.
        jump: effective stride, per axis; None when `is_global`.
        start: center of the first output pixel's field in input pixel coordinates, per axis;
            None when `is_global`.
        is_global: every output value depends on the whole input (after global pooling or
            flattening).
        aligned: False when inbound paths disagree on the field's center or jump (see the module
            docstring); the size is then their union.
        global_context: a path through a global operation joins here or upstream (SE gates).
    """

    name: str
    type: str
    size: tuple | None
    jump: tuple | None
    start: tuple | None
    is_global: bool = False
    aligned: bool = True
    global_context: bool = False


@dataclasses.dataclass(frozen=True)
class ReceptiveFields:
    """The result of `receptive_field`.

    Attributes:
        per_layer: one `LayerReceptiveField` per layer call, in execution order.
        final: the field of the last spatial (not global) layer output on the way to the model's
            first output: the "receptive field of the network".
        misaligned: names of the layers where inbound paths disagree.
        assumed_pointwise: names of layers of unknown kind, treated as pixel by pixel.
    """

    per_layer: tuple
    final: LayerReceptiveField
    misaligned: tuple = ()
    assumed_pointwise: tuple = ()

    def __getitem__(self, name: str) -> LayerReceptiveField:
        for entry in self.per_layer:
            if entry.name == name:
                return entry
        raise KeyError(f"No layer named {name!r}.")


@dataclasses.dataclass(frozen=True)
class _Field:
    size: tuple
    jump: tuple
    start: tuple
    is_global: bool = False
    aligned: bool = True
    global_context: bool = False


def receptive_field(model) -> ReceptiveFields:
    """Computes the receptive field (size, jump, start) of every layer output.

    Args:
        model: a functional Keras model on images (or 1-D/3-D signals), channels last or first.

    Returns:
        A `ReceptiveFields`: `per_layer`, lookup by layer name, the network's `final` field, and
        the layers where paths disagree or the kind of layer is unknown.

    Raises:
        ValueError: for a model whose input has no spatial dimensions.

    Example:
        >>> fields = receptive_field(kerascnn.build("vgg16"))
        >>> fields["stage5_block3_pool"].size
        (212, 212)
    """
    graph = walk(model)
    fields: dict[int, _Field] = {}
    per_layer, misaligned, pointwise = [], [], []
    for node in graph.nodes:
        if node.is_input:
            axes = len(node.output_shape) - 2
            if axes < 1:
                raise ValueError("A receptive field needs an input with spatial dimensions "
                                 f"(batch, ..., channels). Received: input {node.name!r} of shape "
                                 f"{node.output_shape}")
            field = _Field((1,) * axes, (1.0,) * axes, (0.0,) * axes)
        else:
            inbound = [fields[ref.node] for ref in node.inputs]
            field, note = _layer_field(node, inbound)
            if note == "misaligned":
                misaligned.append(node.name)
            elif note == "unknown":
                pointwise.append(node.name)
        fields[node.position] = field
        per_layer.append(_public(node, field))
    final = _final(graph, fields, per_layer)
    return ReceptiveFields(per_layer=tuple(per_layer), final=final, misaligned=tuple(misaligned),
                           assumed_pointwise=tuple(pointwise))


def _public(node, field: _Field) -> LayerReceptiveField:
    if field.is_global:
        return LayerReceptiveField(node.name, node.type_name, None, None, None, True, field.aligned,
                                   field.global_context)
    return LayerReceptiveField(node.name, node.type_name, tuple(int(round(s)) for s in field.size),
                               tuple(_number(j) for j in field.jump),
                               tuple(_number(s) for s in field.start), False, field.aligned,
                               field.global_context)


def _number(value: float):
    return int(round(value)) if abs(value - round(value)) < _EPS else value


def _final(graph, fields, per_layer) -> LayerReceptiveField:
    """The last non-global field on the way back from the first output."""
    position = graph.outputs[0].node
    while fields[position].is_global:
        node = graph.nodes[position]
        spatial = [ref.node for ref in node.inputs if not fields[ref.node].is_global]
        candidates = spatial or [ref.node for ref in node.inputs]
        if not candidates:
            break
        position = max(candidates)
    return per_layer[position]


def _as_tuple(value, axes):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * axes


def _spatial(shape, layer):
    dims = tuple(shape)[1:]
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    return dims[1:] if channels_first else dims[:-1]


def _layer_field(node, inbound) -> tuple:
    """(field, note) where note is None, "misaligned" or "unknown"."""
    layer = node.layer
    if not node.is_layer:
        return _merge(inbound)[0], "unknown"
    if isinstance(layer, _MERGE):
        return _merge(inbound)
    field = inbound[0]
    if isinstance(layer, _GLOBAL):
        return dataclasses.replace(field, is_global=True), None
    if isinstance(layer, (layers.Flatten, layers.Reshape, layers.Permute)):
        spatial = _spatial(node.input_shape, layer)
        if field.is_global or all(d == 1 for d in spatial):
            return field, None
        return dataclasses.replace(field, is_global=True), None
    if field.is_global or isinstance(layer, _POINTWISE):
        return field, None
    axes = len(field.size)
    in_sizes = _spatial(node.input_shape, layer)
    if isinstance(layer, _CONV) or (_looks_like_conv(layer) and not isinstance(layer, _TRANSPOSE)):
        return _window(field, _as_tuple(layer.kernel_size, axes), _as_tuple(layer.strides, axes),
                       _as_tuple(getattr(layer, "dilation_rate", 1), axes), layer.padding,
                       in_sizes), None
    if isinstance(layer, _POOL):
        return _window(field, _as_tuple(layer.pool_size, axes), _as_tuple(layer.strides, axes),
                       (1,) * axes, layer.padding, in_sizes), None
    if isinstance(layer, _PADDING):
        before = _pad_before(layer.padding, axes)
        return dataclasses.replace(field, start=tuple(
            s - p * j for s, p, j in zip(field.start, before, field.jump))), None
    if isinstance(layer, _CROPPING):
        before = _pad_before(layer.cropping, axes)
        return dataclasses.replace(field, start=tuple(
            s + c * j for s, c, j in zip(field.start, before, field.jump))), None
    if isinstance(layer, _UPSAMPLING + _TRANSPOSE):
        return _upsample(node, field, in_sizes), None
    from kerascnn.layers.lrn import LocalResponseNormalization  # channels only

    if isinstance(layer, LocalResponseNormalization):
        return field, None
    return field, "unknown"


def _looks_like_conv(layer) -> bool:
    """A custom layer with a convolution's attributes (e.g. a deformable convolution) is treated
    as a convolution with its nominal kernel."""
    return all(hasattr(layer, a) for a in ("kernel_size", "strides", "padding"))


def _pad_before(padding, axes):
    """The leading padding (or cropping) per axis from Keras' ZeroPadding/Cropping attribute."""
    if isinstance(padding, int):
        return (padding,) * axes
    values = []
    for p in padding:
        values.append(p if isinstance(p, int) else p[0])
    if len(values) == 2 and axes == 1:  # ZeroPadding1D stores (left, right)
        return (values[0],)
    return tuple(values)


def _same_pad_before(size, kernel, stride):
    """TensorFlow's SAME padding puts the smaller half before: floor(total / 2)."""
    if size is None:
        return (kernel - 1) // 2  # exact at stride 1; otherwise the symmetric assumption
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2


def _window(field, kernels, strides, dilations, padding, in_sizes) -> _Field:
    size, jump, start = [], [], []
    for r, j, s0, k, s, d, n in zip(field.size, field.jump, field.start, kernels, strides,
                                    dilations, in_sizes):
        effective = d * (k - 1) + 1
        if padding == "same":
            before = _same_pad_before(n, effective, s)
        elif padding == "causal":
            before = effective - 1
        else:
            before = 0
        size.append(r + (effective - 1) * j)
        jump.append(j * s)
        start.append(s0 + ((effective - 1) / 2 - before) * j)
    return dataclasses.replace(field, size=tuple(size), jump=tuple(jump), start=tuple(start))


def _upsample(node, field, in_sizes) -> _Field:
    out_sizes = _spatial(node.output_shape, node.layer)
    layer = node.layer
    if isinstance(layer, _TRANSPOSE):
        factors = _as_tuple(layer.strides, len(field.size))
        kernels = _as_tuple(layer.kernel_size, len(field.size))
        extra = [math.ceil(k / f) - 1 for k, f in zip(kernels, factors)]
    else:
        if isinstance(layer, layers.Resizing):
            factors = tuple((o / i) if (o and i) else 1.0 for o, i in zip(out_sizes, in_sizes))
        else:
            factors = _as_tuple(getattr(layer, "size", 2), len(field.size))
        interpolation = getattr(layer, "interpolation", "nearest")
        extra = [0 if interpolation == "nearest" else 1] * len(field.size)
    size = tuple(r + e * j for r, e, j in zip(field.size, extra, field.jump))
    jump = tuple(j / f for j, f in zip(field.jump, factors))
    # Output pixel 0 sits at input coordinate (0.5 / f - 0.5) (half-pixel centers).
    start = tuple(s0 + (0.5 / f - 0.5) * j for s0, f, j in zip(field.start, factors, field.jump))
    return dataclasses.replace(field, size=size, jump=jump, start=start)


def _merge(inbound) -> tuple:
    """The union of the inbound paths' fields; (field, "misaligned" or None)."""
    spatial = [f for f in inbound if not f.is_global]
    context = any(f.global_context or f.is_global for f in inbound) and bool(spatial)
    if not spatial:
        context = any(f.global_context for f in inbound)
        return dataclasses.replace(inbound[0], global_context=context), None
    disagree = False
    size, jump, start = [], [], []
    for axis in range(len(spatial[0].size)):
        lows = [f.start[axis] - (f.size[axis] - 1) * 0.5 for f in spatial]
        highs = [f.start[axis] + (f.size[axis] - 1) * 0.5 for f in spatial]
        jumps = [f.jump[axis] for f in spatial]
        starts = [f.start[axis] for f in spatial]
        if max(jumps) - min(jumps) > _EPS or max(starts) - min(starts) > _EPS:
            disagree = True
        low, high = min(lows), max(highs)
        size.append(high - low + 1)
        jump.append(max(jumps))
        start.append((low + high) / 2)
    aligned = all(f.aligned for f in spatial) and not disagree
    field = _Field(tuple(size), tuple(jump), tuple(start), False, aligned, context)
    return field, ("misaligned" if disagree else None)
