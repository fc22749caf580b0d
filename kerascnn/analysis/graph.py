"""The layer graph of a Keras 3 model, in execution order: the one place that reads Keras internals.

Every analysis in this package (MACs, activation memory, receptive field, path counts) walks the
same structure: the calls of the model's layers in a topological order, each with the tensors it
reads (which earlier call produced them) and the shapes it reads and writes. Keras 3 keeps that
graph in private attributes: `tensor._keras_history` names the operation and the call (`Node`)
that produced a symbolic tensor, and `operation._inbound_nodes[i]` is that call, with its
`input_tensors` and `outputs`. Only this module touches them, so that a change in Keras breaks one
file.

Conventions:

- One `GraphNode` per *call* of a layer inside the model. A layer called twice (shared weights)
  gives two nodes, the second named "name:1".
- Nested functional models (a `keras.Model` used as a layer) are expanded: their layers appear as
  "inner_model/layer", wired to the outer graph. `keras.Sequential` models are walked through
  their inputs and outputs.
- Operations that are not layers (a `keras.ops` call on a symbolic tensor) appear as nodes too; the
  analyses report them as unsupported rather than guess.
- The order is Keras' own execution order (`model.operations`, by decreasing depth), restricted to
  a valid topological order when layers are shared.
"""

from __future__ import annotations

import dataclasses
import heapq

import keras

# Layers with a kernel are the "weight layers" that papers count when they give a depth
# (VGG-16: 13 convolutions + 3 fully connected; ResNet-50; GoogLeNet's 22 layers).
_KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "pointwise_kernel")


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """A tensor of the graph: output `index` of the node at position `node` of `Graph.nodes`."""

    node: int
    index: int = 0


@dataclasses.dataclass(eq=False)
class GraphNode:
    """One call of a layer (or other operation) in a model.

    Attributes:
        position: index in `Graph.nodes` (a topological order).
        name: the layer's name; "outer/inner" inside a nested model; "name:k" for the k-th extra
            call of a shared layer.
        layer: the `keras.layers.Layer` (or `keras.Operation`) that was called; None for a model
            input that no InputLayer produced.
        inputs: the tensors the call reads, in call order (a layer may read one tensor twice).
        input_shapes: their shapes, batch dimension included (usually None).
        output_shapes: the shapes of the tensors the call produces.
        consumers: positions of the nodes that read any output of this node (each listed once).
    """

    position: int
    name: str
    layer: object
    inputs: tuple
    input_shapes: tuple
    output_shapes: tuple
    consumers: list = dataclasses.field(default_factory=list)

    @property
    def type_name(self) -> str:
        """The class name of the layer, e.g. "Conv2D"; "Input" for a bare input."""
        return "Input" if self.layer is None else type(self.layer).__name__

    @property
    def is_input(self) -> bool:
        """True for a model input (an InputLayer or a bare input tensor)."""
        return not self.inputs

    @property
    def is_layer(self) -> bool:
        """False for operations that are not `keras.layers.Layer`s (raw `keras.ops` calls)."""
        return self.layer is None or isinstance(self.layer, keras.layers.Layer)

    @property
    def output_shape(self) -> tuple:
        """The shape of the first (usually only) output."""
        return self.output_shapes[0]

    @property
    def input_shape(self) -> tuple:
        """The shape of the first input (an input node has none: its output shape is returned)."""
        return self.input_shapes[0] if self.input_shapes else self.output_shapes[0]


@dataclasses.dataclass(frozen=True)
class Graph:
    """A model's layer calls in topological order.

    Attributes:
        nodes: the calls, each reading only tensors of earlier nodes.
        inputs: the model's input tensors.
        outputs: the model's output tensors (flattened, in `model.outputs` order).
    """

    nodes: tuple
    inputs: tuple
    outputs: tuple

    def __getitem__(self, name: str) -> GraphNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"No layer named {name!r} in the graph.")

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)


def is_weight_layer(layer) -> bool:
    """True for layers with a kernel: convolutions (of every kind) and fully connected layers.

    This is what "depth" counts in the papers. BatchNormalization, PReLU and other layers with
    per-channel parameters only are not weight layers.
    """
    return layer is not None and any(getattr(layer, a, None) is not None for a in _KERNEL_ATTRIBUTES)


