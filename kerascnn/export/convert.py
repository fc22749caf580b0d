"""Keras model -> TFLite flatbuffer, with builtin ops only and a fixed batch size.

Why not `model.export(format="litert")` or `TFLiteConverter.from_keras_model`: Keras's LiteRT
export always enables Flex (SELECT_TF_OPS), which a phone's stock interpreter cannot run, and a
dynamic batch dimension adds SHAPE/PACK/STRIDED_SLICE ops around squeeze-and-excitation blocks
that split GPU/NPU delegate graphs. Here the model is traced at a fixed batch size, its variables
are frozen into constants (otherwise the converter keeps READ_VARIABLE ops and int8 calibration
fails), and the converter is restricted to builtin ops unless the caller opts in.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np

TFLITE_KINDS = ("float32", "float16", "dynamic_int8", "int8", "qat_int8")
IO_DTYPES = ("int8", "uint8", "float32")


class FlexOpsError(ValueError):
    """The model needs TensorFlow ops outside TFLite's builtin set."""


# (id(model), batch size) -> (model, frozen function) inside `frozen_once`, else None.
_frozen_cache: dict | None = None


@contextlib.contextmanager
def frozen_once():
    """Within the block, `to_tflite` traces and freezes each model once per batch size and
    reuses that graph for every later conversion (`export` converts one model to four formats;
    each freeze of the flip-averaged default model took about 2 s on the 2-core CPU). The
    models' weights must not change inside the block."""
    global _frozen_cache
    outer = _frozen_cache
    if outer is None:
        _frozen_cache = {}
    try:
        yield
    finally:
        _frozen_cache = outer


def _frozen_function(model, batch_size: int):
    key = (id(model), batch_size)
    if _frozen_cache is not None and key in _frozen_cache:
        return _frozen_cache[key][1]
    frozen = _freeze(model, batch_size)
    if _frozen_cache is not None:
        _frozen_cache[key] = (model, frozen)  # holding the model keeps its id unique
    return frozen


def _freeze(model, batch_size: int):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if len(model.inputs) != 1:
        raise ValueError(f"Export supports single-input models; {model.name!r} has {len(model.inputs)}.")
    shape = [batch_size, *model.inputs[0].shape[1:]]
    if any(d is None for d in shape):
        raise ValueError("Export needs known height, width and channels; build the model with e.g. "
                         f"input_shape=(224, 224, 3). Received input shape: {tuple(model.inputs[0].shape)}")

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
    def serve(image):
        return model(image, training=False)

    return convert_variables_to_constants_v2(serve.get_concrete_function())


def _representative(data, model_input_shape, steps: int):
    """A representative-dataset generator yielding single float32 samples of the input shape.

    `data` may be an array of model inputs (N, H, W, C), a tf.data.Dataset of inputs or of
    (inputs, labels) batches, or any iterable of such.
    """
    def samples():
        count = 0
        for item in (data if not isinstance(data, np.ndarray) else [data]):
            batch = item[0] if isinstance(item, (tuple, list)) else item
            batch = np.asarray(batch, dtype=np.float32)
            if batch.ndim == len(model_input_shape) - 1:
                batch = batch[None]
            for sample in batch:
                if count >= steps:
                    return
                yield [sample[None]]
                count += 1

    first = next(iter(samples()), None)
    if first is None:
        raise ValueError("`representative_data` is empty: full-integer quantization needs samples "
                         "of the model's input to calibrate activation ranges.")
    if tuple(first[0].shape[1:]) != tuple(model_input_shape[1:]):
        raise ValueError(f"`representative_data` samples have shape {tuple(first[0].shape[1:])}; "
                         f"the model takes {tuple(model_input_shape[1:])}.")
    return samples


def _unsupported_ops(message: str, frozen, model) -> tuple[list[str], list[str]]:
    """The TF op types the converter could not map to builtins, and the Keras layers they come
    from (found through the frozen graph's node names, which carry the layer path)."""
    op_types = sorted(set(re.findall(r"'tf\.(\w+)' op", message)))
    names = {layer.name for layer in model.layers}
    layers = []
    for node in frozen.graph.as_graph_def().node:
        if node.op in op_types:
            for part in node.name.split("/"):
                # tf.function name scopes may carry a uniquifying "_1" suffix
                for candidate in (part, re.sub(r"_\d+$", "", part)):
                    if candidate in names and candidate not in layers:
                        layers.append(candidate)
                        break
    return op_types, layers


