"""VGG-11/13/16/19, with and without batch normalization, from one configuration table.

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015, https://arxiv.org/abs/1409.1556.

`VGG_CONFIGS` is Table 1 of the paper: configurations A (11 weight layers), B (13), D (16) and E
(19), as the number of 3x3 convolutions in each of the five stages; every stage ends with a 2x2/2
max pool, and the classifier is FC-4096, FC-4096, FC-classes with dropout 0.5 after the first two.
What differs, and why:

- Configurations A-LRN (A plus local response normalization, which the paper found useless) and C
  (D with 1x1 convolutions in the last three stages) are not provided; nobody publishes weights
  for them.
- vgg16 and vgg19 match keras.applications' VGG16/VGG19 exactly (layer order, weight shapes, a
  Flatten head over the last pool without dropout at inference), so `weights="imagenet"` loads
  their ImageNet weights and logits agree within 1e-5. keras.applications has no dropout layers;
  ours (the paper's 0.5, `dropout_rate`) change training only.
- The `_bn` models follow torchvision's `vgg*_bn`: BatchNormalization (epsilon 1e-5) between
  each convolution and its ReLU, and the convolutions keep their biases, which BN makes redundant,
  so that trainable parameter counts equal torchvision's and its weights could be ported one to
  one. The BN models have no keras.applications counterpart, so no `weights="imagenet"`.
- The 2x2/2 max pools use "same" padding, so a map of odd size keeps its last row and column
  (size ceil(n / 2), the zoo's rule for every feature map) where keras.applications and
  torchvision drop them (floor). At sizes divisible by 32, such as 224, the two are identical.
- torchvision puts an adaptive 7x7 average pool before the classifier so that any input size
  gives 7x7x512 features; here, as in the paper and keras.applications, the classifier flattens
  the last pool, so with `include_top=True` the input size is fixed when the model is built (the
  parameter count depends on it; 224x224 gives the published counts).
- `features_only=True` returns {"P1".."P5"}: the last tensor at each stride, i.e. the output of
  the last convolution of stages 2-5 (strides 2, 4, 8, 16, just before their pools) and the output
  of the last pool (stride 32, the input of the classifier). Stage 1's output at stride 1 (P0) is
  not included: it is full resolution and 64 channels wide, a costly map that no dense-prediction
  head uses.
"""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.conv import BN_MOMENTUM, apply_conv_bn_act_block
from kerascnn.models.common import (apply_fc_classifier, apply_pooling, check_choice, check_head_args, check_number,
                                    entry_signature, feature_outputs, finish_model, resolve_input)
from kerascnn.registry import preprocessing_caffe, preprocessing_torch, register_model

STAGE_FILTERS = (64, 128, 256, 512, 512)

# Table 1 of the paper: 3x3 convolutions per stage (widths STAGE_FILTERS), by configuration.
VGG_CONFIGS = {
    #     stage: 1  2  3  4  5      weight layers = convolutions + 3 fully connected
    "A": (1, 1, 2, 2, 2),  # VGG-11
    "B": (2, 2, 2, 2, 2),  # VGG-13
    "D": (2, 2, 3, 3, 3),  # VGG-16
    "E": (2, 2, 4, 4, 4),  # VGG-19
}

# The configurations keras.applications publishes ImageNet weights for (without batch norm).
KERAS_APPLICATIONS = {"D": "VGG16", "E": "VGG19"}

# torchvision's vgg*_bn BatchNormalization epsilon (PyTorch's default).
VGG_BN_EPSILON = 1e-5

HIDDEN_UNITS = (4096, 4096)


def vgg(config, *, input_shape=None, input_tensor=None, include_top=True, classes=1000,
        pooling=None, classifier_activation="softmax", dropout_rate=0.5, weights=None, name=None,
        features_only=False, batch_norm=False, bn_momentum=BN_MOMENTUM):
    """Builds a VGG network from its configuration in Table 1 of the paper.

    Args:
        config: "A" (VGG-11), "B" (VGG-13), "D" (VGG-16) or "E" (VGG-19).
        input_shape: (height, width, channels), default (224, 224, 3). With `include_top` the
            height and width must be known: the classifier flattens the last feature map.
        input_tensor: optional Keras tensor to use as the input.
        include_top: add the three fully connected layers.
        classes: number of classes of the classifier.
        pooling: None, "avg" or "max": global pooling of a headless model.
        classifier_activation: activation of the classifier ("softmax", None for logits).
        dropout_rate: dropout after each hidden fully connected layer (the paper: 0.5).
        weights: None, "imagenet" (vgg16 and vgg19: keras.applications' weights) or a path.
        name: model name (default: "vgg16", "vgg16_bn", ...).
        features_only: return {"P1".."P5": feature map} instead of a classifier.
        batch_norm: BatchNormalization after every convolution (torchvision's `_bn` models).
        bn_momentum: BatchNormalization momentum.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: for a bad value, an input smaller than 32x32, or ImageNet weights for a
            configuration that has none.

    Example:
        >>> model = vgg("D", input_shape=(64, 64, 3), classes=10)  # VGG-16 on 64x64 images
    """
    check_choice("config", config, tuple(VGG_CONFIGS))
    if not isinstance(batch_norm, bool):
        raise ValueError(f"`batch_norm` must be True or False. Received: batch_norm={batch_norm!r}")
    check_number("bn_momentum", bn_momentum, low=0.0, high=1.0)
    repeats = VGG_CONFIGS[config]
    name = name or f"vgg{sum(repeats) + 3}{'_bn' if batch_norm else ''}"
    keras_app = None if batch_norm else KERAS_APPLICATIONS.get(config)
    check_head_args(include_top=include_top, classes=classes, pooling=pooling,
                    classifier_activation=classifier_activation, dropout_rate=dropout_rate,
                    weights=weights, has_imagenet_weights=keras_app is not None,
                    features_only=features_only)
    with_head = include_top and not features_only
    image, inputs = resolve_input(model_name=name, input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=(224, 224, 3),
                                  min_size=32, include_top=with_head, fixed_size=with_head,
                                  channels=3 if weights == "imagenet" else None)
    if weights == "imagenet" and with_head and tuple(image.shape[1:3]) != (224, 224):
        raise ValueError(f"{name} with weights='imagenet' and include_top=True needs 224x224 "
                         "inputs (its classifier was trained on 7x7x512 features); use "
                         "include_top=False for other sizes. "
                         f"Received: input_shape={tuple(image.shape[1:])}")

    x, endpoints, stride = image, {}, 1
    for i, (convs, filters) in enumerate(zip(repeats, STAGE_FILTERS), start=1):
        for j in range(1, convs + 1):
            x = apply_conv_bn_act_block(x, filters=filters, kernel_size=3, use_bias=True,
                                        batch_norm=batch_norm, bn_epsilon=VGG_BN_EPSILON,
                                        bn_momentum=bn_momentum, activation="relu",
                                        name=f"stage{i}_block{j}")
        if stride > 1:
            endpoints[stride] = x
        x = layers.MaxPooling2D(2, strides=2, padding="same", name=f"stage{i}_block{convs}_pool")(x)
        stride *= 2
    endpoints[stride] = x

    if features_only:
        outputs = feature_outputs(endpoints)
    elif include_top:
        outputs = apply_fc_classifier(x, units=HIDDEN_UNITS, classes=classes,
                                      classifier_activation=classifier_activation,
                                      dropout_rate=dropout_rate)
    else:
        outputs = apply_pooling(x, pooling)

    def imagenet_source():
        import keras

        return getattr(keras.applications, keras_app)(include_top=with_head, weights="imagenet")

    return finish_model(inputs=inputs, outputs=outputs, name=name, weights=weights,
                        imagenet_source=imagenet_source, features_only=features_only)


