"""TensorFlow's fused batch-norm kernel for training-mode BatchNormalization.

Keras 3's `BatchNormalization` computes its training-mode statistics and normalisation with
separate generic ops (`ops.moments`, then `ops.batch_normalization`), so one BN layer costs
several passes over its input forward and more backward. TensorFlow has one kernel for each
direction (`FusedBatchNormV3` and its gradient). Keras 3 does not call it, and there is no switch
to make it do so, so this module does it for the duration of a training run: on this 2-core CPU a
MobileNetV2 0.5 training step at 32x32, batch 128, takes about 22 % less time
(`benchmarks/training_step.py`, docs/training_step.md).

The arithmetic is the same: batch mean and biased batch variance normalise the input, and the
moving statistics are updated with `momentum` as Keras does. The kernel returns the unbiased
variance, and the moving variance gets the biased one back, like Keras'.
`tests/test_training.py` checks outputs, gradients and moving statistics against Keras' own layer.

`fused_batchnorm(model)` routes the training-mode call of each BN layer that qualifies to the
kernel and restores the layers on exit. Nothing is saved with the model: a saved model has plain
Keras BatchNormalization layers. A layer qualifies on the TensorFlow backend with 4-D inputs
normalised over the last axis, epsilon at least 1.001e-5 (the kernel's minimum), no renorm and
not synchronized (a cross-replica mean needs Keras' own path). A call with a mask, in inference
mode or on a frozen layer uses Keras' own code.
"""

from __future__ import annotations

import contextlib

import keras

_HALF_OR_FLOAT = ("float16", "bfloat16", "float32")
# FusedBatchNormV3 rejects a smaller epsilon; such layers keep Keras' own call.
_KERNEL_MIN_EPSILON = 1.001e-5


def _qualifies(layer) -> bool:
    if not isinstance(layer, keras.layers.BatchNormalization):
        return False
    if getattr(layer, "renorm", False) or getattr(layer, "synchronized", False):
        return False
    if layer.epsilon < _KERNEL_MIN_EPSILON:
        return False
    spec = getattr(layer, "input_spec", None)
    ndim = getattr(spec, "ndim", None) if spec is not None else None
    axis = layer.axis if isinstance(layer.axis, int) else None
    return ndim == 4 and axis in (-1, 3)


def _fused_call(layer, original):
    def call(inputs, training=None, mask=None):
        import tensorflow as tf

        if (not training or not layer.trainable or mask is not None
                or len(inputs.shape) != 4 or keras.backend.standardize_dtype(inputs.dtype)
                not in _HALF_OR_FLOAT):
            return original(inputs, training=training, mask=mask)
        channels = layer.moving_mean.shape[0]
        scale = layer.gamma if layer.scale else tf.ones([channels], "float32")
        offset = layer.beta if layer.center else tf.zeros([channels], "float32")
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(scale, "float32"), tf.cast(offset, "float32"),
            epsilon=layer.epsilon, data_format="NHWC", is_training=True)
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * tf.maximum(count - 1.0, 0.0) / count  # unbiased -> biased
        momentum = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
        layer.moving_variance.assign(layer.moving_variance * momentum
                                     + variance * (1.0 - momentum))
        return tf.cast(outputs, layer.compute_dtype)

    return call


@contextlib.contextmanager
def fused_batchnorm(model, enabled: bool = True):
    """Within the block, training-mode calls of `model`'s BatchNormalization layers run
    TensorFlow's fused kernel (see the module docstring for which layers qualify).

    Functions traced within the block (e.g. the `train_function` of a `fit` call in it) keep the
    fused ops; they compute the same values as Keras' layer.

    Yields:
        The number of layers routed to the fused kernel (0 when disabled or not on TensorFlow).
    """
    patched = []
    if enabled and keras.backend.backend() == "tensorflow":
        for layer in model._flatten_layers(include_self=False):
            if _qualifies(layer) and "call" not in vars(layer):
                original = layer.call
                object.__setattr__(layer, "call", _fused_call(layer, original))
                patched.append(layer)
    try:
        yield len(patched)
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")
