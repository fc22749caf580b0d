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


def transfer_backbone(classifier: keras.Model, model: keras.Model, *,
                      skip_mismatch: bool = False) -> list:
    """Initialises a segmentation model's backbone from a trained classifier of the same family.

    The backbone of a segmentation model keeps the layer names of the registered classifier it is
    built from (`build_backbone`), so the weights are matched by layer name: every layer of
    `model` that has weights and whose name is also a layer of `classifier` gets that layer's
    weights, batch-norm statistics included. The classifier's head (its `predictions` layer and
    anything else the segmentation model lacks) is left out. This is how a backbone trained on
    your own classification data, at any input size, starts a segmentation model, in the way
    ImageNet weights do (`weights="imagenet"`) when they exist; docs/segmentation_pretrained.md
    measures it against docs/segmentation.md.

    Args:
        classifier: a Keras model built from the same registry family with the same width
            options (e.g. `kerascnn.build("mobilenet_v2", alpha=0.35, classes=10)`), trained.
        model: the segmentation model to write, e.g.
            `kerascnn.build("unet_mobilenet_v2", alpha=0.35, classes=11)`.
        skip_mismatch: leave layers whose weight shapes differ as they are instead of raising.

    Returns:
        The names of the layers whose weights were copied, in `model`'s order.

    Raises:
        TypeError: an argument that is not a Keras model.
        ValueError: no layer name in common, or a layer whose weight shapes differ (e.g. another
            `alpha`) unless `skip_mismatch`; the message names the layer and both shapes.

    Example:
        >>> classifier = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35,
        ...                             classes=10)
        >>> # ... train the classifier ...
        >>> seg = kerascnn.build("unet_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35,
        ...                      classes=11)
        >>> copied = transfer_backbone(classifier, seg)
    """
    for arg, value in (("classifier", classifier), ("model", model)):
        if not isinstance(value, keras.Model):
            raise TypeError(f"`{arg}` must be a keras.Model. Received: {arg} of type "
                            f"{type(value).__name__}")
    source = {layer.name: layer for layer in classifier.layers if layer.weights}
    pairs, mismatched = [], []
    for layer in model.layers:
        other = source.get(layer.name)
        if other is None or not layer.weights:
            continue
        shapes = [tuple(w.shape) for w in layer.weights]
        other_shapes = [tuple(w.shape) for w in other.weights]
        if shapes == other_shapes:
            pairs.append((layer, other))
        else:
            mismatched.append(f"{layer.name}: {other_shapes} in {classifier.name!r} vs {shapes} "
                              f"in {model.name!r}")
    if mismatched and not skip_mismatch:
        raise ValueError(f"{len(mismatched)} layer(s) of the same name have weights of other "
                         f"shapes (another width or family?), first: {mismatched[0]}. Pass "
                         "skip_mismatch=True to copy only the layers that match.")
    if not pairs:
        raise ValueError(f"No layer of {classifier.name!r} with weights has a counterpart of the "
                         f"same name and shapes in {model.name!r}: build both from the same "
                         "registry family (e.g. mobilenet_v2 and unet_mobilenet_v2) with the "
                         "same width options.")
    for layer, other in pairs:
        layer.set_weights(other.get_weights())
    return [layer.name for layer, _ in pairs]