def walk(model) -> Graph:
    """The graph of a functional (or Sequential) Keras model.

    Args:
        model: a built `keras.Model` with symbolic inputs and outputs (functional, or a Sequential
            model that knows its input shape).

    Returns:
        A `Graph` whose nodes are in an order in which the model can run.

    Raises:
        ValueError: for a model without a symbolic graph (a subclassed model, or a Sequential
            model that was never given an input shape).

    Example:
        >>> graph = walk(kerascnn.build("resnet18"))
        >>> graph["stage1_block1_add"].inputs
    """
    if not isinstance(model, keras.Model):
        raise ValueError("`model` must be a keras.Model. "
                         f"Received: model of type {type(model).__name__}")
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs or not all(_history(t) for t in outputs):
        raise ValueError(
            "The analysis needs a functional model (or a Sequential model built with an input "
            f"shape): its layer graph cannot be read from a subclassed model. Received: "
            f"{type(model).__name__} {getattr(model, 'name', '')!r}")
    builder = _GraphBuilder()
    input_refs = [builder.add_input(t) for t in inputs]
    output_refs = builder.expand(model, inputs, input_refs, outputs, prefix="")
    for node in builder.nodes:
        for producer in sorted({ref.node for ref in node.inputs}):
            builder.nodes[producer].consumers.append(node.position)
    return Graph(nodes=tuple(builder.nodes), inputs=tuple(input_refs), outputs=tuple(output_refs))


def _history(tensor):
    return getattr(tensor, "_keras_history", None)


def _is_functional(operation) -> bool:
    """A nested model whose own graph can be expanded."""
    if not isinstance(operation, keras.Model):
        return False
    try:
        return bool(operation.inputs) and bool(operation.outputs)
    except (AttributeError, ValueError):
        return False


class _GraphBuilder:
    def __init__(self):
        self.nodes: list[GraphNode] = []
        self.call_counts: dict[str, int] = {}

    def _append(self, name, layer, inputs, input_shapes, output_shapes) -> int:
        position = len(self.nodes)
        self.nodes.append(GraphNode(position=position, name=name, layer=layer, inputs=tuple(inputs),
                                    input_shapes=tuple(input_shapes),
                                    output_shapes=tuple(output_shapes)))
        return position

    def _unique(self, name: str) -> str:
        count = self.call_counts.get(name, 0)
        self.call_counts[name] = count + 1
        return name if count == 0 else f"{name}:{count}"

    def add_input(self, tensor) -> TensorRef:
        history = _history(tensor)
        operation = history.operation if history else None
        if operation is not None and not isinstance(operation, keras.layers.InputLayer):
            operation = None  # the model starts from an intermediate tensor: a bare input
        name = operation.name if operation is not None else (getattr(tensor, "name", None) or "input")
        position = self._append(self._unique(name), operation, (), (), (_shape(tensor),))
        return TensorRef(position, 0)

    def expand(self, model, inputs, input_refs, outputs, prefix) -> list:
        """Adds the calls of `model` that lead from `inputs` (already mapped to `input_refs`) to
        `outputs`; returns the refs of `outputs`."""
        tensor_refs = {id(t): ref for t, ref in zip(inputs, input_refs)}
        calls = _ordered_calls(model, inputs, outputs)
        for call in calls:
            operation = call.operation
            call_inputs = list(call.input_tensors)
            missing = [t for t in call_inputs if id(t) not in tensor_refs]
            if missing:
                raise ValueError(f"Graph disconnected at layer {operation.name!r}: an input of it "
                                 "is not computed from the model's inputs.")
            refs = [tensor_refs[id(t)] for t in call_inputs]
            if _is_functional(operation):
                inner_outputs = self.expand(operation, list(operation.inputs), refs,
                                            list(operation.outputs), prefix=f"{prefix}{operation.name}/")
                for t, ref in zip(call.outputs, inner_outputs):
                    tensor_refs[id(t)] = ref
                continue
            position = self._append(self._unique(prefix + operation.name), operation, refs,
                                    [_shape(t) for t in call_inputs],
                                    [_shape(t) for t in call.outputs])
            for i, t in enumerate(call.outputs):
                tensor_refs[id(t)] = TensorRef(position, i)
        return [tensor_refs[id(t)] for t in outputs]


