"""Flip averaging inside the model: a classifier or segmentation model that predicts on an image and
on its mirror image and returns the mean of the two predictions ("test-time augmentation" with
horizontal flips).

`flip_averaged(model)` wraps a trained model: `FlipConcat` stacks the batch and its mirror images
into one batch of twice the size, the model runs once on it, and `PairMean` averages each image's
two predictions; for a segmentation model (one score map per image) it first mirrors the second
map back, so that both maps are in the image's own layout. The result is an ordinary functional
model with the same input and output and the same weights, so it saves, quantizes
(`kerascnn.quantization.quantize_model` knows both layers) and converts to TFLite with builtin ops
only (REVERSE_V2, CONCATENATION, RESHAPE, MEAN), float or full int8. It costs a second pass per
image (one invocation with batch 2 in TFLite). It suits models trained with horizontal flips,
whose predictions on mirror images are about as good as on the originals but make different
mistakes.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="kerascnn")
class FlipConcat(layers.Layer):
    """(N, H, W, C) -> (2N, H, W, C): the images, then the same images mirrored left to right."""

    def call(self, inputs):
        return ops.concatenate([inputs, ops.flip(inputs, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (None if batch is None else 2 * batch, *input_shape[1:])


@keras.saving.register_keras_serializable(package="kerascnn")
class PairMean(layers.Layer):
    """(2N, ...) -> (N, ...): row i of the output is the mean of rows i and N + i of the input.

    Args:
        unmirror: mirror rows N..2N-1 back left to right (axis 2 of an (2N, H, W, C) input)
            before the mean: for the score maps of a segmentation model run by `FlipConcat`'s
            mirror images.
    """

    def __init__(self, unmirror: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(unmirror, bool):
            raise TypeError(f"`unmirror` must be True or False. Received: unmirror={unmirror!r}")
        self.unmirror = unmirror

    def call(self, inputs):
        if self.unmirror and len(inputs.shape) != 4:
            raise ValueError("PairMean(unmirror=True) needs (2N, H, W, C) maps. Received shape "
                             f"{tuple(inputs.shape)}")
        pairs = ops.reshape(inputs, (2, -1, *inputs.shape[1:]))
        if self.unmirror:  # axis 3 of the pairs is the maps' width
            pairs = ops.concatenate([pairs[:1], ops.flip(pairs[1:], axis=3)], axis=0)
        return ops.mean(pairs, axis=0)

    def get_config(self):
        return {**super().get_config(), "unmirror": self.unmirror}

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (None if batch is None else batch // 2, *input_shape[1:])


def flip_averaged(model, name: str | None = None):
    """`model` with its predictions averaged over each image and its mirror image.

    Args:
        model: a model with one image input (N, H, W, C) and one output: a classifier's
            (N, classes), or a segmentation model's score maps (N, H', W', classes), whose
            mirror-image half is mirrored back before the mean (exactly aligned when the maps
            are at the input's resolution, as those of every kerascnn segmentation model).
        name: the new model's name (default: "<model name>_flip_averaged").

    Returns:
        A functional model with the same input, output and weights (shared with `model`).

    Raises:
        ValueError: a model with several inputs or outputs, or whose input is not an image
            batch, or whose output is neither one vector nor one map per image.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("flip_averaged needs a model with one input and one output. Received "
                         f"{len(model.inputs)} input(s) and {len(model.outputs)} output(s).")
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(in_shape) != 4 or len(out_shape) not in (2, 4):
        raise ValueError("flip_averaged needs an image classifier or segmentation model: input "
                         "(N, H, W, C) and output (N, classes) or (N, H, W, classes). Received "
                         f"input {in_shape} and output {out_shape}.")
    images = keras.Input(in_shape[1:], name="images")
    both = FlipConcat(name="flip_concat")(images)
    averaged = PairMean(unmirror=len(out_shape) == 4, name="flip_mean")(model(both))
    return keras.Model(images, averaged, name=name or f"{model.name}_flip_averaged")


def wrapped_classifier(model):
    """The model (classifier or segmentation model) inside a model made by `flip_averaged`, or
    None for any other model."""
    if model.layers and isinstance(model.layers[-1], PairMean):
        inner = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        if inner:
            return inner[-1]
    return None
