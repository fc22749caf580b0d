"""ResNet v1 and v2, the CIFAR ResNets, and the plain networks of the degradation experiment.

- He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
  https://arxiv.org/abs/1512.03385 (v1, the CIFAR networks of section 4.2, plain networks).
- He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016,
  https://arxiv.org/abs/1603.05027 (v2, pre-activation).
- Dai et al., "Deformable Convolutional Networks", ICCV 2017, https://arxiv.org/abs/1703.06211,
  and Zhu et al., "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019,
  https://arxiv.org/abs/1811.11168 (resnet50_dcn: deformable 3x3 convolutions).

Each network is a block type plus per-stage repeats and filters, decoded by one builder.
Conventions, chosen so that published weights load unchanged:

- resnet50/101/152 and the v2 models follow keras.applications exactly (convolutions with biases,
  stride in the first 1x1 convolution of a bottleneck, BN epsilon 1.001e-5, v2's stride in the last
  block of a stage), so `weights="imagenet"` loads its weights and outputs agree within 1e-5.
- resnet18/34 follow torchvision (no convolution biases, BN epsilon 1e-5), so their parameter
  counts equal torchvision's.
- Padding is symmetric (explicit ZeroPadding2D before strided convolutions), as in the Caffe and
  PyTorch models, not TensorFlow's asymmetric "same".
- The CIFAR networks (6n+2 layers: 16/32/64 filters) use the paper's option A shortcut (strided
  identity plus zero channels), so a residual net and its plain twin have the same parameters.
- BN momentum is 0.99 (keras.applications: 0.99 as well); `bn_momentum` sets it.
- resnet50_dcn is resnet50 with every bottleneck 3x3 convolution of conv3_x, conv4_x and conv5_x
  (our stage2..stage4) deformable, the configuration DCNv2 (section 3.1) stacks; Dai et al. made
  only the last three 3x3 layers (conv5_x) deformable. The default is the unmodulated v1 operator;
  `modulated=True` gives DCNv2's. `deformable_stages` applies the same option to any bottleneck
  ResNet. The deformable layers keep the names of the convolutions they replace (e.g.
  `stage4_block2_conv2_conv`), with the same kernel shape; their offset branches start at zero,
  so the untrained network computes what resnet50 computes with the same weights. No ImageNet
  weights are offered (the papers fine-tune detectors from ImageNet ResNets instead).
"""

from __future__ import annotations

import dataclasses

from keras import layers

from kerascnn.blocks.conv import BN_MOMENTUM, apply_conv_bn_act_block
from kerascnn.blocks.residual import (RESNET_BN_EPSILON, apply_basic_block, apply_bottleneck_block,
                                      apply_preact_bottleneck_block, close_residual_block)
from kerascnn.layers.deformable import DeformableConv2D
from kerascnn.models.common import (check_choice, check_head_args, check_number, entry_signature,
                                    finish_classifier, resolve_input)
from kerascnn.registry import preprocessing_caffe, preprocessing_tf, preprocessing_torch, register_model


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """A ResNet: block type, blocks per stage, base filters per stage and conventions.

    Attributes:
        block: "basic", "bottleneck" or "preact_bottleneck".
        repeats: blocks per stage.
        filters: base filters per stage (a bottleneck outputs 4x).
        strides: stride of each stage (applied at its first block, or its last for v2).
        stem: "imagenet" (7x7/2 conv + 3x3/2 max pool) or "cifar" (3x3 conv, 16 filters).
        conv_bias: convolutions carry biases (keras.applications' ResNets do).
        bn_epsilon: BatchNormalization epsilon.
        shortcut_type: "projection" (1x1 conv) or "padding" (option A) when shapes change.
        se_ratio: squeeze-and-excitation ratio of every block, None for none.
        deformable_stages: stages (numbered 1.. as in the layer names stage{i}_*) whose bottleneck
            3x3 convolutions are deformable; stage 1 is the paper's conv2_x.
        keras_applications: the counterpart's name, if any.
    """

    block: str
    repeats: tuple
    filters: tuple = (64, 128, 256, 512)
    strides: tuple = (1, 2, 2, 2)
    stem: str = "imagenet"
    conv_bias: bool = False
    bn_epsilon: float = 1e-5
    shortcut_type: str = "projection"
    se_ratio: float | None = None
    deformable_stages: tuple = ()
    keras_applications: str | None = None

    @property
    def output_strides(self):
        return (None, 8, 16, 32) if self.stem == "imagenet" else (None,)

    @property
    def min_input_size(self):
        return 32 if self.stem == "imagenet" else 8