def to_tflite(model, kind: str = "float32", *, representative_data=None, io_dtype: str = "int8",
              calibration_steps: int = 200, batch_size: int = 1, allow_flex: bool = False) -> bytes:
    """Converts a Keras model to a TFLite flatbuffer.

    Args:
        model: a single-input Keras model with a known input size.
        kind: "float32", "float16" (float16 weights), "dynamic_int8" (int8 weights, float
            activations), "int8" (full integer, calibrated with `representative_data`) or
            "qat_int8" (full integer from a model with fake-quantization: no calibration needed).
        representative_data: model inputs for int8 calibration: an array (N, H, W, C), a
            tf.data.Dataset of inputs or (inputs, labels), or an iterable of batches.
        io_dtype: input/output type of the integer models: "int8", "uint8" or "float32".
        calibration_steps: samples used for calibration.
        batch_size: the fixed batch size of the exported model.
        allow_flex: permit TensorFlow (Flex) ops; the stock interpreter on a phone cannot run them.

    Returns:
        The flatbuffer bytes.

    Raises:
        ValueError: bad arguments or missing calibration data.
        FlexOpsError: the model needs ops outside TFLite's builtin set (names the layers).
    """
    import tensorflow as tf

    if kind not in TFLITE_KINDS:
        raise ValueError(f"`kind` must be one of {list(TFLITE_KINDS)}. Received: kind={kind!r}")
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"`io_dtype` must be one of {list(IO_DTYPES)}. Received: io_dtype={io_dtype!r}")
    frozen = _frozen_function(model, batch_size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    ops = [builtins]
    if kind == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif kind in ("int8", "qat_int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if kind == "int8":
            if representative_data is None:
                raise ValueError("kind='int8' needs `representative_data` to calibrate activation "
                                 "ranges (e.g. 100-500 training images, preprocessed as the model expects).")
            converter.representative_dataset = _representative(
                representative_data, [batch_size, *model.inputs[0].shape[1:]], calibration_steps)
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # For "qat_int8" the ranges come from the model's fake-quant ops; restricting the op
        # set to TFLITE_BUILTINS_INT8 there makes the converter demand a representative data
        # set before it has looked at the graph. Whether the result is fully integer is checked
        # by `float_tensors` instead.
        if io_dtype != "float32":
            converter.inference_input_type = getattr(tf, io_dtype)
            converter.inference_output_type = getattr(tf, io_dtype)
    if allow_flex:
        ops = ops + [tf.lite.OpsSet.SELECT_TF_OPS]
    converter.target_spec.supported_ops = ops
    try:
        return converter.convert()
    except Exception as err:  # the converter raises ConverterError and friends
        message = str(err)
        op_types, layers = _unsupported_ops(message, frozen, model)
        if not op_types or allow_flex:
            raise
        where = f" in layer(s) {layers}" if layers else ""
        raise FlexOpsError(
            f"{model.name!r} needs TensorFlow ops that TFLite's builtin set lacks: "
            f"{', '.join(op_types)}{where}. A phone's stock interpreter cannot run them; replace "
            "the layer, or pass allow_flex=True to export anyway (the app then needs the Flex "
            "delegate).") from err


def tflite_ops(content: bytes) -> list[str]:
    """Sorted names of the operators in a TFLite flatbuffer."""
    interpreter = _interpreter(content)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def _interpreter(content: bytes, num_threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content, num_threads=num_threads)


def tensor_details(content: bytes) -> dict:
    """Input and output dtype, shape and (scale, zero_point) of a single-input, single-output model."""
    interpreter = _interpreter(content)

    def describe(detail):
        scale, zero_point = detail["quantization"]
        return {"dtype": np.dtype(detail["dtype"]).name, "shape": [int(d) for d in detail["shape"]],
                "scale": float(scale), "zero_point": int(zero_point)}

    return {"input": describe(interpreter.get_input_details()[0]),
            "output": describe(interpreter.get_output_details()[0])}

