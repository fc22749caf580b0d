"""Activation memory of inference: the sum of every layer's output and the peak of live tensors.

Conventions (stated so that the numbers can be checked by hand):

- Every layer call's output is a separate buffer, the model's input included (the InputLayer's
  output is the input image). No operation is assumed to work in place: a ReLU, a BatchNormalization
  or an inference-time Dropout gets a buffer of its own, as in an eager framework without a memory
  planner. Weights are not activations and are not counted.
- The layers run one at a time in the graph's execution order (`kerascnn.analysis.graph.walk`, i.e.
  Keras' own order). A tensor is live from the call that produces it until the last call that
  reads it has run; the model's outputs stay live to the end. While a layer runs, its inputs and
  its output are live together, so the peak of a plain chain is the largest sum of one layer's
  input and output.
- Bytes are elements x batch_size x the size of `dtype` (float32: 4, float16/bfloat16: 2, int8: 1).

A runtime with a memory planner (TFLite's arena, XLA) reuses buffers and fuses conv + BN + ReLU, so
its peak is lower; the peak here is the one of the unfused graph, a consistent basis for comparing
architectures.
"""

from __future__ import annotations

import dataclasses
import math

from kerascnn.analysis.graph import walk

DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int16": 2,
               "int8": 1, "uint8": 1}


@dataclasses.dataclass(frozen=True)
class LayerActivation:
    """One layer call's output: name, shape (batch dimension included) and size in bytes."""

    name: str
    shape: tuple
    bytes: int


@dataclasses.dataclass(frozen=True)
class ActivationMemory:
    """The result of `activation_memory`.

    Attributes:
        total_bytes: the sum of every layer call's output (and the input).
        peak_bytes: the largest total of live tensors while one layer runs.
        peak_layer: the layer running at that moment.
        peak_live: names of the layers whose outputs are live at the peak.
        per_layer: one `LayerActivation` per layer call, in execution order.
        batch_size: the batch size the sizes are for.
        dtype: the activation data type.
    """

    total_bytes: int
    peak_bytes: int
    peak_layer: str
    peak_live: tuple
    per_layer: tuple
    batch_size: int
    dtype: str

    @property
    def total_mib(self) -> float:
        """`total_bytes` in MiB (2**20 bytes)."""
        return self.total_bytes / 2**20

    @property
    def peak_mib(self) -> float:
        """`peak_bytes` in MiB (2**20 bytes)."""
        return self.peak_bytes / 2**20

    @property
    def largest(self) -> LayerActivation:
        """The largest single layer output."""
        return max(self.per_layer, key=lambda entry: entry.bytes)


def activation_memory(model, batch_size: int = 1, dtype: str = "float32") -> ActivationMemory:
    """Measures the activation memory of one inference pass (see the module docstring).

    Args:
        model: a functional Keras model with known input size.
        batch_size: examples per batch (a positive integer).
        dtype: activation type, one of `DTYPE_BYTES` ("float32", "float16", "int8", ...).

    Returns:
        An `ActivationMemory` with the total, the peak, where the peak occurs and the size of
        every layer output.

    Raises:
        ValueError: for a bad `batch_size` or `dtype`, or a layer output of unknown size.

    Example:
        >>> memory = activation_memory(kerascnn.build("vgg16"))
        >>> memory.peak_layer, round(memory.peak_mib, 1)
        ('stage1_block1_relu', 24.5)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    key = str(getattr(dtype, "name", dtype))
    if key not in DTYPE_BYTES:
        raise ValueError(f"`dtype` must be one of {sorted(DTYPE_BYTES)}. Received: dtype={dtype!r}")
    itemsize = DTYPE_BYTES[key]
    graph = walk(model)
    sizes = {}  # (node, output index) -> bytes
    per_layer = []
    for node in graph.nodes:
        node_bytes = 0
        for i, shape in enumerate(node.output_shapes):
            dims = shape[1:]
            if any(d is None for d in dims):
                raise ValueError(f"Activation memory needs known shapes, but layer {node.name!r} "
                                 f"outputs {shape}. Build the model with a fixed input size, e.g. "
                                 "input_shape=(224, 224, 3).")
            sizes[(node.position, i)] = math.prod(dims) * batch_size * itemsize
            node_bytes += sizes[(node.position, i)]
        shapes = tuple((batch_size, *s[1:]) for s in node.output_shapes)
        per_layer.append(LayerActivation(node.name, shapes[0] if len(shapes) == 1 else shapes,
                                         node_bytes))

    end = len(graph.nodes)
    last_use = {tensor: tensor[0] for tensor in sizes}  # unread tensors die where they are born
    for node in graph.nodes:
        for ref in node.inputs:
            last_use[(ref.node, ref.index)] = max(last_use[(ref.node, ref.index)], node.position)
    for ref in graph.outputs:
        last_use[(ref.node, ref.index)] = end

    live, current = set(), 0
    peak, peak_layer, peak_live = -1, "", ()
    for node in graph.nodes:
        for i in range(len(node.output_shapes)):
            live.add((node.position, i))
            current += sizes[(node.position, i)]
        if current > peak:
            peak, peak_layer = current, node.name
            peak_live = tuple(graph.nodes[t[0]].name for t in sorted(live))
        for tensor in [t for t in live if last_use[t] <= node.position]:
            live.remove(tensor)
            current -= sizes[tensor]
    return ActivationMemory(total_bytes=sum(sizes.values()), peak_bytes=peak, peak_layer=peak_layer,
                            peak_live=tuple(dict.fromkeys(peak_live)), per_layer=tuple(per_layer),
                            batch_size=batch_size, dtype=key)