def _v1(repeats, **kw):
    return ResNetSpec("bottleneck", repeats, conv_bias=True, bn_epsilon=RESNET_BN_EPSILON, **kw)


def _v2(repeats, **kw):
    return ResNetSpec("preact_bottleneck", repeats, strides=(2, 2, 2, 1), conv_bias=True,
                      bn_epsilon=RESNET_BN_EPSILON, **kw)


def _cifar(n):
    return ResNetSpec("basic", (n, n, n), filters=(16, 32, 64), strides=(1, 2, 2), stem="cifar",
                      shortcut_type="padding")


RESNET18 = ResNetSpec("basic", (2, 2, 2, 2))
RESNET34 = ResNetSpec("basic", (3, 4, 6, 3))
RESNET50 = _v1((3, 4, 6, 3), keras_applications="ResNet50")
RESNET101 = _v1((3, 4, 23, 3), keras_applications="ResNet101")
RESNET152 = _v1((3, 8, 36, 3), keras_applications="ResNet152")
RESNET50_V2 = _v2((3, 4, 6, 3), keras_applications="ResNet50V2")
RESNET101_V2 = _v2((3, 4, 23, 3), keras_applications="ResNet101V2")
RESNET152_V2 = _v2((3, 8, 36, 3), keras_applications="ResNet152V2")
# SE-ResNets: squeeze-and-excitation (ratio 1/16) before each residual addition, on torchvision-
# style ResNets (no conv biases), as timm's seresnet* models.
SE_RESNET18 = dataclasses.replace(RESNET18, se_ratio=1 / 16)
SE_RESNET34 = dataclasses.replace(RESNET34, se_ratio=1 / 16)
SE_RESNET50 = ResNetSpec("bottleneck", (3, 4, 6, 3), se_ratio=1 / 16)
SE_RESNET101 = ResNetSpec("bottleneck", (3, 4, 23, 3), se_ratio=1 / 16)
SE_RESNET152 = ResNetSpec("bottleneck", (3, 8, 36, 3), se_ratio=1 / 16)
# Deformable ResNet-50: conv3_x..conv5_x (stages 2-4 here), as in DCNv2's section 3.1.
RESNET50_DCN = dataclasses.replace(RESNET50, deformable_stages=(2, 3, 4), keras_applications=None)


def _apply_deformable_bottleneck_block(x, *, filters, strides=1, dilation_rate=1, shortcut=True,
                                       se_ratio=None, use_bias=True, modulated=False,
                                       bn_epsilon=RESNET_BN_EPSILON, bn_momentum=BN_MOMENTUM,
                                       drop_rate=0.0, name):
    """1x1 conv (strided) -> BN -> ReLU -> 3x3 deformable conv -> BN -> ReLU -> 1x1 conv (4x
    filters) -> BN [-> SE] [+ shortcut] -> ReLU.

    `apply_bottleneck_block` (stride in the 1x1) with a `DeformableConv2D` as its 3x3
    convolution. It lives with the model rather than in kerascnn/blocks, whose blocks use built-in
    Keras layers only. Layer names are those of `apply_bottleneck_block`, so the deformable layer
    is {name}_conv2_conv.
    """
    common = dict(use_bias=use_bias, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum)
    residual = x
    x = apply_conv_bn_act_block(x, filters=filters, kernel_size=1, strides=strides,
                                activation="relu", name=f"{name}_conv1", **common)
    # Stride 1 and an odd kernel: "same" padding is the symmetric padding of the regular block.
    x = DeformableConv2D(filters, 3, padding="same", dilation_rate=dilation_rate,
                         use_bias=use_bias, modulated=modulated, kernel_initializer="he_normal",
                         name=f"{name}_conv2_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum,
                                  name=f"{name}_conv2_bn")(x)
    x = layers.ReLU(name=f"{name}_conv2_relu")(x)
    x = apply_conv_bn_act_block(x, filters=4 * filters, kernel_size=1, activation=None,
                                name=f"{name}_conv3", **common)
    return close_residual_block(x, residual, strides=strides, shortcut=shortcut,
                                se_ratio=se_ratio, drop_rate=drop_rate, name=name, **common)


