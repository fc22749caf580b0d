"""AlexNet as one tower.

Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NIPS 2012,
https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks;
single-tower widths from Krizhevsky, "One weird trick for parallelizing convolutional neural
networks", 2014, https://arxiv.org/abs/1404.5997.

Five convolutions (11x11/4, 5x5, 3x3, 3x3, 3x3) with ReLU, 3x3/2 overlapping max pools after the
first, second and fifth, then FC-4096, FC-4096, FC-classes with dropout 0.5 after the two hidden
layers. What differs from the paper, and why:

- The paper split the network over two GPUs: 96-256-384-384-256 kernels in two halves, with the
  second, fourth and fifth convolutions seeing only their own GPU's half of the previous layer.
  The default here is the single tower of the "one weird trick" paper with widths
  64-192-384-256-256 (`TORCHVISION_FILTERS`), which is torchvision's `alexnet`: its parameter count
  (61,100,840) and published accuracy are checkable, and its weights could be ported one to one.
  `filters=PAPER_FILTERS, two_tower=True` rebuilds the paper's connectivity in one graph: grouped
  convolutions (`groups=2`) for layers 2, 4 and 5 (60,965,224 parameters).
- Local response normalization (after the ReLUs of layers 1 and 2, k=2, n=5, alpha=1e-4,
  beta=0.75) is off by default, as in torchvision: later work (e.g. the VGG paper) found it does
  little, and Keras has no built-in layer for it. `local_response_norm=True` adds it as
  `kerascnn.layers.LocalResponseNormalization`.
- The first convolution pads 2 pixels on each side, so a 224x224 input gives the paper's 55x55
  maps (the paper's "224" only works out with 227 pixels and no padding). Other convolutions use
  "same" padding, equal to torchvision's symmetric padding at stride 1.
- The classifier flattens the last pool (6x6x256 at 224x224) instead of torchvision's adaptive
  6x6 average pool, so with `include_top=True` the input size is fixed when the model is built.
- Dropout follows the two hidden fully connected layers, as in the paper (torchvision drops their
  inputs instead); this changes nothing at inference.
- "Valid" pooling, as in the paper and torchvision, makes the maps smaller than input / stride
  (224 -> 55 -> 27 -> 13 -> 6; the smallest input is 63x63, which ends at 1x1), and the first
  convolution has stride 4, so there is no stride-2 map. Hence no `features_only` option: the
  zoo's P1..P5 contract (size ceil(input / 2**n)) cannot be met without changing the parameter
  count. A headless model (`include_top=False`) ends at the last pool, 6x6 at 224x224.
"""

from __future__ import annotations

from keras import layers

from kerascnn.layers.lrn import LocalResponseNormalization
from kerascnn.models.common import (apply_fc_classifier, apply_pooling, check_head_args,
                                    finish_model, resolve_input)
from kerascnn.registry import preprocessing_torch, register_model

TORCHVISION_FILTERS = (64, 192, 384, 256, 256)
PAPER_FILTERS = (96, 256, 384, 384, 256)

# One row per convolution: (stage, kernel size, stride, max pool after, grouped in the two-tower
# paper model, local response normalization after it).
ALEXNET_LAYERS = (
    (1, 11, 4, True, False, True),
    (2, 5, 1, True, True, True),
    (3, 3, 1, False, False, False),
    (3, 3, 1, False, True, False),
    (3, 3, 1, True, True, False),
)

HIDDEN_UNITS = (4096, 4096)

# The smallest input that leaves a 1x1 map after the third pool: 63 -> 15 -> 7 -> 3 -> 1.
MIN_INPUT_SIZE = 63


def _check_filters(filters, two_tower):
    ok = (isinstance(filters, (tuple, list)) and len(filters) == len(ALEXNET_LAYERS)
          and all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in filters))
    if not ok:
        raise ValueError("`filters` must be five positive integers, e.g. "
                         f"{TORCHVISION_FILTERS} or {PAPER_FILTERS}. Received: filters={filters!r}")
    if not isinstance(two_tower, bool):
        raise ValueError(f"`two_tower` must be True or False. Received: two_tower={two_tower!r}")
    if two_tower and any(f % 2 for f in filters):
        raise ValueError("`two_tower=True` splits every layer in two halves, so `filters` must be "
                         f"even. Received: filters={tuple(filters)}")


