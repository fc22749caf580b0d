"""The tfmot QAT engine: a Keras 3 model rebuilt in `tf_keras`, then quantized with
tensorflow-model-optimization (tfmot) and converted to a full-integer TFLite model.

tfmot 0.8 quantizes Keras 2 (`tf_keras`) models only; it rejects Keras 3 models. This module
rebuilds a Keras 3 functional model layer by layer as the equivalent `tf_keras` functional model
(same layer names and configurations, weights copied), checks that both give the same outputs, and
hands the twin to `tfmot.quantization.keras.quantize_model`. Training and TFLite conversion then
work on the `tf_keras` twin. Where tfmot cannot quantize a layer (squeeze-and-excitation's
`Multiply`, hard-swish, `Rescaling`, BatchNormalization not after a convolution, ...) the error is
an `UnsupportedLayerError` that names the layer and tfmot's reason; the native engine
(`engine="native"`) covers those models.

Translation rules (Keras 3 -> tf_keras):

- Configurations are copied key by key. Serialized initializers, regularizers and constraints are
  rewritten from Keras 3's `{"module", "class_name", "config", "registered_name"}` form to tf_keras's
  `{"class_name", "config"}` form, keeping only the arguments tf_keras accepts; dtype policies
  become their names. A Keras 3-only argument with a non-default value (e.g. a Dense `lora_rank`)
  is an error instead of being dropped silently. Initializers that tf_keras cannot build fall back
  to its defaults: the weights are copied afterwards, so they never show.
- Activations tf_keras lacks or defines differently get exact replacements: "silu" -> "swish";
  "hard_silu"/"hard_swish" -> x * relu6(x + 3) / 6; "hard_sigmoid" -> relu6(x + 3) / 6 (tf_keras's
  own "hard_sigmoid" is clip(0.2 x + 0.5, 0, 1), a different function); "leaky_relu" keeps Keras 3's
  slope 0.2. tfmot quantizes few activations inside a Conv2D/Dense (linear, relu, softmax,
  sigmoid, tanh, gelu, swish), so any other activation argument of such a layer is moved into its
  own layer right after it, named `{layer}_{activation}`: `Conv2D(activation="relu6")` becomes a
  linear Conv2D and a `ReLU(max_value=6)`, which tfmot supports and TFLite fuses back into the
  convolution.
- Nested functional or Sequential models (a backbone used as a layer) are flattened into the outer
  graph under their own layer names; a name clash is an error. Shared layers stay shared. Raw
  `keras.ops` calls on symbolic tensors and custom layers are rejected with `UnsupportedLayerError`.

Process isolation: importing tfmot sets `os.environ["TF_USE_LEGACY_KERAS"] = "1"` for the whole
process, and TensorFlow reads that variable lazily the first time `tf.keras` (and its aliases
`tf.losses`, `tf.optimizers`, `tf.compat.v1.keras`, ...) is touched. To keep the rest of kerascnn
(and the user's code) on Keras 3, tf_keras and tfmot are imported only inside this module's
functions, never at import time; before the import every still-unresolved `tf.keras` alias is
resolved under the current environment (so it keeps pointing at Keras 3), and right after the
import `TF_USE_LEGACY_KERAS` is restored to its previous value (or removed). Every public
function re-applies that restore on exit in case tfmot imports something lazily.

Install the optional dependencies with ``pip install kerascnn[qat]`` (tf-keras and
tensorflow-model-optimization).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import re
import threading
import time
import warnings

import numpy as np

_ENV = "TF_USE_LEGACY_KERAS"
# tfmot's default 8-bit registry (not exported by its public API): which layers it can quantize.
_REGISTRY_MODULE = ("tensorflow_model_optimization.python.core.quantization.keras.default_8bit."
                    "default_8bit_quantize_registry")
_IMPORT_LOCK = threading.Lock()
_MODULES = {}

# Activations tfmot's QuantizeAwareActivation handles inside a Conv2D/Dense/DepthwiseConv2D.
_TFMOT_IN_LAYER_ACTIVATIONS = ("linear", "relu", "softmax", "sigmoid", "tanh", "gelu", "swish")
# Keras 3 activation names that tf_keras resolves to the same function under the same name.
_SAME_ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "elu", "selu",
                     "softplus", "softsign", "exponential", "gelu", "mish", "swish")
# Base-layer keyword arguments tf_keras accepts besides a layer's own __init__ parameters.
_BASE_KWARGS = ("name", "trainable", "dtype", "dynamic", "input_dim", "input_shape",
                "batch_input_shape", "batch_size", "weights", "activity_regularizer", "autocast")
_SERIALIZED_KEYS = {"kernel_initializer", "bias_initializer", "depthwise_initializer",
                    "pointwise_initializer", "beta_initializer", "gamma_initializer",
                    "moving_mean_initializer", "moving_variance_initializer",
                    "kernel_regularizer", "bias_regularizer", "depthwise_regularizer",
                    "pointwise_regularizer", "beta_regularizer", "gamma_regularizer",
                    "activity_regularizer", "kernel_constraint", "bias_constraint",
                    "depthwise_constraint", "pointwise_constraint", "beta_constraint",
                    "gamma_constraint"}
# Configuration keys that the two APIs spell differently, per layer class.
_RENAMED_KEYS = {"LeakyReLU": {"negative_slope": "alpha"}}
# Keras 3 layer classes with a tf_keras twin of the same name and (after key mapping) the same
# configuration and weight order.
SUPPORTED_LAYERS = ("InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D",
                    "Conv2DTranspose", "Dense", "BatchNormalization", "ReLU", "LeakyReLU",
                    "Activation", "Softmax", "Add", "Subtract", "Multiply", "Average", "Maximum",
                    "Minimum", "Concatenate", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
                    "AveragePooling2D", "MaxPooling2D", "ZeroPadding2D", "Cropping2D",
                    "UpSampling2D", "Dropout", "SpatialDropout2D", "Flatten", "Reshape", "Permute",
                    "Rescaling", "Normalization", "Identity")

NATIVE_HINT = ('Use the native engine instead: kerascnn.quantization.qat(model, ..., '
               'engine="native"), which quantizes Keras 3 layers directly.')


class UnsupportedLayerError(ValueError):
    """A layer that the tfmot engine cannot translate to tf_keras or that tfmot cannot quantize.

    Attributes:
        layer_name: the layer's name in the Keras 3 model.
        layer_class: the layer's class name.
        reason: why it is not supported.
        others: (name, class) of further layers that would be rejected for the same model.
    """

    def __init__(self, layer_name: str, layer_class: str, reason: str, *, others=()):
        self.layer_name, self.layer_class, self.reason = layer_name, layer_class, reason
        self.others = list(others)
        more = ""
        if self.others:
            shown = ", ".join(f"{n!r} ({c})" for n, c in self.others[:8])
            extra = f" and {len(self.others) - 8} more" if len(self.others) > 8 else ""
            more = f" Other layers tfmot will also reject: {shown}{extra}."
        super().__init__(f"Layer {layer_name!r} ({layer_class}) is not supported by the tfmot "
                         f"QAT engine: {reason}.{more} {NATIVE_HINT}")


class TranslationMismatchError(ValueError):
    """The tf_keras twin does not reproduce the Keras 3 model's outputs.

    Attributes:
        max_abs_diff: the largest absolute output difference.
        layer: the first layer off by more than 1e-4 of its scale, or None.
        rounding_only: True when no layer is: float32 rounding amplified by a deep network.
    """


# --- Lazy, environment-safe imports -------------------------------------------------------------

@contextlib.contextmanager
def _keep_env():
    """Restores TF_USE_LEGACY_KERAS on exit: tfmot sets it to "1" whenever its compat module runs."""
    previous = os.environ.get(_ENV)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = previous


def _pin_tf_keras_aliases():
    """Resolves every `tf.keras`-style lazy alias that is still unresolved, under the current
    environment, so that tfmot's TF_USE_LEGACY_KERAS=1 cannot route it to tf_keras later.

    TensorFlow decides Keras 3 vs tf_keras per alias on first attribute access; a process that
    imports tensorflow, then this engine, then touches `tf.keras` would otherwise get tf_keras.
    Resolving only picks the package name; nothing is imported.
    """
    import sys

    try:
        from tensorflow.python.util.lazy_loader import KerasLazyLoader
    except ImportError:  # a TensorFlow without lazy Keras aliases has nothing to pin
        return
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("tensorflow") or module is None:
            continue
        try:
            values = list(vars(module).values())
        except TypeError:
            continue
        for value in values:
            if type(value) is KerasLazyLoader and not value.__dict__.get("_tfll_initialized", True):
                value._initialize()


def _backends():
    """Imports tf_keras and tfmot once, leaving TF_USE_LEGACY_KERAS as it was.

    Returns:
        (tf_keras module, tensorflow_model_optimization module).

    Raises:
        ImportError: tf-keras or tensorflow-model-optimization is not installed.
    """
    if _MODULES:
        return _MODULES["tf_keras"], _MODULES["tfmot"]
    with _IMPORT_LOCK:
        if not _MODULES:
            import tensorflow  # noqa: F401  (its lazy Keras aliases must exist to be pinned)

            _pin_tf_keras_aliases()
            with _keep_env():
                try:
                    import tf_keras
                    import tensorflow_model_optimization as tfmot
                    # Import every tfmot submodule this engine uses now, inside the restore:
                    # tfmot's compat module sets the variable when it is first imported.
                    tfmot.quantization.keras.quantize_model  # noqa: B018
                    importlib.import_module(_REGISTRY_MODULE)
                except ImportError as err:
                    raise ImportError(
                        "The tfmot QAT engine needs the tf-keras and tensorflow-model-optimization "
                        f"packages ({err}). Install them with: pip install kerascnn[qat]  "
                        '(or use engine="native", which needs neither).') from err
            _MODULES.update(tf_keras=tf_keras, tfmot=tfmot)
    return _MODULES["tf_keras"], _MODULES["tfmot"]


def available() -> bool:
    """Whether tf-keras and tensorflow-model-optimization can be imported.

    Returns:
        True when the tfmot engine can run. Checking does not import tfmot (it only looks the
        packages up), so it never touches TF_USE_LEGACY_KERAS.
    """
    if _MODULES:
        return True
    return all(importlib.util.find_spec(name) is not None
               for name in ("tf_keras", "tensorflow_model_optimization"))


# --- Keras 3 -> tf_keras translation --------------------------------------------------------------

def _activation_functions():
    """Exact tf_keras stand-ins for Keras 3 activations that tf_keras lacks or defines differently.

    They are plain functions named like the Keras 3 activation so that error messages (tfmot's
    included) show the familiar name.
    """
    import tensorflow as tf

    def hard_sigmoid(x):
        return tf.nn.relu6(x + 3.0) / 6.0

    def hard_swish(x):
        return x * (tf.nn.relu6(x + 3.0) / 6.0)

    def leaky_relu(x):
        return tf.nn.leaky_relu(x, alpha=0.2)  # Keras 3's default negative_slope

    return {"hard_sigmoid": hard_sigmoid, "hard_silu": hard_swish, "hard_swish": hard_swish,
            "leaky_relu": leaky_relu}


def _activation_name(layer, value):
    """The Keras 3 name of an activation given as a config value (string or serialized dict)."""
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("config"), str):
        # A function serialized as {"class_name": "function", "config": "<name>", ...}; names
        # outside the translation table are rejected by _tf_keras_activation.
        return value["config"]
    raise UnsupportedLayerError(layer.name, type(layer).__name__,
                                f"its activation {value!r} is not a built-in Keras activation")


def _tf_keras_activation(layer, name):
    """The tf_keras value for Keras 3 activation `name`: a name tf_keras knows, or a function."""
    name = {"silu": "swish"}.get(name, name)
    if name in _SAME_ACTIVATIONS:
        return name
    functions = _activation_functions()
    if name in functions:
        return functions[name]
    raise UnsupportedLayerError(layer.name, type(layer).__name__,
                                f"activation {name!r} has no tf_keras equivalent here")


def _accepted_kwargs(cls):
    """Constructor arguments of a tf_keras layer class, including those its base classes take
    through **kwargs (tf_keras's BatchNormalization passes `renorm` on to its base)."""
    accepted = set(_BASE_KWARGS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            accepted |= set(inspect.signature(init).parameters)
    return accepted - {"self", "args", "kwargs"}


def _is_default_like(value):
    return value is None or value is False or value == 0 or value == {} or value == []


def _serialized(tf_keras, layer, key, value):
    """Rewrites a Keras 3 serialized initializer/regularizer/constraint for tf_keras.

    Returns the tf_keras object, or None to let tf_keras use its default (initializers only).
    """
    if value is None or isinstance(value, str):
        return value
    kind = "initializers" if key.endswith("initializer") else (
        "regularizers" if key.endswith("regularizer") else "constraints")
    module = getattr(tf_keras, kind)
    class_name = value.get("class_name")
    config = dict(value.get("config") or {})
    target = getattr(module, class_name, None)
    if target is not None and inspect.isclass(target):
        accepted = set(inspect.signature(target.__init__).parameters) - {"self"}
        extra = {k: v for k, v in config.items() if k not in accepted}
        config = {k: v for k, v in config.items() if k in accepted}
        if any(not _is_default_like(v) for v in extra.values()) and kind != "initializers":
            raise UnsupportedLayerError(layer.name, type(layer).__name__,
                                        f"{key}={class_name}{extra} has no tf_keras equivalent")
    try:
        return module.get({"class_name": class_name, "config": config})
    except (ValueError, TypeError) as err:
        if kind == "initializers":
            return None  # the weights are copied over whatever the initializer produced
        raise UnsupportedLayerError(layer.name, type(layer).__name__,
                                    f"{key}={class_name} cannot be rebuilt in tf_keras ({err})") from err


def _tf_keras_config(tf_keras, layer, cls):
    """The tf_keras constructor arguments for Keras 3 `layer`, and an activation to split off.

    Returns:
        (kwargs for `cls`, None or (split activation name, tf_keras activation value)).
    """
    config = dict(layer.get_config())
    dtype = config.get("dtype")
    if isinstance(dtype, dict):  # a serialized Keras 3 DTypePolicy
        config["dtype"] = (dtype.get("config") or {}).get("name", "float32")
    for key in list(config):
        if key in _SERIALIZED_KEYS:
            converted = _serialized(tf_keras, layer, key, config[key])
            if converted is None:
                config.pop(key)
            else:
                config[key] = converted
    split = None
    if "activation" in config:
        name = _activation_name(layer, config["activation"])
        if type(layer).__name__ == "Activation":
            config["activation"] = _tf_keras_activation(layer, name)
        else:
            tfk_name = {"silu": "swish"}.get(name, name)
            if tfk_name in _TFMOT_IN_LAYER_ACTIVATIONS:
                config["activation"] = tfk_name
            else:
                # tfmot's in-layer activation quantizer knows a handful of activations; as a
                # separate layer ReLU6 is supported and the converter fuses it back.
                config["activation"] = "linear"
                split = (name, _tf_keras_activation(layer, name))
    for old_key, new_key in _RENAMED_KEYS.get(type(layer).__name__, {}).items():
        if old_key in config:
            config[new_key] = config.pop(old_key)
    accepted = _accepted_kwargs(cls)
    for key in list(config):
        if key not in accepted:
            value = config.pop(key)
            if not _is_default_like(value):
                raise UnsupportedLayerError(
                    layer.name, type(layer).__name__,
                    f"its Keras 3 argument {key}={value!r} has no tf_keras equivalent")
    return config, split


class _Translator:
    """Walks a Keras 3 functional graph and rebuilds it with tf_keras layers."""

    def __init__(self, tf_keras, model):
        self.tf_keras = tf_keras
        self.layers = {}  # id(Keras 3 layer) -> callable on tf_keras tensors
        self.pairs = []  # (Keras 3 layer, tf_keras layer) whose weights are copied
        self.names = {}  # tf_keras layer name -> Keras 3 layer it came from
        self.model_name = model.name
        self.reserved = _all_layer_names(model)  # names a split-off activation must not take
        self.split = {}  # Keras 3 layer name -> name of the tf_keras layer that ends it

    def _claim(self, name, source):
        owner = self.names.get(name)
        if owner is not None and owner is not source:
            raise ValueError(
                f"Flattening {self.model_name!r} for tf_keras gives two layers named {name!r} "
                "(a nested model reuses a name of the outer model). Rename one of them, or use "
                'engine="native".')
        self.names[name] = source

    def _unique(self, base, source):
        name, i = base, 1
        while name in self.names or name in self.reserved:
            name, i = f"{base}_{i}", i + 1
        self.names[name] = source
        return name

    def translate_layer(self, layer):
        """A callable on tf_keras tensors that does what Keras 3 `layer` does."""
        key = id(layer)
        if key in self.layers:
            return self.layers[key]
        class_name = type(layer).__name__
        is_builtin = type(layer).__module__.startswith("keras.")
        if class_name not in SUPPORTED_LAYERS or not is_builtin:
            what = "a custom layer" if not is_builtin else "a layer class"
            raise UnsupportedLayerError(
                layer.name, class_name,
                f"{what} the tfmot engine cannot rebuild in tf_keras (supported: built-in "
                f"{', '.join(SUPPORTED_LAYERS[1:])})")
        cls = getattr(self.tf_keras.layers, class_name)
        config, split = _tf_keras_config(self.tf_keras, layer, cls)
        self._claim(layer.name, layer)
        try:
            tfk_layer = cls(**config)
        except (TypeError, ValueError) as err:
            raise UnsupportedLayerError(layer.name, class_name,
                                        f"tf_keras rejects its configuration ({err})") from err
        self.pairs.append((layer, tfk_layer))
        if split is None:
            fn = tfk_layer
        else:
            act_name, act = split
            after_name = self._unique(f"{layer.name}_{act_name}", layer)
            self.split[layer.name] = after_name
            if act_name == "relu6":
                after = self.tf_keras.layers.ReLU(max_value=6.0, name=after_name)
            else:
                after = self.tf_keras.layers.Activation(act, name=after_name)

            def fn(*args, _first=tfk_layer, _after=after, **kwargs):
                return _after(_first(*args, **kwargs))
        self.layers[key] = fn
        return fn

    def run_graph(self, model, inputs):
        """Applies Keras 3 functional `model` to tf_keras tensors `inputs` (flat list)."""
        import keras

        graph = _functional_graph(model)
        tensors = {id(x): y for x, y in zip(graph.inputs, inputs)}
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                op = node.operation
                if op is None or node.is_input:
                    continue
                if any(id(x) not in tensors for x in node.input_tensors):
                    continue  # a node of another graph that shares this layer
                args, kwargs = node.arguments.fill_in(tensors)
                # Keras 3 records `training` and `mask` at build time, but the outer call's
                # training flag overrides them; tf_keras would pin an explicit training=False.
                kwargs = {k: v for k, v in kwargs.items()
                          if k not in ("training", "mask") and v is not None}
                if isinstance(op, keras.Model):
                    flat = keras.tree.flatten((args, kwargs))
                    outputs = self.run_graph(op, flat)
                elif isinstance(op, keras.layers.Layer):
                    outputs = self.translate_layer(op)(*args, **kwargs)
                else:
                    raise UnsupportedLayerError(
                        getattr(op, "name", "?"), type(op).__name__,
                        "a raw keras.ops call in the model graph; tf_keras would need a Lambda "
                        "layer, which tfmot cannot quantize")
                for x, y in zip(node.outputs, keras.tree.flatten(outputs)):
                    tensors[id(x)] = y
        missing = [x for x in graph.outputs if id(x) not in tensors]
        if missing:
            raise ValueError(f"Could not trace the outputs of {model.name!r} from its inputs.")
        return [tensors[id(x)] for x in graph.outputs]


def _all_layer_names(model):
    """Layer names of `model` and of every model nested in it."""
    import keras

    names, stack = set(), [model]
    while stack:
        for layer in stack.pop().layers:
            names.add(layer.name)
            if isinstance(layer, keras.Model):
                stack.append(layer)
    return names


def _functional_graph(model):
    """The functional graph behind a Keras 3 model (a Sequential's is built on its inputs)."""
    import keras

    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise ValueError(f"Sequential model {model.name!r} is not built: give it an Input or "
                             "call build(input_shape) first.")
        return graph
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            f"{model.name!r} is a subclassed Keras model; the tfmot engine needs a functional or "
            f'Sequential model (layer graph). {NATIVE_HINT}')
    return model


def translate_to_tf_keras(model):
    """Rebuilds a Keras 3 functional (or Sequential) model as an equivalent tf_keras model.

    Layer names, configurations and weights are kept (see the module docstring for the few
    mappings); nested models are flattened. Call `check_translation` to verify the twin.

    Args:
        model: a built Keras 3 `keras.Model` made of built-in layers.

    Returns:
        A `tf_keras.Model` with the same inputs, outputs (structure included) and weights.

    Raises:
        UnsupportedLayerError: a layer has no tf_keras twin (custom layers, raw ops, unknown
            activations, Keras 3-only arguments).
        ValueError: a subclassed or unbuilt model, or a name clash when flattening.
        ImportError: tf-keras or tensorflow-model-optimization is missing.

    Example:
        >>> model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35, classes=10)
        >>> twin = translate_to_tf_keras(model)
        >>> check_translation(model, twin)
    """
    import keras

    with _keep_env():
        tf_keras, _ = _backends()
        if not isinstance(model, keras.Model):
            raise TypeError(f"`model` must be a Keras 3 keras.Model. Received: {type(model).__name__}")
        graph = _functional_graph(model)
        translator = _Translator(tf_keras, model)
        inputs = []
        for x in graph.inputs:
            layer = x._keras_history.operation
            translator._claim(layer.name, layer)
            inputs.append(tf_keras.Input(batch_shape=tuple(x.shape), dtype=x.dtype, name=layer.name))
        outputs = translator.run_graph(model, inputs)
        struct_in = getattr(model, "_inputs_struct", None)
        struct_out = getattr(model, "_outputs_struct", None)
        packed_in = keras.tree.pack_sequence_as(struct_in, inputs) if struct_in is not None else inputs
        packed_out = keras.tree.pack_sequence_as(struct_out, outputs) if struct_out is not None else outputs
        twin = tf_keras.Model(packed_in, packed_out, name=model.name)
        # check_translation compares a split layer's Keras 3 output with its activation layer's.
        twin._kerascnn_split_layers = dict(translator.split)
        for k3_layer, tfk_layer in translator.pairs:
            source, target = k3_layer.get_weights(), tfk_layer.get_weights()
            shapes = ([np.shape(w) for w in source], [np.shape(w) for w in target])
            if shapes[0] != shapes[1]:
                raise UnsupportedLayerError(
                    k3_layer.name, type(k3_layer).__name__,
                    f"its weights {shapes[0]} do not match the tf_keras layer's {shapes[1]}")
            tfk_layer.set_weights(source)
        return twin


def _random_inputs(model, batch_size, input_size, seed):
    rng = np.random.default_rng(seed)
    arrays = []
    for x in model.inputs:
        shape = [batch_size] + [input_size if d is None else int(d) for d in x.shape[1:]]
        arrays.append(rng.uniform(-1.0, 1.0, shape).astype("float32"))
    return arrays


def check_translation(model, tf_keras_model, *, batch_size: int = 4, input_size: int = 32,
                      atol: float = 1e-5, rtol: float = 1e-5, seed: int = 0) -> float:
    """Verifies that a tf_keras twin reproduces the Keras 3 model in inference mode.

    Both models run on the same random batch (uniform in [-1, 1]); each output must agree within
    `atol + rtol * max|expected|` (the output's own scale, so logits in the hundreds are held to
    the same relative precision as probabilities). On a mismatch the layers are compared one by
    one to tell a translation bug (a layer off by more than 1e-4 of its scale) from float32
    rounding that a deep, randomly initialised network amplified (every layer within 1e-4).

    Args:
        model: the Keras 3 model.
        tf_keras_model: its twin from `translate_to_tf_keras`.
        batch_size: samples in the random batch.
        input_size: height/width used where the model's input size is unknown.
        atol: absolute tolerance.
        rtol: tolerance relative to the largest absolute value of each output.
        seed: seed of the random batch.

    Returns:
        The largest absolute difference over all outputs.

    Raises:
        TranslationMismatchError: an output differs beyond the tolerance. Its attributes
            `max_abs_diff`, `layer` (first layer off by more than 1e-4 of its scale, or None) and
            `rounding_only` (True when no layer is) say which case it is.
    """
    import keras

    with _keep_env():
        inputs = _random_inputs(model, batch_size, input_size, seed)
        x = inputs if len(inputs) > 1 else inputs[0]
        expected = [np.asarray(e) for e in keras.tree.flatten(model(x, training=False))]
        got = _flat_outputs(tf_keras_model(x, training=False))
        worst, bad = 0.0, len(expected) != len(got)
        for e, g in zip(expected, got):
            if e.shape != g.shape:
                bad = True
                continue
            diff = float(np.abs(e - g).max()) if e.size else 0.0
            worst = max(worst, diff)
            bad |= diff > atol + rtol * (float(np.abs(e).max()) if e.size else 0.0)
        if not bad:
            return worst
        layer, rel = _first_divergent_layer(model, tf_keras_model, x)
        if layer is None:
            detail = (f"every layer agrees within {rel:.2g} of its scale, so this is float32 "
                      "rounding amplified by the network, not a translation error; pass a larger "
                      "`atol` to accept it")
        else:
            detail = (f"first divergent layer: {layer} (off by {rel:.2g} of its scale). This is "
                      f"a translation bug; please report it. {NATIVE_HINT}")
        err = TranslationMismatchError(
            f"The tf_keras twin of {model.name!r} differs from the Keras 3 model by up to "
            f"{worst:.3g} (tolerance {atol:g} + {rtol:g} * max|output|); {detail}")
        err.max_abs_diff, err.layer, err.rounding_only = worst, layer, layer is None
        raise err


def _flat_outputs(outputs):
    """A tf_keras model's outputs (tensor, list or dict) as arrays, in Keras 3's flattening order."""
    import keras

    return [np.asarray(o) for o in keras.tree.flatten(outputs)]


# float32 rounding grows with depth to about 1e-6 of a layer's scale in a 150-layer ResNet; a wrong
# configuration or weight is off by a large fraction of it.
_LAYER_RTOL = 1e-4


def _first_divergent_layer(model, twin, x):
    """(description of the first layer off by more than _LAYER_RTOL of its scale, or None,
    and the largest relative difference seen up to there)."""
    import keras

    # Shared layers have no single output to compare, nested models are compared through their
    # flattened layers' effect on the outer ones.
    split = dict(getattr(twin, "_kerascnn_split_layers", {}))
    twin_layers = {layer.name: layer for layer in twin.layers}
    for name, end in split.items():
        twin_layers[name] = twin_layers.get(end)
    names = [layer.name for layer in model.layers
             if type(layer).__name__ != "InputLayer" and not isinstance(layer, keras.Model)
             and len(layer._inbound_nodes) == 1 and twin_layers.get(layer.name) is not None
             and len(twin_layers[layer.name]._inbound_nodes) == 1]
    k3 = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    tfk = type(twin)(twin.inputs, [twin_layers[n].output for n in names])
    worst = 0.0
    for name, e, g in zip(names, k3(x, training=False), tfk(x, training=False)):
        e, g = np.asarray(e), np.asarray(g)
        if e.shape != g.shape:
            return f"{name!r} ({type(model.get_layer(name)).__name__}, shape {g.shape} != {e.shape})", 1.0
        scale = float(np.abs(e).max()) if e.size else 0.0
        rel = float(np.abs(e - g).max()) / scale if scale > 0 else float(np.abs(g).max() > 0)
        if rel > _LAYER_RTOL:
            return f"{name!r} ({type(model.get_layer(name)).__name__})", rel
        worst = max(worst, rel)
    return None, worst


# --- Quantization ---------------------------------------------------------------------------------

def _inbound_layers(layer):
    """The layers feeding a tf_keras layer's first call."""
    if not layer._inbound_nodes:
        return []
    inbound = layer._inbound_nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _bn_rejection(tf_keras, layer):
    """Why tfmot will reject this BatchNormalization, or None when its transforms fold it.

    tfmot quantizes BatchNormalization only as part of a pattern: right after a linear Conv2D,
    DepthwiseConv2D or Dense whose output feeds nothing else (the converter later folds the pair).
    A pre-activation BN (ResNet v2, DenseNet) matches no pattern.
    """
    inbound = _inbound_layers(layer)
    source = inbound[0] if len(inbound) == 1 else None
    foldable = (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D, tf_keras.layers.Dense)
    if (isinstance(source, foldable) and not isinstance(source, tf_keras.layers.Conv2DTranspose)
            and getattr(source.activation, "__name__", None) == "linear"
            and len(source._outbound_nodes) == 1):
        return None
    if source is None:
        after = "it has several inputs"
    elif not isinstance(source, foldable) or isinstance(source, tf_keras.layers.Conv2DTranspose):
        after = f"it follows {source.name!r} ({type(source).__name__})"
    elif len(source._outbound_nodes) > 1:
        after = f"the output of {source.name!r} ({type(source).__name__}) also feeds other layers"
    else:
        after = f"{source.name!r} ({type(source).__name__}) has a built-in activation"
    return ("tfmot quantizes BatchNormalization only directly after a linear Conv2D, "
            "DepthwiseConv2D or Dense that feeds nothing else (the pair is folded); " + after)


def _tfmot_rejections(tf_keras, twin):
    """(layer name, class name, reason) for every layer that tfmot's default 8-bit scheme rejects.

    tfmot stops at the first failure (and for custom activations without naming the layer);
    asking its registry up front, in graph order, names them all.
    """
    registry = importlib.import_module(_REGISTRY_MODULE).Default8BitQuantizeRegistry()
    layers = tf_keras.layers
    rejected = []
    for layer in twin.layers:
        name = type(layer).__name__
        if isinstance(layer, layers.InputLayer):
            continue
        if isinstance(layer, layers.BatchNormalization):
            reason = _bn_rejection(tf_keras, layer)
            if reason:
                rejected.append((layer.name, name, reason))
            continue
        if not registry.supports(layer):
            rejected.append((layer.name, name, f"tfmot's default 8-bit scheme has no "
                             f"QuantizeConfig for {name} layers"))
            continue
        activation = getattr(layer, "activation", None)
        act = getattr(activation, "__name__", None) if activation is not None else None
        if isinstance(layer, layers.Activation):
            if act not in ("relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh"):
                rejected.append((layer.name, name, f"tfmot cannot quantize activation {act!r}"))
        elif activation is not None and act not in _TFMOT_IN_LAYER_ACTIVATIONS:
            rejected.append((layer.name, name,
                             f"tfmot cannot quantize activation {act!r} inside a {name}"))
    return rejected


_TFMOT_LAYER_RE = re.compile(r"Layer (?P<name>[\w./-]+):?\s*<class '(?P<cls>[\w.]+)'>")


def _parse_tfmot_error(message, twin):
    """The (layer name, class) that a tfmot error message names, if any."""
    match = _TFMOT_LAYER_RE.search(message)
    if match:
        return match.group("name"), match.group("cls").rsplit(".", 1)[-1]
    names = {layer.name: type(layer).__name__ for layer in twin.layers}
    for token in re.findall(r"[\w./-]+", message):
        if token in names:
            return token, names[token]
    return None


def _source_class(model, name, default):
    """The Keras 3 class of the layer called `name` (nested models included), for messages."""
    import keras

    stack = [model]
    while stack:
        current = stack.pop()
        for layer in current.layers:
            if layer.name == name:
                return type(layer).__name__
            if isinstance(layer, keras.Model):
                stack.append(layer)
    return default


def quantize(model, *, translate_check: bool = True):
    """Translates a Keras 3 model to tf_keras and applies tfmot's default 8-bit QAT.

    Args:
        model: a Keras 3 functional or Sequential model of built-in layers.
        translate_check: verify the tf_keras twin against the Keras 3 model first (about one
            forward pass of each). A difference that is only amplified float32 rounding (every
            layer agrees) is a warning, not an error.

    Returns:
        A tf_keras model with fake-quantization (tfmot's `quantize_model`), ready for `train`
        and `to_tflite`.

    Raises:
        UnsupportedLayerError: a layer cannot be translated, or tfmot cannot quantize it (names the
            first such layer, tfmot's reason and the other rejected layers).
        TranslationMismatchError: the twin does not reproduce the model (a translation bug).
        ImportError: tf-keras or tensorflow-model-optimization is missing.

    Example:
        >>> qat_model = quantize(kerascnn.build("resnet18", input_shape=(32, 32, 3), classes=10))
    """
    with _keep_env():
        tf_keras, tfmot = _backends()
        twin = translate_to_tf_keras(model)
        if translate_check:
            try:
                check_translation(model, twin)
            except TranslationMismatchError as err:
                if not err.rounding_only:
                    raise
                # Deep random-weight networks amplify float32 rounding (oneDNN's results also
                # vary from run to run); every layer agreed, so the translation is right.
                warnings.warn(str(err), stacklevel=2)
        rejected = _tfmot_rejections(tf_keras, twin)
        if rejected:
            (name, cls, reason), others = rejected[0], rejected[1:]
            raise UnsupportedLayerError(name, _source_class(model, name, cls), reason,
                                        others=[(n, _source_class(model, n, c)) for n, c, _ in others])
        try:
            return tfmot.quantization.keras.quantize_model(twin)
        except (ValueError, TypeError, RuntimeError, KeyError) as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            # Drop tfmot's advice about QuantizeConfig: users of this engine cannot act on it.
            message = message.split(" You can quantize this layer")[0]
            found = _parse_tfmot_error(str(err), twin)
            if found is None:
                raise UnsupportedLayerError(
                    "?", "?", f"tfmot's quantize_model failed without naming a layer: "
                    f"{message}") from err
            name, cls = found
            raise UnsupportedLayerError(name, _source_class(model, name, cls),
                                        f"tfmot says: {message}") from err


# --- Training --------------------------------------------------------------------------------------

def _output_is_probability(qat_model):
    """Whether the (single) output comes from a softmax, so the loss must not apply one again."""
    layer = qat_model.layers[-1]
    inner = getattr(layer, "layer", layer)  # tfmot's QuantizeWrapper keeps the layer in .layer
    if type(inner).__name__ == "Softmax":
        return True
    activation = getattr(inner, "activation", None)
    # tfmot replaces a wrapped layer's activation by a QuantizeAwareActivation holding the original.
    activation = getattr(activation, "activation", activation)
    return getattr(activation, "__name__", None) == "softmax"


def _optimizer(tf_keras, optimizer, learning_rate):
    """A tf_keras optimizer from None (Adam), a name, a tf_keras optimizer or a Keras 3 one."""
    if optimizer is None:
        return tf_keras.optimizers.Adam(learning_rate)
    if isinstance(optimizer, str):
        result = tf_keras.optimizers.get(optimizer)
        result.learning_rate = learning_rate
        return result
    if type(optimizer).__module__.startswith("tf_keras."):
        return optimizer
    if type(optimizer).__module__.startswith("keras."):
        # A Keras 3 optimizer cannot update tf_keras variables; rebuild it from its config.
        config = {k: v for k, v in optimizer.get_config().items()
                  if k not in ("loss_scale_factor", "gradient_accumulation_steps")
                  or v is not None}
        if not isinstance(config.get("learning_rate"), (int, float)):
            raise ValueError("A Keras 3 optimizer with a learning-rate schedule cannot be moved to "
                             "tf_keras; pass a tf_keras optimizer instead.")
        try:
            return tf_keras.optimizers.get({"class_name": type(optimizer).__name__, "config": config})
        except (ValueError, TypeError) as err:
            raise ValueError(f"Could not rebuild Keras 3 optimizer {type(optimizer).__name__} in "
                             f"tf_keras ({err}); pass a tf_keras optimizer or a name.") from err
    raise TypeError("`optimizer` must be None, a name such as 'adam', or a tf_keras optimizer. "
                    f"Received: {type(optimizer).__name__}")


def train(qat_model, train_data, val_data=None, epochs: int = 1, learning_rate: float = 1e-4,
          optimizer=None, *, from_logits=None, steps_per_epoch=None, validation_steps=None,
          callbacks=None, verbose="auto"):
    """Fine-tunes a tfmot QAT model (compile with cross-entropy and accuracy, then fit).

    Args:
        qat_model: the tf_keras model from `quantize`.
        train_data: a tf.data.Dataset of (image, label) batches, e.g. from
            `kerascnn.data.make_pipeline`; labels are integers (B,) or one-hot (B, classes)
            (MixUp/CutMix pipelines). A tuple (x, y) of arrays also works.
        val_data: optional validation data of the same form.
        epochs: training epochs.
        learning_rate: learning rate of the default Adam optimizer, or of a named one. QAT starts
            from trained weights, so it is smaller than a from-scratch rate.
        optimizer: None (Adam), a name ("sgd", "adam", ...), a tf_keras optimizer, or a Keras 3
            optimizer with a constant learning rate (rebuilt in tf_keras from its config).
        from_logits: whether the model outputs logits; default: False when the last layer is a
            softmax, True otherwise.
        steps_per_epoch: batches per epoch (default: the whole dataset).
        validation_steps: validation batches (default: the whole dataset).
        callbacks: tf_keras callbacks.
        verbose: passed to `fit`.

    Returns:
        The tf_keras `History`.

    Raises:
        ValueError: labels that are neither integers nor one-hot, or an optimizer that cannot be
            moved to tf_keras.
    """
    import tensorflow as tf

    with _keep_env():
        tf_keras, _ = _backends()
        if from_logits is None:
            from_logits = not _output_is_probability(qat_model)
        one_hot = False
        if isinstance(train_data, tf.data.Dataset):
            spec = train_data.element_spec
            if not isinstance(spec, tuple) or len(spec) < 2:
                raise ValueError("`train_data` must yield (image, label) pairs. Received element "
                                 f"spec: {spec}")
            one_hot = spec[1].shape.rank == 2 and spec[1].dtype.is_floating
        elif isinstance(train_data, (tuple, list)) and len(train_data) == 2:
            one_hot = np.ndim(train_data[1]) == 2
        if one_hot:
            loss = tf_keras.losses.CategoricalCrossentropy(from_logits=from_logits)
            metric = tf_keras.metrics.CategoricalAccuracy(name="accuracy")
        else:
            loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
            metric = tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        qat_model.compile(optimizer=_optimizer(tf_keras, optimizer, learning_rate), loss=loss,
                          metrics=[metric])
        if isinstance(train_data, tf.data.Dataset):
            x, y = train_data, None
        else:
            x, y = train_data
        return qat_model.fit(x, y, validation_data=val_data, epochs=epochs,
                             steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                             callbacks=callbacks, verbose=verbose)


# --- TFLite ----------------------------------------------------------------------------------------

def to_tflite(qat_model, *, io_dtype: str = "int8", batch_size: int = 1) -> bytes:
    """Converts a tfmot QAT model to a full-integer TFLite flatbuffer with builtin ops only.

    The model is traced at a fixed batch size and its variables frozen into constants
    (`kerascnn.export.to_tflite(kind="qat_int8")`); the converter uses the fake-quant ranges that
    QAT learned (no calibration data) and is restricted to integer builtin kernels, so a layer that
    would stay float fails the conversion instead of leaving a float island.

    Args:
        qat_model: the tf_keras model from `quantize` (trained or not).
        io_dtype: type of the model's input and output: "int8", "uint8" or "float32" (float I/O
            adds one QUANTIZE at the input and one DEQUANTIZE at the output).
        batch_size: the fixed batch size of the exported model.

    Returns:
        The flatbuffer bytes.

    Raises:
        ValueError: a bad `io_dtype`.
        FlexOpsError: the model needs TensorFlow ops outside TFLite's builtin set.
    """
    from kerascnn.export.convert import to_tflite as convert

    with _keep_env():
        _backends()
        return convert(qat_model, "qat_int8", io_dtype=io_dtype, batch_size=batch_size)


def float_ops(content: bytes) -> list[str]:
    """Operators of a TFLite model that compute in floating point.

    QUANTIZE on the model's own float input and DEQUANTIZE producing the model's own float output
    (float32 I/O) are not counted: they are the boundary, not a float island.

    Args:
        content: a TFLite flatbuffer.

    Returns:
        "OP_NAME(tensor name)" for each op with a float input or output; empty for a fully
        integer model.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    model_inputs = {d["index"] for d in interpreter.get_input_details()}
    model_outputs = {d["index"] for d in interpreter.get_output_details()}
    found = []
    for op in interpreter._get_ops_details():
        ins = [i for i in op["inputs"] if i >= 0]
        outs = [o for o in op["outputs"] if o >= 0]
        if op["op_name"] == "QUANTIZE" and set(ins) <= model_inputs:
            continue
        if op["op_name"] == "DEQUANTIZE" and set(outs) <= model_outputs:
            continue
        for index in ins + outs:
            detail = tensors.get(index)
            if detail is not None and np.issubdtype(np.dtype(detail["dtype"]), np.floating):
                found.append(f"{op['op_name']}({detail['name']})")
                break
    return found


# --- Coverage of the model zoo ---------------------------------------------------------------------

def coverage_row(name: str, *, classes: int = 10, alpha: float = 0.35) -> dict:
    """Tries translate -> quantize -> to_tflite on one registered model at its smallest input.

    Args:
        name: a registry name (`kerascnn.list_models()`).
        classes: classifier width.
        alpha: width multiplier, for builders that take `alpha`.

    Returns:
        {"model", "input_shape", "kwargs", "stage" ("ok" or where it failed: "build",
        "translate", "quantize", "convert", "integer"), "fully_integer", "reason", "ops",
        "max_translation_diff", "seconds"}, plus "tfmot_itself" (what tfmot's own
        quantize_model says) when this engine rejects the model before calling tfmot.
    """
    import keras

    import kerascnn

    start = time.perf_counter()
    info = kerascnn.model_info(name)
    shape = (info.min_input_size, info.min_input_size, info.default_input_shape[-1])
    kwargs = {"input_shape": shape, "classes": classes}
    if "alpha" in inspect.signature(info.builder).parameters:
        kwargs["alpha"] = alpha
    row = {"model": name, "input_shape": list(shape),
           "kwargs": {k: v for k, v in kwargs.items() if k != "input_shape"},
           "stage": "build", "fully_integer": False, "reason": "", "ops": [],
           "max_translation_diff": None}
    try:
        keras.backend.clear_session()
        model = kerascnn.build(name, **kwargs)
        row["stage"] = "translate"
        twin = translate_to_tf_keras(model)
        try:
            row["max_translation_diff"] = check_translation(model, twin, batch_size=2)
        except TranslationMismatchError as err:
            if not err.rounding_only:
                raise
            # Rounding amplified by a deep random network is no reason to stop; record it.
            row["max_translation_diff"] = err.max_abs_diff
            row["note"] = "output differs by float32 rounding only (all layers within 1e-4)"
        row["stage"] = "quantize"
        try:
            qat_model = quantize(model, translate_check=False)
        except UnsupportedLayerError:
            # Cross-check the up-front rejection against tfmot itself on the same twin.
            _, tfmot = _backends()
            try:
                with _keep_env():
                    tfmot.quantization.keras.quantize_model(twin)
                row["tfmot_itself"] = "accepts the model"
            except Exception as err:  # tfmot raises RuntimeError/ValueError here
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                row["tfmot_itself"] = first.split(" You can quantize this layer")[0][:200]
            raise
        row["stage"] = "convert"
        content = to_tflite(qat_model)
        from kerascnn.export.convert import tflite_ops

        row["ops"] = tflite_ops(content)
        floats = float_ops(content)
        row["stage"] = "integer"
        if floats:
            row["reason"] = f"float ops left: {floats[:5]}"
        else:
            row["stage"], row["fully_integer"] = "ok", True
    except Exception as err:  # a coverage table records every failure instead of stopping
        row["reason"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:400]}"
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row
