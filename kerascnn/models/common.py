"""Argument checks, inputs, heads and weight loading shared by every family builder.

The public builders take keras.applications' argument names with the same meanings; everything
they have in common lives here so that a family file holds only its architecture.
"""

from __future__ import annotations

import inspect
import math
import os

import keras
from keras import layers

from kerascnn.blocks.conv import apply_activation

POOLING_CHOICES = (None, "avg", "max")


def entry_signature(builder, *, exclude=()):
    """Gives a short registry entry ``def name(**kwargs): return builder(SPEC, **kwargs)`` the
    keyword-only signature of its family builder (less `exclude`), so that `help()` shows the real
    arguments and `kerascnn.build` can reject unknown keywords by name."""
    params = [p for p in inspect.signature(builder).parameters.values()
              if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in exclude]

    def decorator(fn):
        fn.__signature__ = inspect.Signature(params)
        return fn

    return decorator


def check_choice(arg: str, value, allowed) -> None:
    """Raises a ValueError in the Keras style when `value` is not one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"`{arg}` must be one of {list(allowed)}. Received: {arg}={value!r}")


def check_number(arg: str, value, *, low=None, high=None, low_inclusive=True, integer=False):
    """Checks a numeric argument's type and range; returns it unchanged."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ValueError(f"`{arg}` must be {kind}. Received: {arg}={value!r}")
    if low is not None and (value < low or (not low_inclusive and value == low)):
        bound = ">=" if low_inclusive else ">"
        raise ValueError(f"`{arg}` must be {bound} {low}. Received: {arg}={value!r}")
    if high is not None and value > high:
        raise ValueError(f"`{arg}` must be <= {high}. Received: {arg}={value!r}")
    return value


def check_head_args(*, include_top, classes, pooling, classifier_activation, dropout_rate,
                    weights, has_imagenet_weights, features_only=False):
    """Validates the arguments every classifier builder shares."""
    if not isinstance(include_top, bool):
        raise ValueError(f"`include_top` must be True or False. Received: include_top={include_top!r}")
    check_number("classes", classes, low=1, integer=True)
    check_choice("pooling", pooling, POOLING_CHOICES)
    check_number("dropout_rate", dropout_rate, low=0.0, high=1.0)
    if dropout_rate >= 1.0:
        raise ValueError(f"`dropout_rate` must be in [0, 1). Received: dropout_rate={dropout_rate!r}")
    if classifier_activation is not None and not callable(classifier_activation):
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError) as err:
            raise ValueError("`classifier_activation` must be None, a Keras activation name or a "
                             f"callable. Received: classifier_activation={classifier_activation!r}") from err
    if not isinstance(features_only, bool):
        raise ValueError(f"`features_only` must be True or False. Received: features_only={features_only!r}")
    if weights is None:
        return
    if weights == "imagenet":
        if not has_imagenet_weights:
            raise ValueError("No ImageNet weights are published for this configuration; `weights` "
                             "must be None or the path to a weights file. Received: weights='imagenet'")
        if include_top and not features_only and classes != 1000:
            raise ValueError("With weights='imagenet' and include_top=True, `classes` must be 1000. "
                             f"Received: classes={classes}")
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError("`weights` must be None, 'imagenet' or a path to a weights file. "
                         f"Received: weights={weights!r}")
    if not os.path.exists(weights):
        raise ValueError(f"`weights` file not found. Received: weights={os.fspath(weights)!r}")


def resolve_input(*, model_name, input_shape, input_tensor, default_shape, min_size,
                  include_top, fixed_size=False, channels=None):
    """Checks `input_shape`/`input_tensor` and returns (image tensor, model inputs).

    Args:
        model_name: used in error messages.
        input_shape: (height, width, channels) or None for the default.
        input_tensor: an optional Keras tensor to build the model on.
        default_shape: the architecture's default (height, width, channels).
        min_size: the smallest height/width the architecture accepts.
        include_top: with no `input_shape`, a headless model accepts any spatial size.
        fixed_size: the architecture's head needs known spatial dimensions (e.g. Flatten).
        channels: when set, the number of input channels the weights require.

    Raises:
        ValueError: malformed shape, too small an input, or unknown dims where they are needed.
    """
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError("`input_tensor` must be a Keras tensor, e.g. from keras.Input(). "
                             f"Received: input_tensor of type {type(input_tensor).__name__}")
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(f"`input_shape` {tuple(input_shape)} does not match the shape of "
                             f"`input_tensor` {tensor_shape}.")
        input_shape = tensor_shape
    if input_shape is None:
        shape = tuple(default_shape) if (include_top or fixed_size) else (None, None, default_shape[-1])
    else:
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
            raise ValueError("`input_shape` must be a tuple (height, width, channels). "
                             f"Received: input_shape={input_shape!r}")
        shape = tuple(input_shape)
    height, width, chans = shape
    if not isinstance(chans, int) or isinstance(chans, bool) or chans < 1:
        raise ValueError("The channel dimension of `input_shape` must be a positive integer. "
                         f"Received: input_shape={shape}")
    if channels is not None and chans != channels:
        raise ValueError(f"{model_name} with these weights expects {channels} input channels. "
                         f"Received: input_shape={shape}")
    for dim in (height, width):
        if dim is None:
            if fixed_size:
                raise ValueError(f"{model_name} needs known height and width for its head; "
                                 f"pass e.g. input_shape={tuple(default_shape)}. Received: input_shape={shape}")
            continue
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise ValueError(f"Height and width must be integers or None. Received: input_shape={shape}")
        if dim < min_size:
            raise ValueError(f"{model_name} needs an input of at least {min_size}x{min_size} pixels. "
                             f"Received: input_shape={shape}")
    if input_tensor is not None:
        return input_tensor, keras.utils.get_source_inputs(input_tensor)
    image = keras.Input(shape=shape, name="input")
    return image, image