def resnet(spec: ResNetSpec, *, input_shape=None, input_tensor=None, include_top=True,
           classes=None, pooling=None, classifier_activation="softmax", dropout_rate=0.0,
           weights=None, name=None, shortcut=True, se_ratio=None, drop_connect_rate=0.0,
           output_stride=None, features_only=False, bn_momentum=BN_MOMENTUM,
           deformable_stages=None, modulated=False):
    """Builds a ResNet from its spec.

    Args:
        spec: the architecture (`RESNET50`, `RESNET50_V2`, ...).
        input_shape: (height, width, channels); default (224, 224, 3), CIFAR nets (32, 32, 3).
        input_tensor: optional Keras tensor to use as the input.
        include_top: add the classifier.
        classes: number of classes (default 1000, CIFAR nets 10).
        pooling: None, "avg" or "max": global pooling of a headless model.
        classifier_activation: activation of the classifier ("softmax", None for logits).
        dropout_rate: dropout before the classifier.
        weights: None, "imagenet" (models with a keras.applications counterpart) or a path.
        name: model name.
        shortcut: False removes every shortcut: the "plain" network of the same depth.
        se_ratio: adds squeeze-and-excitation with this reduction ratio to every block (default:
            none; 1/16 for the se_resnet models, as in SENet). 0 removes it.
        drop_connect_rate: stochastic depth: block b of B drops its residual branch with
            probability drop_connect_rate * b / B.
        output_stride: None, 8, 16 or 32 (ImageNet stems); below 32 the last strides become
            dilations.
        features_only: return {"P{n}": feature map} instead of a classifier.
        bn_momentum: BatchNormalization momentum.
        deformable_stages: stages (1..4, as numbered in the layer names; stage 1 is the
            paper's conv2_x) whose bottleneck 3x3 convolutions become `DeformableConv2D` layers
            (default: none; (2, 3, 4) for resnet50_dcn). Bottleneck ResNets (v1) only.
        modulated: the deformable convolutions are DCNv2's modulated ones (a sigmoid mask per
            sampling point).

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: for a bad value or an input below the architecture's minimum size.
    """
    is_cifar = spec.stem == "cifar"
    se_ratio = spec.se_ratio if se_ratio is None else se_ratio
    classes = (10 if is_cifar else 1000) if classes is None else classes
    if not isinstance(shortcut, bool):
        raise ValueError(f"`shortcut` must be True or False. Received: shortcut={shortcut!r}")
    if se_ratio is not None:
        check_number("se_ratio", se_ratio, low=0.0, high=1.0)
    check_number("drop_connect_rate", drop_connect_rate, low=0.0, high=0.99)
    check_number("bn_momentum", bn_momentum, low=0.0, high=1.0)
    check_choice("output_stride", output_stride, spec.output_strides)
    deformable_stages = _check_deformable(spec, deformable_stages, modulated)
    imagenet_ok = (spec.keras_applications is not None and shortcut and se_ratio == spec.se_ratio
                   and not deformable_stages)
    check_head_args(include_top=include_top, classes=classes, pooling=pooling,
                    classifier_activation=classifier_activation, dropout_rate=dropout_rate,
                    weights=weights, has_imagenet_weights=imagenet_ok, features_only=features_only)
    default_shape = (32, 32, 3) if is_cifar else (224, 224, 3)
    image, inputs = resolve_input(model_name=name or "resnet", input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=default_shape,
                                  min_size=spec.min_input_size, include_top=include_top,
                                  channels=3 if weights == "imagenet" else None)
    bn = dict(bn_epsilon=spec.bn_epsilon, bn_momentum=bn_momentum)
    preact = spec.block == "preact_bottleneck"

    if is_cifar:
        x = apply_conv_bn_act_block(image, filters=16, kernel_size=3, activation="relu",
                                    use_bias=spec.conv_bias, name="stem", **bn)
        endpoints, nominal = {1: x}, 1
    else:
        x = apply_conv_bn_act_block(image, filters=64, kernel_size=7, strides=2, padding="symmetric",
                                    activation=None if preact else "relu", use_bias=spec.conv_bias,
                                    batch_norm=not preact, name="stem", **bn)
        endpoints, nominal = {2: x}, 2
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
        nominal *= 2
        endpoints[nominal] = x
    actual, rate = nominal, 1
    total_blocks, block_index = sum(spec.repeats), 0

    for i, (repeats, filters, stage_stride) in enumerate(
            zip(spec.repeats, spec.filters, spec.strides), start=1):
        for j in range(1, repeats + 1):
            # v1 strides the first block of a stage; keras.applications' v2 strides the last.
            strided_block = repeats if preact else 1
            strides = stage_stride if j == strided_block else 1
            block_rate = rate
            if output_stride is not None and actual * strides > output_stride:
                rate *= strides
                strides = 1
            actual *= strides
            nominal *= stage_stride if j == strided_block else 1
            common = dict(filters=filters, strides=strides, dilation_rate=block_rate,
                          shortcut=shortcut, se_ratio=se_ratio, name=f"stage{i}_block{j}",
                          drop_rate=drop_connect_rate * block_index / total_blocks, **bn)
            if spec.block == "basic":
                x = apply_basic_block(x, shortcut_type=spec.shortcut_type, use_bias=spec.conv_bias,
                                      **common)
            elif spec.block == "bottleneck" and i in deformable_stages:
                x = _apply_deformable_bottleneck_block(x, use_bias=spec.conv_bias,
                                                       modulated=modulated, **common)
            elif spec.block == "bottleneck":
                x = apply_bottleneck_block(x, use_bias=spec.conv_bias, **common)
            else:
                x = apply_preact_bottleneck_block(x, conv_shortcut=(j == 1), **common)
            block_index += 1
            endpoints[nominal] = x

    if preact:
        x = layers.BatchNormalization(epsilon=spec.bn_epsilon, momentum=bn_momentum, name="head_bn")(x)
        x = layers.ReLU(name="head_relu")(x)
        endpoints[nominal] = x
    return finish_classifier(x, endpoints, inputs=inputs, name=name or "resnet", weights=weights,
                             include_top=include_top, features_only=features_only,
                             pooling=pooling, classes=classes,
                             classifier_activation=classifier_activation,
                             dropout_rate=dropout_rate, keras_applications=spec.keras_applications)


