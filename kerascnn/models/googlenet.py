"""GoogLeNet (Inception v1), with the auxiliary classifiers as extra outputs.

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, https://arxiv.org/abs/1409.4842.

The stem (7x7/2 convolution, max pool, 1x1 and 3x3 convolutions, max pool) is followed by nine
inception modules, 3a-3b, 4a-4e and 5a-5b, with 3x3/2 max pools before stages 4 and 5; global
average pooling, dropout 0.4 and a linear classifier end the network. `INCEPTION_TABLE` is Table 1
of the paper, one row per module. With `aux_logits=True` the two auxiliary classifiers of section
5 (after 4a and 4d) become extra outputs, so that the paper's training loss is
``loss_weights=[1, 0.3, 0.3]``; `strip_auxiliary_heads` returns the inference model. What differs,
and why:

- `batch_norm=True` (default) puts BatchNormalization (epsilon 1e-3) between each convolution and
  its ReLU and drops the convolution biases. The paper predates batch norm, but every maintained
  GoogLeNet (TF-slim's inception_v1 and torchvision's port of it, the source of the only
  ImageNet accuracy one can reproduce today) uses it, and without it the network needs the paper's
  long, carefully tuned SGD schedule to train at all. `batch_norm=False` gives the paper's network
  (convolutions with biases, no normalization).
- `kernel_size_5x5=5` (default) is the paper's 5x5 branch. TF-slim and torchvision use a 3x3
  kernel there (pytorch/vision#906 keeps it for their weights); `kernel_size_5x5=3` reproduces
  their architecture and parameter counts (6,624,904 without and 13,004,888 with auxiliary heads).
- The paper's local response normalization in the stem (Figure 3) is off by default, as in every
  batch-norm variant; `local_response_norm=True` adds it (`kerascnn.layers`).
- The 3x3/2 max pools use "same" padding. On even map sizes (every map at 224x224) this gives
  the same windows as Caffe's and torchvision's ceil-mode pools; on odd sizes it gives one more
  row and column. The pool before stage 5 is the paper's 3x3/2 (torchvision: 2x2/2). The stem
  convolution pads symmetrically (3 pixels), like Caffe and PyTorch.
- The auxiliary classifiers use the paper's 5x5/3 average pool (torchvision: an adaptive 4x4
  pool); on a 14x14 map both give 4x4. They flatten that map, so with `aux_logits=True` the input
  size is fixed when the model is built, and must be at least 65x65 (a 5x5 map at stride 16).
- `features_only=True` returns {"P1": stem conv 7x7, "P2": stem conv 3x3, "P3": 3b, "P4": 4e,
  "P5": 5b}: the last tensor at each stride.
"""

from __future__ import annotations

import dataclasses
import functools

import keras
from keras import layers

from kerascnn.blocks.conv import BN_MOMENTUM, apply_conv_bn_act_block
from kerascnn.blocks.inception import apply_inception_block
from kerascnn.layers.lrn import LocalResponseNormalization
from kerascnn.models.common import (apply_dense_classifier, apply_pooling, check_head_args,
                                    check_number, feature_outputs, finish_model, resolve_input)
from kerascnn.registry import preprocessing_torch, register_model


@dataclasses.dataclass(frozen=True)
class Inception:
    """One row of Table 1: an inception module's label and the widths of its four branches.

    Branches: 1x1 convolution; 1x1 reduction then 3x3; 1x1 reduction then 5x5; 3x3/1 max pool
    then 1x1 projection. Their outputs are concatenated.
    """

    label: str  # "3a", "4e", ...: the stage is the digit, the block the letter
    filters_1x1: int
    reduce_3x3: int
    filters_3x3: int
    reduce_5x5: int
    filters_5x5: int
    pool_proj: int

    @property
    def stage(self) -> int:
        return int(self.label[0])

    @property
    def block(self) -> int:
        return ord(self.label[1]) - ord("a") + 1

    @property
    def output_channels(self) -> int:
        return self.filters_1x1 + self.filters_3x3 + self.filters_5x5 + self.pool_proj


# Table 1 of the paper.
INCEPTION_TABLE = (
    #         label  #1x1  #3x3red  #3x3  #5x5red  #5x5  pool proj     output (28x28 / 14x14 / 7x7)
    Inception("3a",   64,     96,    128,    16,     32,     32),   # 256
    Inception("3b",  128,    128,    192,    32,     96,     64),   # 480
    Inception("4a",  192,     96,    208,    16,     48,     64),   # 512
    Inception("4b",  160,    112,    224,    24,     64,     64),   # 512
    Inception("4c",  128,    128,    256,    24,     64,     64),   # 512
    Inception("4d",  112,    144,    288,    32,     64,     64),   # 528
    Inception("4e",  256,    160,    320,    32,    128,    128),   # 832
    Inception("5a",  256,    160,    320,    32,    128,    128),   # 832
    Inception("5b",  384,    192,    384,    48,    128,    128),   # 1024
)