_PAPER = ("Simonyan and Zisserman, Very Deep Convolutional Networks for Large-Scale Image "
          "Recognition, ICLR 2015, https://arxiv.org/abs/1409.1556")
_KA_TABLE = "keras.applications documentation table (single 224 crop)"
_TV = "torchvision model card (IMAGENET1K_V1 weights)"


def _accuracy(top1, source=_TV):
    return {"imagenet_top1": top1, "source": source}


# vgg16/vgg19 take keras.applications' Caffe-converted weights, hence Caffe preprocessing; the
# other models' accuracies are torchvision's, measured with torchvision's preprocessing.
@register_model(family="vgg", paper=_PAPER, preprocessing=preprocessing_torch(),
                published_accuracy=_accuracy(69.02))
@entry_signature(vgg, exclude=("batch_norm", "bn_momentum"))
def vgg11(**kwargs):
    """VGG-11 (configuration A): 8 convolutions and 3 fully connected layers."""
    return vgg("A", **kwargs)


@register_model(family="vgg", paper=_PAPER, preprocessing=preprocessing_torch(),
                published_accuracy=_accuracy(70.37))
@entry_signature(vgg, exclude=("batch_norm",))
def vgg11_bn(**kwargs):
    """VGG-11 (configuration A) with batch normalization after every convolution."""
    return vgg("A", batch_norm=True, **kwargs)


@register_model(family="vgg", paper=_PAPER, preprocessing=preprocessing_torch(),
                published_accuracy=_accuracy(69.928))
@entry_signature(vgg, exclude=("batch_norm", "bn_momentum"))
def vgg13(**kwargs):
    """VGG-13 (configuration B): 10 convolutions and 3 fully connected layers."""
    return vgg("B", **kwargs)


@register_model(family="vgg", paper=_PAPER, preprocessing=preprocessing_torch(),
                published_accuracy=_accuracy(71.586))
@entry_signature(vgg, exclude=("batch_norm",))
def vgg13_bn(**kwargs):
    """VGG-13 (configuration B) with batch normalization after every convolution."""
    return vgg("B", batch_norm=True, **kwargs)


@register_model(family="vgg", paper=_PAPER, preprocessing=preprocessing_caffe(),
                keras_applications="VGG16", published_accuracy=_accuracy(71.3, _KA_TABLE))
@entry_signature(vgg, exclude=("batch_norm", "bn_momentum"))
def vgg16(**kwargs):
    """VGG-16 (configuration D): 13 convolutions and 3 fully connected layers."""
    return vgg("D", **kwargs)


@register_model(family="vgg", paper=_PAPER, preprocessing=preprocessing_torch(),
                published_accuracy=_accuracy(73.36))
@entry_signature(vgg, exclude=("batch_norm",))
def vgg16_bn(**kwargs):
    """VGG-16 (configuration D) with batch normalization after every convolution."""
    return vgg("D", batch_norm=True, **kwargs)


@register_model(family="vgg", paper=_PAPER, preprocessing=preprocessing_caffe(),
                keras_applications="VGG19", published_accuracy=_accuracy(71.3, _KA_TABLE))
@entry_signature(vgg, exclude=("batch_norm", "bn_momentum"))
def vgg19(**kwargs):
    """VGG-19 (configuration E): 16 convolutions and 3 fully connected layers."""
    return vgg("E", **kwargs)


@register_model(family="vgg", paper=_PAPER, preprocessing=preprocessing_torch(),
                published_accuracy=_accuracy(74.218))
@entry_signature(vgg, exclude=("batch_norm",))
def vgg19_bn(**kwargs):
    """VGG-19 (configuration E) with batch normalization after every convolution."""
    return vgg("E", batch_norm=True, **kwargs)