def _check_deformable(spec, deformable_stages, modulated):
    """Validates `deformable_stages` and `modulated`; returns the stages as a tuple."""
    stages = spec.deformable_stages if deformable_stages is None else deformable_stages
    count = len(spec.repeats)
    if (not isinstance(stages, (tuple, list))
            or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= count for s in stages)):
        raise ValueError(f"`deformable_stages` must be a tuple of stage numbers from 1 to {count}. "
                         f"Received: deformable_stages={deformable_stages!r}")
    if stages and spec.block != "bottleneck":
        raise ValueError("`deformable_stages` applies to bottleneck ResNets (v1: resnet50, "
                         f"resnet101, ...); this one has {spec.block!r} blocks. "
                         f"Received: deformable_stages={deformable_stages!r}")
    if not isinstance(modulated, bool):
        raise ValueError(f"`modulated` must be True or False. Received: modulated={modulated!r}")
    if modulated and not stages:
        raise ValueError("`modulated` applies to deformable convolutions, and this model has "
                         "none; pass `deformable_stages` too. Received: modulated=True")
    return tuple(stages)


_PAPER_V1 = ("He et al., Deep Residual Learning for Image Recognition, CVPR 2016, "
             "https://arxiv.org/abs/1512.03385")
_PAPER_V2 = ("He et al., Identity Mappings in Deep Residual Networks, ECCV 2016, "
             "https://arxiv.org/abs/1603.05027")
_PAPER_SE = ("Hu et al., Squeeze-and-Excitation Networks, CVPR 2018, "
             "https://arxiv.org/abs/1709.01507")
_PAPER_DCN = ("Dai et al., Deformable Convolutional Networks, ICCV 2017, "
              "https://arxiv.org/abs/1703.06211; Zhu et al., Deformable ConvNets v2: More "
              "Deformable, Better Results, CVPR 2019, https://arxiv.org/abs/1811.11168")
_KA_TABLE = "keras.applications documentation table (single 224 crop)"
_TV = "torchvision model card (IMAGENET1K_V1 weights)"


def _register(name, spec, *, paper=_PAPER_V1, preprocessing=None, accuracy=None, shortcut=True,
              family="resnet"):
    """Registers `resnet(spec)` under `name`: the entry is a 3-line function like any other."""

    @entry_signature(resnet)
    def entry(**kwargs):
        kwargs.setdefault("name", name)
        kwargs.setdefault("shortcut", shortcut)
        return resnet(spec, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{name}: {spec.block} blocks, {spec.repeats} per stage" + (
        f", squeeze-and-excitation 1/{round(1 / spec.se_ratio)}" if spec.se_ratio else "") + (
        f", deformable 3x3 convolutions in stages {spec.deformable_stages}"
        if spec.deformable_stages else "") + "."
    default_shape = (32, 32, 3) if spec.stem == "cifar" else (224, 224, 3)
    register_model(family=family, paper=paper, default_input_shape=default_shape,
                   min_input_size=spec.min_input_size,
                   preprocessing=preprocessing or preprocessing_tf(),
                   published_accuracy=accuracy, keras_applications=spec.keras_applications)(entry)
    return entry


