"""MobileNet V1, V2 and V3: one stage table per architecture, decoded by one builder (which
EfficientNet, in efficientnet.py, shares).

- V1: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications", 2017, https://arxiv.org/abs/1704.04861 (depthwise-separable convolutions).
- V2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
  https://arxiv.org/abs/1801.04381.
- V3: Howard et al., "Searching for MobileNetV3", ICCV 2019, https://arxiv.org/abs/1905.02244.

The layer structure, width rounding and weight order follow keras.applications exactly, so its
ImageNet weights load unchanged (`weights="imagenet"`) and outputs agree within 1e-5. Differences:

- Strided convolutions use TensorFlow's "same" padding instead of keras.applications' explicit
  ZeroPadding2D + "valid". For inputs of known size the two pad identically (V1's fixed
  ((0, 1), (0, 1)) differs only at odd sizes), and "same" needs no separate PAD op in TFLite.
- BatchNormalization momentum is 0.99 (keras.applications: 0.999). Inference is unaffected; with
  0.999 the moving statistics lag so far behind when training from scratch that inference-mode
  accuracy collapses (see FACTS in the design notes). `bn_momentum` sets it.
- MobileNetV3's input rescaling is not inside the model: `model_info(name).preprocessing` says
  what the input must be (the same [-1, 1] range), as for every other model in the zoo.
- `output_stride` (8 or 16) replaces the last strides by dilation for dense prediction, and
  `features_only=True` returns {"P1".."P5"} feature maps (the last block at each stride).
"""

from __future__ import annotations

import dataclasses
import math

from keras import layers

from kerascnn.blocks.conv import BN_MOMENTUM, apply_activation, apply_conv_bn_act_block, make_divisible
from kerascnn.blocks.depthwise_separable import apply_depthwise_separable_block
from kerascnn.blocks.inverted_residual import apply_inverted_residual_block
from kerascnn.models.common import (apply_conv_classifier, apply_dense_classifier, apply_pooling,
                                    check_choice, check_head_args, check_number, entry_signature,
                                    feature_outputs, finish_model, resolve_input)
from kerascnn.registry import register_model

