"""Custom layers: only operations that built-in Keras layers cannot express. Each one is written
with `keras.ops` (so it runs on every backend), has `get_config` and is registered as serializable
under the "kerascnn" package, so models that use it save and load with `safe_mode=True`."""

from kerascnn.layers.deformable import DeformableConv2D
from kerascnn.layers.flip_average import FlipConcat, PairMean, flip_averaged
from kerascnn.layers.lrn import LocalResponseNormalization
from kerascnn.layers.resized_input import resized_input
from kerascnn.layers.quantization import (FakeQuant, QuantBatchNorm, QuantConv,
                                          QuantDeformableSampling, QuantDense)

__all__ = ["DeformableConv2D", "FakeQuant", "FlipConcat", "LocalResponseNormalization",
           "PairMean", "QuantBatchNorm", "QuantConv", "QuantDeformableSampling", "QuantDense",
           "flip_averaged", "resized_input"]