def _shape(tensor) -> tuple:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def _ordered_calls(model, inputs, outputs) -> list:
    """The calls (Keras `Node`s) between `inputs` and `outputs`, in a topological order that
    follows `model.operations` (Keras' execution order) wherever it can. The calls that produced
    `inputs` are not included: the caller has mapped those tensors already."""
    input_ids = {id(t) for t in inputs}

    def producer(tensor):
        history = _history(tensor)
        if id(tensor) in input_ids or history is None or history.operation is None:
            return None
        return history.operation._inbound_nodes[history.node_index]

    calls, parents = {}, {}
    stack = [call for call in map(producer, outputs) if call is not None]
    while stack:
        call = stack.pop()
        if id(call) in calls:
            continue
        calls[id(call)] = call
        parents[id(call)] = set()
        for tensor in call.input_tensors:
            parent = producer(tensor)
            if parent is not None:
                parents[id(call)].add(id(parent))
                stack.append(parent)
    children = {key: [] for key in calls}
    for key, ps in parents.items():
        for p in ps:
            children[p].append(key)
    indegree = {key: len(ps) for key, ps in parents.items()}
    rank = _operation_rank(model)

    def priority(key):
        call = calls[key]
        op = call.operation
        return (rank.get(id(op), len(rank)), op._inbound_nodes.index(call), key)

    heap = [priority(k) for k, d in indegree.items() if d == 0]
    heapq.heapify(heap)
    ordered = []
    while heap:
        *_, key = heapq.heappop(heap)
        ordered.append(calls[key])
        for child in children[key]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(heap, priority(child))
    return ordered


def _operation_rank(model) -> dict:
    operations = getattr(model, "operations", None)
    if operations is None:  # keras.Sequential keeps its graph in a functional twin
        functional = getattr(model, "_functional", None)
        operations = getattr(functional, "operations", None) or list(getattr(model, "layers", []))
    return {id(op): i for i, op in enumerate(operations)}


def count_paths(model) -> int:
    """The number of distinct input-to-output paths through the model's layer graph.

    Paths are counted over the DAG of layer calls: a node is reached by the sum of the paths of
    the tensors it reads (a tensor read twice counts twice), a model input starts one path, and
    the result sums over the outputs. A residual block doubles the count (shortcut or residual
    branch), so a network of n residual blocks has 2**n paths (Veit et al., 2016, "Residual
    Networks Behave Like Ensembles of Relatively Shallow Networks",
    https://arxiv.org/abs/1605.06431), and a plain network has 1.

    A branch that multiplies by zero carries no signal and starts no paths: a `Rescaling` layer
    with scale 0 and offset 0 contributes 0 paths. This is the zero-channel half of the CIFAR
    ResNets' "option A" shortcut (subsample, then concatenate with zeros), which is one path, not
    two. Squeeze-and-excitation gates are real paths (the gate depends on the input), so an SE
    block's multiplication doubles the count like an addition.

    Args:
        model: a functional Keras model.

    Returns:
        The number of paths (a Python int, exact however large).

    Example:
        >>> count_paths(kerascnn.build("resnet20_cifar"))
        512
    """
    graph = walk(model)
    paths = [0] * len(graph.nodes)
    for node in graph.nodes:
        if node.is_input:
            paths[node.position] = 1
        elif _is_zero_branch(node.layer):
            paths[node.position] = 0
        else:
            paths[node.position] = sum(paths[ref.node] for ref in node.inputs)
    return sum(paths[ref.node] for ref in graph.outputs)


def _is_zero_branch(layer) -> bool:
    return (isinstance(layer, keras.layers.Rescaling) and _is_zero(layer.scale)
            and _is_zero(layer.offset))


def _is_zero(value) -> bool:
    try:
        return all(float(v) == 0.0 for v in (value if isinstance(value, (list, tuple)) else [value]))
    except (TypeError, ValueError):
        return False


def depth(model) -> int:
    """The largest number of weight layers (convolutions, fully connected) on any input-to-output
    path: the "depth" papers give (VGG-16: 16, ResNet-50: 50, GoogLeNet: 22, MobileNet: 28).

    Projection shortcuts are not counted because they are never on the longest path; the two 1x1
    convolutions of a squeeze-and-excitation gate are on it, so an SE network is deeper by two per
    SE block than its plain counterpart.

    Args:
        model: a functional Keras model.

    Returns:
        The depth in weight layers.
    """
    graph = walk(model)
    longest = [0] * len(graph.nodes)
    for node in graph.nodes:
        before = max((longest[ref.node] for ref in node.inputs), default=0)
        longest[node.position] = before + (1 if is_weight_layer(node.layer) else 0)
    return max(longest[ref.node] for ref in graph.outputs)


def weight_layer_count(model) -> int:
    """The number of weight-layer calls in the model (every convolution and fully connected layer,
    projection shortcuts and SE convolutions included)."""
    return sum(1 for node in walk(model).nodes if is_weight_layer(node.layer))