OUTPUT_STRIDES = (None, 8, 16, 32)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One row of a MobileNet table: `repeats` blocks, the first one strided.

    `expansion` is the inverted-residual expansion ratio, one value for the stage or one per block.
    """

    filters: int
    repeats: int
    strides: int
    expansion: float | tuple = 1
    kernel_size: int = 3
    activation: str = "relu6"
    se: bool = False

    def expansions(self):
        if isinstance(self.expansion, tuple):
            if len(self.expansion) != self.repeats:
                raise ValueError(f"Stage {self}: one expansion per block is needed.")
            return self.expansion
        return (self.expansion,) * self.repeats


@dataclasses.dataclass(frozen=True)
class MobileNetSpec:
    """An architecture: its block type, stem, stage table, head and width-multiplier rules.

    Attributes:
        width_rule: how `alpha` scales a width: "truncate" (V1: int(f * alpha)), "divisible_int"
            (V2: make_divisible(int(f * alpha))), "divisible" (V3: make_divisible(f * alpha)).
        head_filters: the 1x1 convolution after the last stage; an int, or "6x" for six times
            the last stage's width (V3); scaled only when alpha > 1.
        hidden_filters: V3's extra 1x1 convolution between pooling and the classifier.
    """

    block: str  # "separable" (V1) or "inverted_residual" (V2, V3)
    stem_filters: int
    stem_activation: str
    stages: tuple
    width_rule: str
    scale_stem: bool = True
    head_filters: int | str | None = None
    head_activation: str = "relu6"
    hidden_filters: int | None = None
    classifier: str = "dense"  # "dense" or "conv"
    se_gate: str = "sigmoid"
    se_activation: str = "relu"
    se_rule: str = "expanded"  # squeeze width from the expanded width, or "input" (EfficientNet)
    default_se_ratio: float | None = None
    head_scale: str = "above_one"  # scale the head with the width only when it is > 1, or "always"
    default_dropout: float = 0.2
    default_drop_connect: float = 0.0
    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    default_size: int = 224
    imagenet_alphas: tuple = ()
    keras_applications: str = ""
    registry_name: str = ""


# V1, Table 1 of the paper: each row is a depthwise-separable block (stride on the first).
MOBILENET_V1 = MobileNetSpec(
    block="separable", stem_filters=32, stem_activation="relu6", width_rule="truncate",
    classifier="conv", default_dropout=1e-3, imagenet_alphas=(0.25, 0.5, 0.75, 1.0),
    keras_applications="MobileNet", registry_name="mobilenet_v1",
    stages=(
        Stage(64, 1, 1),
        Stage(128, 2, 2),
        Stage(256, 2, 2),
        Stage(512, 6, 2),
        Stage(1024, 2, 2),
    ))

# V2, Table 2 of the paper: (expansion t, channels c, repeats n, stride s).
MOBILENET_V2 = MobileNetSpec(
    block="inverted_residual", stem_filters=32, stem_activation="relu6",
    width_rule="divisible_int", head_filters=1280, head_activation="relu6",
    imagenet_alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4), keras_applications="MobileNetV2",
    registry_name="mobilenet_v2",
    stages=(
        #     c  n  s  t
        Stage(16, 1, 1, 1),
        Stage(24, 2, 2, 6),
        Stage(32, 3, 2, 6),
        Stage(64, 4, 2, 6),
        Stage(96, 3, 1, 6),
        Stage(160, 3, 2, 6),
        Stage(320, 1, 1, 6),
    ))

HS = "hard_swish"

# V3-Large, Table 1 of the paper (expansion = exp size / input channels).
MOBILENET_V3_LARGE = MobileNetSpec(
    block="inverted_residual", stem_filters=16, stem_activation=HS, width_rule="divisible",
    scale_stem=False, head_filters="6x", head_activation=HS, hidden_filters=1280,
    classifier="conv", se_gate="hard_sigmoid", default_se_ratio=0.25, imagenet_alphas=(0.75, 1.0),
    keras_applications="MobileNetV3Large", registry_name="mobilenet_v3_large",
    stages=(
        Stage(16, 1, 1, 1, 3, "relu"),
        Stage(24, 2, 2, (4, 3), 3, "relu"),
        Stage(40, 3, 2, 3, 5, "relu", se=True),
        Stage(80, 4, 2, (6, 2.5, 2.3, 2.3), 3, HS),
        Stage(112, 2, 1, 6, 3, HS, se=True),
        Stage(160, 3, 2, 6, 5, HS, se=True),
    ))

# V3-Small, Table 2 of the paper.
MOBILENET_V3_SMALL = dataclasses.replace(
    MOBILENET_V3_LARGE, hidden_filters=1024, keras_applications="MobileNetV3Small",
    registry_name="mobilenet_v3_small",
    stages=(
        Stage(16, 1, 2, 1, 3, "relu", se=True),
        Stage(24, 2, 2, (72 / 16, 88 / 24), 3, "relu"),
        Stage(40, 3, 2, (4, 6, 6), 5, HS, se=True),
        Stage(48, 2, 1, 3, 5, HS, se=True),
        Stage(96, 3, 2, 6, 5, HS, se=True),
    ))


def _scale(filters, width, rule):
    if rule == "truncate":
        return int(filters * width)
    if rule == "divisible_int":
        return make_divisible(int(filters * width))
    return make_divisible(filters * width)


def _minimalistic(spec: MobileNetSpec) -> MobileNetSpec:
    """MobileNetV3 "minimalistic": 3x3 kernels, ReLU, no squeeze-and-excitation."""
    stages = tuple(dataclasses.replace(s, kernel_size=3, activation="relu", se=False)
                   for s in spec.stages)
    return dataclasses.replace(spec, stages=stages, stem_activation="relu", head_activation="relu")


def _stage_expansions(stage: Stage, depth: float):
    """Per-block expansion ratios after depth scaling (ceil(depth * repeats) blocks)."""
    expansions = stage.expansions()
    repeats = int(math.ceil(depth * stage.repeats))
    return expansions[:repeats] + (expansions[-1],) * (repeats - len(expansions))


def mobilenet(spec: MobileNetSpec, *, input_shape=None, input_tensor=None, include_top=True,
              classes=1000, pooling=None, classifier_activation="softmax", dropout_rate=None,
              weights=None, name=None, alpha=1.0, depth_multiplier=1, minimalistic=False,
              width_coefficient=None, depth_coefficient=None, se_ratio=None,
              drop_connect_rate=None, output_stride=None, features_only=False,
              bn_momentum=BN_MOMENTUM):
    """Builds a MobileNet or EfficientNet from its stage table.

    Args:
        spec: the architecture (`MOBILENET_V2`, `MOBILENET_V3_LARGE`, `EFFICIENTNETS["b0"]`, ...).
        input_shape: (height, width, channels); spatial dims may be None. Default: the spec's
            resolution (224 for MobileNets, 224-600 for EfficientNet B0-B7).
        input_tensor: optional Keras tensor to use as the input.
        include_top: add the classifier.
        classes: number of classes of the classifier.
        pooling: None, "avg" or "max": global pooling of a headless model.
        classifier_activation: activation of the classifier ("softmax", None for logits).
        dropout_rate: dropout before the classifier (default: the spec's; 1e-3 for V1 as in
            keras.applications, 0.2 for V2 and V3, 0.2-0.5 for EfficientNet B0-B7).
        weights: None, "imagenet" (keras.applications' weights) or a path to a weights file.
        name: model name (default: the registry name).
        alpha: width multiplier (MobileNets).
        depth_multiplier: depthwise channel multiplier (V1 only).
        minimalistic: V3 without hard-swish, SE and 5x5 kernels.
        width_coefficient: EfficientNet's width scaling (default: the variant's).
        depth_coefficient: EfficientNet's depth scaling: ceil(depth_coefficient * repeats) blocks.
        se_ratio: squeeze-and-excitation ratio. V1/V2: adds SE to every block; V3/EfficientNet:
            the ratio of their SE blocks (default 0.25), 0 removes them.
        drop_connect_rate: stochastic depth: block b of B drops its residual branch with
            probability drop_connect_rate * b / B (default 0 for MobileNets, 0.2 for EfficientNet).
        output_stride: None (32), 8, 16 or 32; below 32 the last strides become dilations.
        features_only: return {"P1".."P5": feature map} instead of a classifier.
        bn_momentum: BatchNormalization momentum.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: for a bad value, an input smaller than 32x32, or weights that do not exist for
            this configuration.
    """
    is_v1, is_v3 = spec.block == "separable", spec.se_gate == "hard_sigmoid"
    name = name or spec.registry_name
    check_number("alpha", alpha, low=0, low_inclusive=False)
    check_number("depth_multiplier", depth_multiplier, low=1, integer=True)
    if depth_multiplier != 1 and not is_v1:
        raise ValueError("`depth_multiplier` applies to mobilenet_v1 only. "
                         f"Received: depth_multiplier={depth_multiplier}")
    if minimalistic and not is_v3:
        raise ValueError(f"`minimalistic` applies to MobileNetV3 only. Received: minimalistic={minimalistic}")
    width_coefficient = spec.width_coefficient if width_coefficient is None else width_coefficient
    depth_coefficient = spec.depth_coefficient if depth_coefficient is None else depth_coefficient
    check_number("width_coefficient", width_coefficient, low=0, low_inclusive=False)
    check_number("depth_coefficient", depth_coefficient, low=0, low_inclusive=False)
    check_choice("output_stride", output_stride, OUTPUT_STRIDES)
    drop_connect_rate = spec.default_drop_connect if drop_connect_rate is None else drop_connect_rate
    check_number("drop_connect_rate", drop_connect_rate, low=0.0, high=0.99)
    check_number("bn_momentum", bn_momentum, low=0.0, high=1.0)
    if se_ratio is not None:
        check_number("se_ratio", se_ratio, low=0.0, high=1.0)
    dropout_rate = spec.default_dropout if dropout_rate is None else dropout_rate
    se_ratio = spec.default_se_ratio if se_ratio is None else se_ratio
    width, depth = alpha * width_coefficient, depth_coefficient
    imagenet_ok = (alpha in spec.imagenet_alphas and depth_multiplier == 1
                   and width_coefficient == spec.width_coefficient
                   and depth_coefficient == spec.depth_coefficient
                   and se_ratio == spec.default_se_ratio and (not minimalistic or alpha == 1.0))
    check_head_args(include_top=include_top, classes=classes, pooling=pooling,
                    classifier_activation=classifier_activation, dropout_rate=dropout_rate,
                    weights=weights, has_imagenet_weights=imagenet_ok, features_only=features_only)
    if minimalistic:
        spec = _minimalistic(spec)
    image, inputs = resolve_input(model_name=name, input_shape=input_shape, input_tensor=input_tensor,
                                  default_shape=(spec.default_size, spec.default_size, 3), min_size=32,
                                  include_top=include_top, channels=3 if weights == "imagenet" else None)
    bn = dict(bn_momentum=bn_momentum)

    stem_filters = _scale(spec.stem_filters, width, spec.width_rule) if spec.scale_stem else spec.stem_filters
    x = apply_conv_bn_act_block(image, filters=stem_filters, kernel_size=3, strides=2,
                                activation=spec.stem_activation, name="stem", **bn)
    endpoints = {2: x}
    nominal, actual, rate = 2, 2, 1
    stage_expansions = [_stage_expansions(stage, depth) for stage in spec.stages]
    total_blocks = sum(len(e) for e in stage_expansions)
    block_index = 0
    for i, (stage, expansions) in enumerate(zip(spec.stages, stage_expansions), start=1):
        filters = _scale(stage.filters, width, spec.width_rule)
        for j, expansion in enumerate(expansions, start=1):
            strides = stage.strides if j == 1 else 1
            block_rate = rate
            if output_stride is not None and actual * strides > output_stride:
                rate *= strides
                strides_used = 1
            else:
                actual *= strides
                strides_used = strides
            nominal *= strides
            block_name = f"stage{i}_block{j}"
            se = se_ratio if (stage.se or not (is_v3 or spec.se_rule == "input")) else None
            if is_v1:
                x = apply_depthwise_separable_block(
                    x, filters=filters, kernel_size=stage.kernel_size, strides=strides_used,
                    dilation_rate=block_rate, depth_multiplier=depth_multiplier,
                    activation=stage.activation, se_ratio=se, name=block_name, **bn)
            else:
                in_filters = x.shape[-1]
                expand = in_filters if expansion == 1 else make_divisible(in_filters * expansion)
                if not se:
                    se_filters = None
                elif spec.se_rule == "input":
                    se_filters = max(1, int(in_filters * se))
                else:
                    se_filters = make_divisible(expand * se)
                x = apply_inverted_residual_block(
                    x, filters=filters, expand_filters=expand, kernel_size=stage.kernel_size,
                    strides=strides_used, dilation_rate=block_rate, activation=stage.activation,
                    se_filters=se_filters, se_gate=spec.se_gate, se_activation=spec.se_activation,
                    drop_rate=drop_connect_rate * block_index / total_blocks, name=block_name, **bn)
            block_index += 1
            endpoints[nominal] = x

    def imagenet_source(top):
        return _keras_applications(spec, alpha, top, minimalistic, depth_multiplier, classes,
                                   dropout_rate)

    if features_only:
        return finish_model(inputs=inputs, outputs=feature_outputs(endpoints), name=name,
                            weights=weights, features_only=True,
                            imagenet_source=lambda: imagenet_source(False))

    if spec.head_filters is not None:
        if spec.head_filters == "6x":
            head = make_divisible(x.shape[-1] * 6)
        elif spec.head_scale == "always" or width > 1.0:
            head = make_divisible(spec.head_filters * width)
        else:
            head = spec.head_filters
        x = apply_conv_bn_act_block(x, filters=head, kernel_size=1, activation=spec.head_activation,
                                    name="head", **bn)
    if not include_top:
        x = apply_pooling(x, pooling)
    elif spec.classifier == "dense":
        x = apply_dense_classifier(x, classes=classes, classifier_activation=classifier_activation,
                                   dropout_rate=dropout_rate)
    else:
        x = layers.GlobalAveragePooling2D(keepdims=True, name="head_pool")(x)
        if spec.hidden_filters:
            hidden = make_divisible(spec.hidden_filters * width) if width > 1.0 else spec.hidden_filters
            x = layers.Conv2D(hidden, 1, padding="same", name="head_hidden_conv")(x)
            x = apply_activation(x, spec.head_activation, name=f"head_hidden_{spec.head_activation}")
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="head_dropout")(x)
        x = apply_conv_classifier(x, classes=classes, classifier_activation=classifier_activation)
    return finish_model(inputs=inputs, outputs=x, name=name, weights=weights,
                        imagenet_source=lambda: imagenet_source(include_top))


def _keras_applications(spec, alpha, include_top, minimalistic=False, depth_multiplier=1,
                        classes=1000, dropout_rate=0.0, weights="imagenet"):
    """The keras.applications counterpart with the same architecture (used for weight transfer
    and by the parity tests)."""
    import keras

    builder = getattr(keras.applications, spec.keras_applications)
    kwargs = dict(include_top=include_top, weights=weights, classes=classes)
    if spec.block == "separable":
        kwargs.update(alpha=alpha, depth_multiplier=depth_multiplier, dropout=dropout_rate or 1e-3)
    elif spec.se_gate == "hard_sigmoid":
        kwargs.update(alpha=alpha, minimalistic=minimalistic, include_preprocessing=False,
                      dropout_rate=dropout_rate)
    elif spec.se_rule != "input":  # EfficientNet's builders take no width argument
        kwargs.update(alpha=alpha)
    return builder(**kwargs)


_EFFICIENTNET_ARGS = ("width_coefficient", "depth_coefficient")

_PAPERS = {

    "v1": "Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile Vision "
          "Applications, 2017, https://arxiv.org/abs/1704.04861",
    "v2": "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018, "
          "https://arxiv.org/abs/1801.04381",
    "v3": "Howard et al., Searching for MobileNetV3, ICCV 2019, https://arxiv.org/abs/1905.02244",
}


@register_model(family="mobilenet", paper=_PAPERS["v1"], keras_applications="MobileNet",
                published_accuracy={"imagenet_top1": 70.6, "source": "paper, Table 8 (1.0 MobileNet-224)"})
@entry_signature(mobilenet, exclude=("minimalistic", *_EFFICIENTNET_ARGS))
def mobilenet_v1(**kwargs):
    """MobileNet V1: depthwise-separable convolutions with width (`alpha`) and depth multipliers."""
    return mobilenet(MOBILENET_V1, **kwargs)


@register_model(family="mobilenet", paper=_PAPERS["v2"], keras_applications="MobileNetV2",
                published_accuracy={"imagenet_top1": 72.0, "source": "paper, Table 4 (1.0, 224)"})
@entry_signature(mobilenet, exclude=("minimalistic", "depth_multiplier", *_EFFICIENTNET_ARGS))
def mobilenet_v2(**kwargs):
    """MobileNetV2: inverted residuals with linear bottlenecks, ReLU6, `alpha` from 0.35 to 1.4."""
    return mobilenet(MOBILENET_V2, **kwargs)


@register_model(family="mobilenet", paper=_PAPERS["v3"], keras_applications="MobileNetV3Small",
                published_accuracy={"imagenet_top1": 67.4, "source": "paper, Table 3 (Small 1.0)"})
@entry_signature(mobilenet, exclude=("depth_multiplier", *_EFFICIENTNET_ARGS))
def mobilenet_v3_small(**kwargs):
    """MobileNetV3-Small: hard-swish, squeeze-and-excitation with a hard-sigmoid gate."""
    return mobilenet(MOBILENET_V3_SMALL, **kwargs)


@register_model(family="mobilenet", paper=_PAPERS["v3"], keras_applications="MobileNetV3Large",
                published_accuracy={"imagenet_top1": 75.2, "source": "paper, Table 3 (Large 1.0)"})
@entry_signature(mobilenet, exclude=("depth_multiplier", *_EFFICIENTNET_ARGS))
def mobilenet_v3_large(**kwargs):
    """MobileNetV3-Large: hard-swish, squeeze-and-excitation with a hard-sigmoid gate."""
    return mobilenet(MOBILENET_V3_LARGE, **kwargs)