def apply_pooling(x, pooling, *, keepdims=False, name="head_pool"):
    """Global average or max pooling, or `x` unchanged for pooling=None."""
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(keepdims=keepdims, name=name)(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(keepdims=keepdims, name=name)(x)
    return x


def apply_dense_classifier(x, *, classes, classifier_activation, dropout_rate):
    """Global average pool, dropout, Dense classifier. The classifier computes in float32 so that
    mixed-precision training keeps a float32 softmax."""
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate, name="head_dropout")(x)
    return layers.Dense(classes, activation=classifier_activation, dtype="float32",
                        name="predictions")(x)


def apply_fc_classifier(x, *, units, classes, classifier_activation, dropout_rate,
                        activation="relu"):
    """Flatten -> [Dense -> activation -> Dropout] per hidden width -> Dense classifier.

    The classifier of VGG, AlexNet and LeNet. The last Dense computes in float32 so that
    mixed-precision training keeps a float32 softmax.

    Layer names: head_flatten, head_fc{i}, head_fc{i}_{activation}, head_fc{i}_dropout,
    predictions.
    """
    x = layers.Flatten(name="head_flatten")(x)
    for i, width in enumerate(units, start=1):
        x = layers.Dense(width, name=f"head_fc{i}")(x)
        x = apply_activation(x, activation, name=f"head_fc{i}_{activation}")
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name=f"head_fc{i}_dropout")(x)
    return layers.Dense(classes, activation=classifier_activation, dtype="float32",
                        name="predictions")(x)


def apply_conv_classifier(x, *, classes, classifier_activation):
    """A 1x1 convolution on a (1, 1, C) map, flattened: the MobileNet V1/V3 classifier. The three
    layers compute in float32 under a mixed-precision policy."""
    x = layers.Conv2D(classes, 1, padding="same", dtype="float32", name="predictions")(x)
    x = layers.Flatten(dtype="float32", name="predictions_flatten")(x)
    return layers.Activation(classifier_activation, dtype="float32", name="predictions_activation")(x)


def feature_outputs(endpoints: dict) -> dict:
    """{"P{n}": tensor} from {stride: tensor}, with n = log2(stride)."""
    return {f"P{int(round(math.log2(stride)))}": t for stride, t in sorted(endpoints.items())}


def transfer_weights(source: keras.Model, target: keras.Model, *, allow_extra_source=False) -> None:
    """Copies weights variable by variable, in order, checking every shape.

    Weights of `keras.layers.Normalization` layers in the source (input preprocessing) are skipped.

    Args:
        source: the model to read (e.g. a keras.applications model).
        target: the model to write.
        allow_extra_source: the source may have more variables at its end (a head that the target,
            e.g. a `features_only` backbone, does not have).

    Raises:
        ValueError: when the counts or any shape differ, naming the first mismatch.
    """
    # keras.applications puts some preprocessing inside its models (EfficientNet's Normalization);
    # ours is declared in model_info instead, so those weights have no counterpart.
    skip = {id(v) for layer in source.layers if isinstance(layer, layers.Normalization)
            for v in layer.weights}
    src = [v for v in source.weights if id(v) not in skip]
    dst = target.weights
    if len(src) < len(dst) or (len(src) != len(dst) and not allow_extra_source):
        raise ValueError(f"Cannot transfer weights from {source.name!r} ({len(src)} variables) to "
                         f"{target.name!r} ({len(dst)} variables).")
    for i, (s, d) in enumerate(zip(src, dst)):
        if tuple(s.shape) != tuple(d.shape):
            raise ValueError(f"Weight {i} differs in shape: {s.path} {tuple(s.shape)} vs "
                             f"{d.path} {tuple(d.shape)}.")
    for s, d in zip(src, dst):
        d.assign(s)


def finish_model(*, inputs, outputs, name, weights, imagenet_source=None,
                 features_only=False) -> keras.Model:
    """Creates the functional model and loads `weights` into it.

    Args:
        imagenet_source: a zero-argument callable that returns the keras.applications model with
            ImageNet weights, when weights="imagenet".
    """
    model = keras.Model(inputs, outputs, name=name)
    if weights == "imagenet":
        transfer_weights(imagenet_source(), model, allow_extra_source=features_only)
    elif weights is not None:
        model.load_weights(os.fspath(weights))
    return model


def finish_classifier(x, endpoints, *, inputs, name, weights, include_top, features_only, pooling,
                      classes, classifier_activation, dropout_rate, keras_applications=None):
    """The common ending of a backbone with a global-average-pool classifier.

    Returns the model whose outputs are the `features_only` dict of `endpoints`, the Dense
    classifier on `x`, or `x` globally pooled, with `weights` loaded; "imagenet" weights come from
    the keras.applications model named `keras_applications`.
    """
    if features_only:
        outputs = feature_outputs(endpoints)
    elif include_top:
        outputs = apply_dense_classifier(x, classes=classes, dropout_rate=dropout_rate,
                                         classifier_activation=classifier_activation)
    else:
        outputs = apply_pooling(x, pooling)

    def imagenet_source():
        return getattr(keras.applications, keras_applications)(
            include_top=include_top and not features_only, weights="imagenet")

    return finish_model(inputs=inputs, outputs=outputs, name=name, weights=weights,
                        imagenet_source=imagenet_source if keras_applications else None,
                        features_only=features_only)
