"""Quantization-aware training for Keras 3 models (work in progress: see issue 8).

Two engines:
- ``native``: fake-quant layers on Keras 3 (`kerascnn.quantization.native`).
- ``tfmot``: the Keras 3 graph translated to `tf_keras` and quantized with
  tensorflow-model-optimization (`kerascnn.quantization.tfmot_engine`).
"""