# Section 5: auxiliary classifiers on the outputs of these modules.
AUX_AFTER = ("4a", "4d")

# 4a's map is at stride 16, and the auxiliary 5x5 pool needs at least 5x5 of it.
MIN_INPUT_SIZE, MIN_INPUT_SIZE_AUX = 32, 65


def _apply_auxiliary_classifier(x, *, conv, classes, classifier_activation, name):
    """5x5/3 average pool -> 1x1 conv 128 -> ReLU -> FC 1024 -> ReLU -> dropout 0.7 -> FC.

    Layer names: {name}_pool, {name}_conv_*, {name}_flatten, {name}_fc, {name}_fc_relu,
    {name}_dropout, {name}_predictions (float32).
    """
    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = conv(x, filters=128, kernel_size=1, name=f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, name=f"{name}_fc")(x)
    x = layers.ReLU(name=f"{name}_fc_relu")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return layers.Dense(classes, activation=classifier_activation, dtype="float32",
                        name=f"{name}_predictions")(x)


def _check_bool(arg, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{arg}` must be True or False. Received: {arg}={value!r}")


_PAPER = ("Szegedy et al., Going Deeper with Convolutions, CVPR 2015, "
          "https://arxiv.org/abs/1409.4842")


@register_model(family="googlenet", paper=_PAPER, min_input_size=MIN_INPUT_SIZE,
                preprocessing=preprocessing_torch(),
                published_accuracy={"imagenet_top1": 69.778,
                                    "source": "torchvision model card (IMAGENET1K_V1: batch norm, "
                                              "kernel_size_5x5=3)"})
def googlenet(*, input_shape=None, input_tensor=None, include_top=True, classes=1000,
              pooling=None, classifier_activation="softmax", dropout_rate=0.4, weights=None,
              name=None, features_only=False, aux_logits=False, batch_norm=True,
              kernel_size_5x5=5, local_response_norm=False, bn_momentum=BN_MOMENTUM):
    """Builds GoogLeNet from `INCEPTION_TABLE`.

    Args:
        input_shape: (height, width, channels), default (224, 224, 3); spatial dims may be None
            unless `aux_logits` is set.
        input_tensor: optional Keras tensor to use as the input.
        include_top: add the classifier (global average pool, dropout, Dense).
        classes: number of classes of the classifier(s).
        pooling: None, "avg" or "max": global pooling of a headless model.
        classifier_activation: activation of the classifier(s) ("softmax", None for logits).
        dropout_rate: dropout before the main classifier (the paper: 0.4).
        weights: None or a path to a weights file.
        name: model name.
        features_only: return {"P1".."P5": feature map} instead of a classifier.
        aux_logits: add the two auxiliary classifiers; the model then has three outputs
            [main, aux1, aux2] from the layers `predictions`, `aux1_predictions` and
            `aux2_predictions`. Needs `include_top=True` and an input of at least 65x65.
        batch_norm: BatchNormalization after every convolution (see the module docstring).
        kernel_size_5x5: 5 (the paper) or 3 (TF-slim's and torchvision's "5x5" branch).
        local_response_norm: the paper's local response normalization in the stem.
        bn_momentum: BatchNormalization momentum.

    Returns:
        A `keras.Model`, with one output or, with `aux_logits`, three.

    Raises:
        ValueError: for a bad value, an input below the minimum size, or `aux_logits` without a
            classifier.

    Example:
        >>> model = googlenet(aux_logits=True, classes=10, input_shape=(96, 96, 3))
        >>> model.compile("sgd", loss=["sparse_categorical_crossentropy"] * 3,
        ...               loss_weights=[1.0, 0.3, 0.3])
        >>> deployed = strip_auxiliary_heads(model)
    """
    name = name or "googlenet"
    for arg, value in (("aux_logits", aux_logits), ("batch_norm", batch_norm),
                       ("local_response_norm", local_response_norm)):
        _check_bool(arg, value)
    if isinstance(kernel_size_5x5, bool) or kernel_size_5x5 not in (3, 5):
        raise ValueError("`kernel_size_5x5` must be 5 (the paper) or 3 (TF-slim, torchvision). "
                         f"Received: kernel_size_5x5={kernel_size_5x5!r}")
    check_number("bn_momentum", bn_momentum, low=0.0, high=1.0)
    check_head_args(include_top=include_top, classes=classes, pooling=pooling,
                    classifier_activation=classifier_activation, dropout_rate=dropout_rate,
                    weights=weights, has_imagenet_weights=False, features_only=features_only)
    if aux_logits and (features_only or not include_top):
        raise ValueError("`aux_logits=True` adds classifiers, so it needs include_top=True and "
                         f"features_only=False. Received: aux_logits=True, "
                         f"include_top={include_top}, features_only={features_only}")
    image, inputs = resolve_input(
        model_name=f"{name} with aux_logits=True" if aux_logits else name,
        input_shape=input_shape, input_tensor=input_tensor, default_shape=(224, 224, 3),
        min_size=MIN_INPUT_SIZE_AUX if aux_logits else MIN_INPUT_SIZE,
        include_top=include_top and not features_only, fixed_size=aux_logits)
    conv = functools.partial(apply_conv_bn_act_block, activation="relu", use_bias=not batch_norm,
                             batch_norm=batch_norm, bn_epsilon=1e-3, bn_momentum=bn_momentum)

    def lrn(t, layer_name):
        return LocalResponseNormalization(name=layer_name)(t) if local_response_norm else t

    x = conv(image, filters=64, kernel_size=7, strides=2, padding="symmetric", name="stem_conv1")
    endpoints = {2: x}
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool1")(x)
    x = lrn(x, "stem_lrn1")
    x = conv(x, filters=64, kernel_size=1, name="stem_conv2")
    x = conv(x, filters=192, kernel_size=3, name="stem_conv3")
    x = lrn(x, "stem_lrn2")
    endpoints[4] = x
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool2")(x)
    stride, aux_outputs = 8, []

    for row in INCEPTION_TABLE:
        block_name = f"stage{row.stage}_block{row.block}"
        if row.block == 1 and row.stage > 3:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{block_name}_downsample")(x)
            stride *= 2
        x = apply_inception_block(
            x, filters_1x1=row.filters_1x1, reduce_3x3=row.reduce_3x3, filters_3x3=row.filters_3x3,
            reduce_5x5=row.reduce_5x5, filters_5x5=row.filters_5x5, pool_proj=row.pool_proj,
            kernel_size_5x5=kernel_size_5x5, batch_norm=batch_norm, bn_momentum=bn_momentum,
            name=block_name)
        endpoints[stride] = x
        if aux_logits and row.label in AUX_AFTER:
            aux_outputs.append(_apply_auxiliary_classifier(
                x, conv=conv, classes=classes, classifier_activation=classifier_activation,
                name=f"aux{len(aux_outputs) + 1}"))

    if features_only:
        outputs = feature_outputs(endpoints)
    elif include_top:
        outputs = apply_dense_classifier(x, classes=classes, dropout_rate=dropout_rate,
                                         classifier_activation=classifier_activation)
        if aux_logits:
            outputs = [outputs, *aux_outputs]
    else:
        outputs = apply_pooling(x, pooling)
    return finish_model(inputs=inputs, outputs=outputs, name=name, weights=weights,
                        features_only=features_only)


def strip_auxiliary_heads(model: keras.Model) -> keras.Model:
    """The single-output inference model of a GoogLeNet trained with `aux_logits=True`.

    The returned model shares the main path's layers and weights with `model` (nothing is copied),
    so it gives the same predictions as `model`'s first output; the auxiliary classifiers' layers
    are left out, which is what export and deployment need.

    Args:
        model: a functional model with an output from a layer named "predictions" (a model
            without auxiliary outputs is returned as it is).

    Returns:
        A `keras.Model` with one output.

    Raises:
        ValueError: if `model` is not a Keras model with a "predictions" output.

    Example:
        >>> deployed = strip_auxiliary_heads(googlenet(aux_logits=True))
        >>> len(deployed.outputs)
        1
    """
    if not isinstance(model, keras.Model):
        raise ValueError("`model` must be a keras.Model. "
                         f"Received: model of type {type(model).__name__}")
    names = list(getattr(model, "output_names", None) or [])
    if "predictions" not in names:
        raise ValueError("`model` has no output named 'predictions' to keep. "
                         f"Received: a model with outputs {names}")
    if len(names) == 1:
        return model
    main = model.outputs[names.index("predictions")]
    return keras.Model(model.input, main, name=model.name)  # same input structure as `model`
