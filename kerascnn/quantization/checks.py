"""Checks that a QAT model and its TFLite file are the same model.

- `integer_report(content)`: whether a TFLite file is fully integer (every tensor between the
  input and output quantization is int8/int32), and which tensors are not.
- `compare_kernels(qat_model, content)`: for every quantized convolution and fully connected layer
  of a native QAT model, the largest difference between the kernel the phone runs (the file's
  int8 weights times their scales) and the folded, fake-quantized kernel that QAT trained, in
  units of the quantization step (LSB).
"""

from __future__ import annotations

import numpy as np

from kerascnn.layers.quantization import QuantConv, QuantDense

_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def _inspecting_interpreter(content: bytes):
    # Without the default XNNPACK delegate, so that constant weight tensors stay readable.
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def integer_report(content: bytes) -> dict:
    """What is not integer in a TFLite file.

    Returns:
        {"fully_integer": bool, "float_tensors": [names of float tensors other than the model's
        inputs and outputs], "ops": sorted op names, "requantize_ops": number of int8->int8
        QUANTIZE ops (integer re-scaling, e.g. before a CONCATENATION)}.
    """
    interpreter = _inspecting_interpreter(content)
    io = {d["index"] for d in interpreter.get_input_details() + interpreter.get_output_details()}
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    floats = [d["name"] for i, d in details.items()
              if np.dtype(d["dtype"]) in (np.float32, np.float16) and i not in io]
    ops = interpreter._get_ops_details()
    requantize = sum(1 for op in ops if op["op_name"] == "QUANTIZE"
                     and np.dtype(details[op["inputs"][0]]["dtype"]) != np.float32)
    return {"fully_integer": not floats, "float_tensors": floats,
            "ops": sorted({op["op_name"] for op in ops}), "requantize_ops": requantize}


def _tflite_kernels(content: bytes) -> list:
    """(op name, dequantized weights in Keras layout, per-channel scales) of each weight op."""
    interpreter = _inspecting_interpreter(content)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    kernels = []
    for op in interpreter._get_ops_details():
        if op["op_name"] not in _WEIGHT_OPS:
            continue
        detail = details[op["inputs"][_WEIGHT_OPS[op["op_name"]]]]
        if np.dtype(detail["dtype"]) != np.int8:
            continue
        values = interpreter.get_tensor(detail["index"]).astype(np.float64)
        params = detail["quantization_parameters"]
        scales = np.asarray(params["scales"], np.float64)
        axis = int(params["quantized_dimension"])
        shape = [1] * values.ndim
        shape[axis] = -1
        real = values * (scales.reshape(shape) if scales.size > 1 else scales)
        if op["op_name"] == "CONV_2D":        # (out, kh, kw, in) -> (kh, kw, in, out)
            real, scales = real.transpose(1, 2, 3, 0), scales
        elif op["op_name"] == "DEPTHWISE_CONV_2D":  # (1, kh, kw, in*mult) -> (kh, kw, in*mult)
            real = real[0]
        else:                                  # (units, in) -> (in, units)
            real = real.T
        kernels.append((op["op_name"], real, scales))
    return kernels


def compare_kernels(qat_model, content: bytes) -> dict:
    """Largest kernel difference, in LSBs, between each QAT layer and its TFLite op.

    Each `QuantConv`/`QuantDense` of `qat_model` is matched with the TFLite weight tensor of the
    same shape that is closest to it.

    Returns:
        {layer name: max |tflite - qat| / step}; a value <= 1 means equal within one LSB.

    Raises:
        ValueError: a QAT layer has no TFLite weight tensor of its shape.
    """
    kernels = _tflite_kernels(content)
    result = {}
    for layer in qat_model.layers:
        if not isinstance(layer, (QuantConv, QuantDense)):
            continue
        expected = np.asarray(layer.quantized_kernel(), np.float64)
        if isinstance(layer, QuantConv) and layer.kind == "depthwise":
            kh, kw, cin, mult = expected.shape
            expected = expected.reshape(kh, kw, cin * mult)
        # A sliced convolution (`kernel_chunks`) is one CONV_2D per output-channel slice.
        parts = np.split(expected, getattr(layer, "kernel_chunks", 1), axis=-1)
        result[layer.name] = max(_closest_lsb(kernels, part, layer.name) for part in parts)
    return result


def _closest_lsb(kernels, expected, name) -> float:
    best = None
    for _, real, scales in kernels:
        if real.shape != expected.shape:
            continue
        step = scales if scales.size > 1 else scales[0]
        lsb = float(np.max(np.abs(real - expected) / step))
        best = lsb if best is None else min(best, lsb)
    if best is None:
        raise ValueError(f"No TFLite weight tensor of shape {expected.shape} for layer {name!r}.")
    return best