resnet18 = _register("resnet18", RESNET18, preprocessing=preprocessing_torch(),
                     accuracy={"imagenet_top1": 69.76, "source": _TV})
resnet34 = _register("resnet34", RESNET34, preprocessing=preprocessing_torch(),
                     accuracy={"imagenet_top1": 73.31, "source": _TV})
resnet50 = _register("resnet50", RESNET50, preprocessing=preprocessing_caffe(),
                     accuracy={"imagenet_top1": 74.9, "source": _KA_TABLE})
resnet101 = _register("resnet101", RESNET101, preprocessing=preprocessing_caffe(),
                      accuracy={"imagenet_top1": 76.4, "source": _KA_TABLE})
resnet152 = _register("resnet152", RESNET152, preprocessing=preprocessing_caffe(),
                      accuracy={"imagenet_top1": 76.6, "source": _KA_TABLE})
resnet50_v2 = _register("resnet50_v2", RESNET50_V2, paper=_PAPER_V2,
                        accuracy={"imagenet_top1": 76.0, "source": _KA_TABLE})
resnet101_v2 = _register("resnet101_v2", RESNET101_V2, paper=_PAPER_V2,
                         accuracy={"imagenet_top1": 77.2, "source": _KA_TABLE})
resnet152_v2 = _register("resnet152_v2", RESNET152_V2, paper=_PAPER_V2,
                         accuracy={"imagenet_top1": 78.0, "source": _KA_TABLE})
_SE_TOP1 = "paper, Table 2 (single 224 crop, re-implementation column)"
se_resnet18 = _register("se_resnet18", SE_RESNET18, paper=_PAPER_SE, family="senet",
                        preprocessing=preprocessing_torch())
se_resnet34 = _register("se_resnet34", SE_RESNET34, paper=_PAPER_SE, family="senet",
                        preprocessing=preprocessing_torch())
se_resnet50 = _register("se_resnet50", SE_RESNET50, paper=_PAPER_SE, family="senet",
                        preprocessing=preprocessing_torch(),
                        accuracy={"imagenet_top1": 76.71, "source": _SE_TOP1})
se_resnet101 = _register("se_resnet101", SE_RESNET101, paper=_PAPER_SE, family="senet",
                         preprocessing=preprocessing_torch(),
                         accuracy={"imagenet_top1": 77.62, "source": _SE_TOP1})
se_resnet152 = _register("se_resnet152", SE_RESNET152, paper=_PAPER_SE, family="senet",
                         preprocessing=preprocessing_torch(),
                         accuracy={"imagenet_top1": 78.43, "source": _SE_TOP1})
# resnet50's layout and preprocessing, so that its weights fit every layer but the offset branches.
resnet50_dcn = _register("resnet50_dcn", RESNET50_DCN, paper=_PAPER_DCN, family="dcn",
                         preprocessing=preprocessing_caffe())

# CIFAR-10 test accuracy: 100 - error of Table 6 in the paper. Plain nets: same depth, no shortcuts.
_TABLE6 = "paper, Table 6 (CIFAR-10)"
resnet20_cifar = _register("resnet20_cifar", _cifar(3), accuracy={"cifar10_top1": 91.25, "source": _TABLE6})
resnet32_cifar = _register("resnet32_cifar", _cifar(5), accuracy={"cifar10_top1": 92.49, "source": _TABLE6})
resnet44_cifar = _register("resnet44_cifar", _cifar(7), accuracy={"cifar10_top1": 92.83, "source": _TABLE6})
resnet56_cifar = _register("resnet56_cifar", _cifar(9), accuracy={"cifar10_top1": 93.03, "source": _TABLE6})
resnet110_cifar = _register("resnet110_cifar", _cifar(18), accuracy={"cifar10_top1": 93.39, "source": _TABLE6})
plain20_cifar = _register("plain20_cifar", _cifar(3), shortcut=False)
plain32_cifar = _register("plain32_cifar", _cifar(5), shortcut=False)
plain44_cifar = _register("plain44_cifar", _cifar(7), shortcut=False)
plain56_cifar = _register("plain56_cifar", _cifar(9), shortcut=False)
plain110_cifar = _register("plain110_cifar", _cifar(18), shortcut=False)
