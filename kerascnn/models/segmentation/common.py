"""Argument checks, backbones and the output head shared by the segmentation families.

Every segmentation model maps (N, H, W, C) images to (N, H, W, classes) float32 scores at the input
resolution. Its last layers are `logits_conv` (the 1x1 classifier, where the family has one at the
end), `logits_resize` or `logits_deconv` (the final upsampling) and `logits` (the activation:
softmax, or linear for `classifier_activation=None`), all computing in float32 so that a
mixed-precision model still outputs float32.
"""

from __future__ import annotations

import os

import keras
from keras import layers

import kerascnn
from kerascnn.blocks.upsample import UPSAMPLING_MODES, apply_upsample_block
from kerascnn.models.common import check_choice, check_number


def check_segmentation_args(*, model_name, classes, classifier_activation, weights, upsampling,
                            imagenet_backbone=None):
    """Validates the arguments every segmentation builder shares.

    Args:
        imagenet_backbone: the registry name of the backbone that `weights="imagenet"` refers to,
            or None when the model has no pretrained backbone.

    Raises:
        ValueError: in the Keras style, naming the argument and the received value.
    """
    check_number("classes", classes, low=1, integer=True)
    check_choice("upsampling", upsampling, UPSAMPLING_MODES)
    if classifier_activation is not None and not callable(classifier_activation):
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError) as err:
            raise ValueError("`classifier_activation` must be None, a Keras activation name or a "
                             f"callable. Received: classifier_activation={classifier_activation!r}") from err
    if weights is None:
        return
    if weights == "imagenet":
        if imagenet_backbone is None:
            raise ValueError(f"{model_name} has no pretrained backbone; `weights` must be None or "
                             "the path to a weights file. Received: weights='imagenet'")
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError("`weights` must be None, 'imagenet' (an ImageNet backbone) or a path to a "
                         f"weights file. Received: weights={weights!r}")
    if not os.path.exists(weights):
        raise ValueError(f"`weights` file not found. Received: weights={os.fspath(weights)!r}")


def check_bool(arg: str, value) -> None:
    """Raises a Keras-style ValueError unless `value` is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"`{arg}` must be True or False. Received: {arg}={value!r}")


def nearest_multiples(size: int, multiple: int) -> tuple:
    """The multiples of `multiple` just below and above `size` (never below `multiple`)."""
    lower = max(multiple, size // multiple * multiple)
    upper = lower if lower >= size else lower + multiple
    return (lower, upper) if lower != upper else (lower,)


def check_divisible(model_name: str, image, multiple: int, reason: str) -> None:
    """Raises a ValueError naming the nearest sizes that work when a known height or width of
    `image` is not a multiple of `multiple`. Unknown (None) sizes are not checked here."""
    shape = tuple(image.shape[1:])
    problems = []
    for axis, size in zip(("height", "width"), shape[:2]):
        if size is not None and size % multiple:
            problems.append(f"{axis} {size} -> " + " or ".join(map(str, nearest_multiples(size, multiple))))
    if problems:
        raise ValueError(f"{model_name} needs a height and width that are multiples of {multiple} "
                         f"({reason}). Nearest sizes that work: {'; '.join(problems)}. "
                         f"Received: input_shape={shape}")


def build_backbone(name: str, image, *, weights, **kwargs):
    """Builds the registered backbone `name` on the tensor `image` with `features_only=True`.

    The backbone's layers become the segmentation model's own layers (with their names), because
    they are called on `image`; `weights="imagenet"` loads the backbone's ImageNet weights into
    them.

    Returns:
        The backbone `keras.Model`: `.output` is its {"P{n}": tensor} dict and `.get_layer(...)`
        reaches any other intermediate tensor (e.g. VGG16's pool3).
    """
    return kerascnn.build(name, input_tensor=image, features_only=True,
                          weights="imagenet" if weights == "imagenet" else None, **kwargs)


def backbone_preprocessing(name: str):
    """The preprocessing of the registered backbone `name` (a segmentation model's input is its
    backbone's input)."""
    return kerascnn.model_info(name).preprocessing


def apply_classifier(x, *, classes, name="logits_conv"):
    """The 1x1 convolution that scores every position for `classes` classes (float32)."""
    return layers.Conv2D(classes, 1, padding="same", dtype="float32", name=name)(x)


def apply_segmentation_output(x, *, factor, upsampling, classifier_activation):
    """Upsamples class scores by `factor` to the input resolution and applies the activation.

    A resize mode is a plain resize here (no convolution after it: the scores are final); the
    "transpose" mode is a transposed convolution with kernel 2 * factor initialised to bilinear
    upsampling, as FCN's final layer.

    Layer names: logits_resize or logits_deconv, logits.
    """
    if factor > 1:
        x = apply_upsample_block(x, factor=factor, mode=upsampling, conv=False, dtype="float32",
                                 name="logits")
    return layers.Activation(classifier_activation, dtype="float32", name="logits")(x)


def finish_segmentation_model(*, inputs, outputs, name, weights) -> keras.Model:
    """Creates the model and loads `weights` when it is a path (ImageNet backbone weights were
    loaded when the backbone was built)."""
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None and weights != "imagenet":
        model.load_weights(os.fspath(weights))
    return model