_PAPER = ("Krizhevsky, Sutskever and Hinton, ImageNet Classification with Deep Convolutional "
          "Neural Networks, NIPS 2012, https://papers.nips.cc/paper/4824-imagenet-classification"
          "-with-deep-convolutional-neural-networks")


@register_model(family="alexnet", paper=_PAPER, min_input_size=MIN_INPUT_SIZE,
                preprocessing=preprocessing_torch(),
                published_accuracy={"imagenet_top1": 56.522,
                                    "source": "torchvision model card (IMAGENET1K_V1 weights; the "
                                              "default single-tower widths)"})
def alexnet(*, input_shape=None, input_tensor=None, include_top=True, classes=1000, pooling=None,
            classifier_activation="softmax", dropout_rate=0.5, weights=None, name=None,
            filters=TORCHVISION_FILTERS, two_tower=False,
            local_response_norm=False):
    """Builds AlexNet.

    Args:
        input_shape: (height, width, channels), default (224, 224, 3); at least 63x63.
        input_tensor: optional Keras tensor to use as the input.
        include_top: add the three fully connected layers.
        classes: number of classes of the classifier.
        pooling: None, "avg" or "max": global pooling of a headless model.
        classifier_activation: activation of the classifier ("softmax", None for logits).
        dropout_rate: dropout after each hidden fully connected layer (the paper: 0.5).
        weights: None or a path to a weights file (no ImageNet weights in Keras format exist).
        name: model name.
        filters: widths of the five convolutions: `TORCHVISION_FILTERS` (default) or
            `PAPER_FILTERS`.
        two_tower: the paper's two-GPU connectivity: layers 2, 4 and 5 as grouped convolutions
            with two groups.
        local_response_norm: the paper's local response normalization after layers 1 and 2.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: for a bad value or an input smaller than 63x63.

    Example:
        >>> paper = alexnet(filters=PAPER_FILTERS, two_tower=True, local_response_norm=True)
    """
    name = name or "alexnet"
    _check_filters(filters, two_tower)
    if not isinstance(local_response_norm, bool):
        raise ValueError("`local_response_norm` must be True or False. "
                         f"Received: local_response_norm={local_response_norm!r}")
    check_head_args(include_top=include_top, classes=classes, pooling=pooling,
                    classifier_activation=classifier_activation, dropout_rate=dropout_rate,
                    weights=weights, has_imagenet_weights=False)
    image, inputs = resolve_input(model_name=name, input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=(224, 224, 3),
                                  min_size=MIN_INPUT_SIZE, include_top=include_top,
                                  fixed_size=include_top)

    x, block = image, {}
    for width, (stage, kernel, strides, pool, grouped, lrn) in zip(filters, ALEXNET_LAYERS):
        block[stage] = block.get(stage, 0) + 1
        prefix = f"stage{stage}_block{block[stage]}"
        if strides > 1:
            x = layers.ZeroPadding2D(2, name=f"{prefix}_pad")(x)
        x = layers.Conv2D(width, kernel, strides=strides, padding="valid" if strides > 1 else "same",
                          groups=2 if (two_tower and grouped) else 1, name=f"{prefix}_conv")(x)
        x = layers.ReLU(name=f"{prefix}_relu")(x)
        if lrn and local_response_norm:
            x = LocalResponseNormalization(size=5, alpha=1e-4, beta=0.75, k=2.0,
                                           name=f"{prefix}_lrn")(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, name=f"{prefix}_pool")(x)

    if include_top:
        outputs = apply_fc_classifier(x, units=HIDDEN_UNITS, classes=classes,
                                      classifier_activation=classifier_activation,
                                      dropout_rate=dropout_rate)
    else:
        outputs = apply_pooling(x, pooling)
    return finish_model(inputs=inputs, outputs=outputs, name=name, weights=weights)
