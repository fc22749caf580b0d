"""Export to TFLite (builtin ops, fixed batch) and the bundle that the Android demo reads."""

from kerascnn.export.bundle import FILES, FORMATS, export
from kerascnn.export.convert import FlexOpsError, tensor_details, tflite_ops, to_tflite
from kerascnn.export.runtime import TFLiteModel, load_tflite

__all__ = ["FILES", "FORMATS", "FlexOpsError", "TFLiteModel", "export", "load_tflite",
           "tensor_details", "tflite_ops", "to_tflite"]
