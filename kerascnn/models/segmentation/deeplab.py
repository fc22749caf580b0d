"""DeepLabv3, DeepLabv3+, the MobileNetV2 paper's Mobile DeepLabv3, and MobileNetV3's LR-ASPP.

- Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation" (DeepLabv3), 2017,
  https://arxiv.org/abs/1706.05587: a backbone whose last strides become dilations (output stride
  16 or 8), Atrous Spatial Pyramid Pooling (`kerascnn.blocks.aspp`), a 1x1 classifier and an
  upsampling of the scores to the input resolution.
- Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
  Segmentation" (DeepLabv3+), ECCV 2018, https://arxiv.org/abs/1802.02611: adds a decoder that
  upsamples the ASPP output 4x (2x at output stride 8) and refines it with the backbone's stride-4
  features (48-channel 1x1 projection, concatenation, two 3x3 convolutions), then upsamples 4x.
  `separable=True` makes the ASPP and decoder 3x3 convolutions depthwise-separable.
- Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
  https://arxiv.org/abs/1801.04381, section 6.3 ("Mobile DeepLabv3"): output stride 16 and an ASPP
  reduced to its 1x1 and image-pooling branches, which the paper found to cost far less for
  almost the same accuracy (`mobile_seg_mobilenet_v2`).
- Howard et al., "Searching for MobileNetV3", ICCV 2019, https://arxiv.org/abs/1905.02244,
  section 6.4 (Lite R-ASPP, `lraspp_mobilenet_v3_large`): on the stride-16 features, a 1x1
  conv-BN-ReLU branch (128 channels) multiplied by a sigmoid gate computed from pooled features,
  upsampled 2x and classified, plus a classifier on the stride-8 features; the sum is upsampled 8x.

What differs, and why:

- The ASPP image-pooling branch is resized back with a `Resizing` layer, which needs the feature
  map's size when the model is built: DeepLab and Mobile DeepLabv3 models have a fixed input size
  (default 512x512), a multiple of the output stride so that every upsampling is by an integer
  factor. The reference implementation works at any size (513x513 in the papers) with bilinear
  resizes to computed sizes and `align_corners`; integer factors let the same `upsampling` choice
  ("nearest", "bilinear" or a transposed convolution) apply everywhere and keep the TFLite graph
  free of shape arithmetic.
- The default upsampling is "nearest" (see `kerascnn.blocks.upsample` for why it quantizes
  well); the papers' bilinear upsampling is `upsampling="bilinear"`, and the final 4x/8x/16x
  upsampling follows the same choice.
- DeepLabv3's head is the paper's (ASPP projection, then the 1x1 classifier); torchvision adds a
  3x3 conv-BN-ReLU between them. ASPP dropout is 0.1 after the projection, as the reference code.
- No multi-grid unit rates in the last ResNet stage and no multi-scale or flipped inputs at
  inference; the backbones dilate their last stages with a constant rate.
- LR-ASPP reads the backbone's last block (160 channels at output stride 16, `features_only`'s
  P5) where torchvision reads the 960-channel 1x1 expansion after it, and its gate pools the whole
  map (as torchvision) where the paper uses a 49x49 average pool with stride (16, 20), a choice
  tied to its 1024x2048 Cityscapes crops. The paper's halving of the last block's channels is not
  applied. LR-ASPP has no image-pooling resize, so it accepts any multiple of 16 (or None).
- CRF post-processing (DeepLab v1/v2) is not part of these models.
"""

from __future__ import annotations

import numbers
import warnings

from keras import layers

from kerascnn.blocks.aspp import apply_aspp_block, aspp_rates
from kerascnn.blocks.conv import apply_conv_bn_act_block
from kerascnn.blocks.decoder import apply_deeplab_decoder_block
from kerascnn.blocks.upsample import apply_upsample_block
from kerascnn.models import mobilenet, resnet  # noqa: F401  (the backbones' registrations)
from kerascnn.models.common import check_choice, check_number, entry_signature, resolve_input
from kerascnn.models.segmentation.common import (apply_classifier, apply_segmentation_output,
                                                 backbone_preprocessing, build_backbone, check_bool,
                                                 check_divisible, check_segmentation_args,
                                                 finish_segmentation_model)
from kerascnn.registry import register_model

DEEPLAB_HEADS = {"v3": "deeplabv3", "v3_plus": "deeplabv3_plus", "mobile": "mobile_seg"}
DEEPLAB_OUTPUT_STRIDES = (8, 16)
DEFAULT_SHAPE = (512, 512, 3)
ASPP_FILTERS = 256


def deeplab(backbone, *, head="v3_plus", input_shape=None, input_tensor=None, classes=21,
            classifier_activation="softmax", weights=None, output_stride=16,
            upsampling="nearest", separable=False, atrous_rates=None, dropout_rate=0.1, alpha=None,
            name=None):
    """Builds DeepLabv3, DeepLabv3+ or Mobile DeepLabv3 on a registered backbone.

    Args:
        backbone: registry name of a model with `features_only` and `output_stride`, e.g.
            "mobilenet_v2", "resnet50".
        head: "v3" (ASPP, classifier, upsample by the output stride), "v3_plus" (ASPP and the
            low-level decoder) or "mobile" (ASPP without atrous branches, MobileNetV2 paper).
        input_shape: (height, width, channels), default (512, 512, 3); height and width must be
            known (the ASPP image pooling resizes to them) and multiples of `output_stride`.
        input_tensor: optional Keras tensor to use as the input.
        classes: number of classes (default 21: PASCAL VOC's 20 and background).
        classifier_activation: "softmax" (default) or None for logits.
        weights: None, "imagenet" (the backbone's ImageNet weights) or the path to a weights
            file of the whole model.
        output_stride: 16 (ASPP rates 6, 12, 18) or 8 (rates 12, 24, 36; 4x the backbone's
            cost in its last stages).
        upsampling: "nearest" (default), "bilinear" or "transpose", for the decoder's and the
            final upsampling.
        separable: depthwise-separable 3x3 convolutions in ASPP and in the decoder.
        atrous_rates: the rates of the ASPP 3x3 branches, one branch each; None (default) gives
            the paper's rates for `output_stride`. The paper's rates suit its 513x513 crops (a
            33x33 map at output stride 16). On a map no larger than a rate, every tap of that
            branch's 3x3 kernel but the centre falls outside the map, and the branch is a 1x1
            convolution (the paper's section 3.3; a warning says so): a 64x64 input has a 4x4
            map at output stride 16, where (1, 2, 3) still sees neighbours.
        dropout_rate: dropout after the ASPP projection.
        alpha: width multiplier of a MobileNet backbone.
        name: model name (default e.g. "deeplabv3_plus_mobilenet_v2").

    Returns:
        A `keras.Model` mapping (N, H, W, C) images to (N, H, W, classes) scores.

    Raises:
        ValueError: a bad argument value, an unknown height or width, or one that is not a
            multiple of `output_stride` (the message names the nearest sizes that work).

    Warns:
        UserWarning: an atrous rate at least as large as the ASPP's feature map (see
            `atrous_rates`).

    Example:
        >>> model = kerascnn.build("deeplabv3_plus_mobilenet_v2", input_shape=(256, 256, 3),
        ...                        output_stride=8, upsampling="bilinear", separable=True)
    """
    check_choice("head", head, tuple(DEEPLAB_HEADS))
    name = name or f"{DEEPLAB_HEADS[head]}_{backbone}"
    check_segmentation_args(model_name=name, classes=classes,
                            classifier_activation=classifier_activation, weights=weights,
                            upsampling=upsampling, imagenet_backbone=backbone)
    check_choice("output_stride", output_stride, DEEPLAB_OUTPUT_STRIDES)
    check_bool("separable", separable)
    if head == "mobile" and atrous_rates is not None:
        raise ValueError("The 'mobile' head has no atrous branches (1x1 and image pooling only). "
                         f"Received: atrous_rates={atrous_rates!r}")
    rates = () if head == "mobile" else _check_atrous_rates(atrous_rates, output_stride)
    check_number("dropout_rate", dropout_rate, low=0.0, high=1.0)
    if dropout_rate >= 1.0:
        raise ValueError(f"`dropout_rate` must be in [0, 1). Received: dropout_rate={dropout_rate!r}")
    image, inputs = resolve_input(model_name=name, input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=DEFAULT_SHAPE,
                                  min_size=32, include_top=True, fixed_size=True)
    check_divisible(name, image, output_stride,
                    f"every upsampling from output stride {output_stride} is by an integer factor")
    kwargs = {} if alpha is None else {"alpha": alpha}
    features = build_backbone(backbone, image, weights=weights, output_stride=output_stride,
                              **kwargs).output
    _warn_degenerate_rates(name, rates, features["P5"].shape[1:3])
    x = apply_aspp_block(features["P5"], filters=ASPP_FILTERS, rates=rates, separable=separable,
                         dropout_rate=dropout_rate, name="aspp")
    factor = output_stride
    if head == "v3_plus":
        x = apply_deeplab_decoder_block(x, features["P2"], factor=output_stride // 4,
                                        filters=ASPP_FILTERS, upsampling=upsampling,
                                        separable=separable, name="decoder")
        factor = 4
    x = apply_classifier(x, classes=classes)
    outputs = apply_segmentation_output(x, factor=factor, upsampling=upsampling,
                                        classifier_activation=classifier_activation)
    return finish_segmentation_model(inputs=inputs, outputs=outputs, name=name, weights=weights)


def _check_atrous_rates(atrous_rates, output_stride) -> tuple:
    """The ASPP rates: the paper's for `output_stride` when None, else positive ints."""
    if atrous_rates is None:
        return aspp_rates(output_stride)
    if isinstance(atrous_rates, (str, bytes)) or not hasattr(atrous_rates, "__iter__"):
        rates = None
    else:
        rates = tuple(atrous_rates)
    if not rates or not all(isinstance(r, numbers.Integral) and not isinstance(r, bool) and r >= 1
                            for r in rates):
        raise ValueError("`atrous_rates` must be None or a non-empty sequence of ints >= 1, "
                         "e.g. (6, 12, 18). Received: "
                         f"atrous_rates={atrous_rates!r}")
    return tuple(int(r) for r in rates)


def _warn_degenerate_rates(model_name, rates, map_size) -> None:
    """Warns about ASPP branches whose 3x3 kernel sees only its centre inside the map."""
    height, width = map_size
    lost = [r for r in rates if r >= height and r >= width]
    if lost:
        warnings.warn(
            f"{model_name}: ASPP atrous rates {lost} are not smaller than its {height}x{width} "
            "feature map, so those 3x3 branches see only their centre tap (each acts as a 1x1 "
            "convolution). Pass smaller `atrous_rates` or a larger input for multi-scale context. "
            f"Received: atrous_rates={tuple(rates)!r}", UserWarning, stacklevel=3)


LRASPP_FILTERS = 128
LRASPP_MULTIPLE = 16


def lraspp(backbone, *, input_shape=None, input_tensor=None, classes=21,
           classifier_activation="softmax", weights=None, upsampling="nearest", alpha=None,
           name=None):
    """Builds a Lite R-ASPP segmentation model (MobileNetV3 paper) on a registered backbone.

    Args:
        backbone: registry name of a model with `features_only` and `output_stride`, e.g.
            "mobilenet_v3_large".
        input_shape: (height, width, channels), default (512, 512, 3); height and width must be
            multiples of 16, or None for a model that takes any multiple of 16.
        input_tensor: optional Keras tensor to use as the input.
        classes: number of classes (default 21).
        classifier_activation: "softmax" (default) or None for logits.
        weights: None, "imagenet" (the backbone's ImageNet weights) or the path to a weights
            file of the whole model.
        upsampling: "nearest" (default), "bilinear" or "transpose", for the 2x and the final 8x
            upsampling.
        alpha: width multiplier of the MobileNet backbone.
        name: model name (default "lraspp_{backbone}").

    Returns:
        A `keras.Model` mapping (N, H, W, C) images to (N, H, W, classes) scores.

    Raises:
        ValueError: a bad argument value, or a height or width that is not a multiple of 16.
    """
    name = name or f"lraspp_{backbone}"
    check_segmentation_args(model_name=name, classes=classes,
                            classifier_activation=classifier_activation, weights=weights,
                            upsampling=upsampling, imagenet_backbone=backbone)
    image, inputs = resolve_input(model_name=name, input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=DEFAULT_SHAPE,
                                  min_size=32, include_top=True)
    check_divisible(name, image, LRASPP_MULTIPLE, "the stride-16 branch, upsampled 2x, is added "
                    "to the stride-8 branch")
    kwargs = {} if alpha is None else {"alpha": alpha}
    features = build_backbone(backbone, image, weights=weights, output_stride=16, **kwargs).output
    high, low = features["P5"], features["P3"]
    x = apply_conv_bn_act_block(high, filters=LRASPP_FILTERS, kernel_size=1, activation="relu",
                                name="head")
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="head_pool")(high)
    gate = layers.Conv2D(LRASPP_FILTERS, 1, padding="same", name="head_gate_conv")(gate)
    gate = layers.Activation("sigmoid", name="head_gate")(gate)
    x = layers.Multiply(name="head_scale")([x, gate])
    x = apply_upsample_block(x, factor=2, mode=upsampling, conv=False, name="decoder_up")
    x = layers.Add(dtype="float32", name="logits_add")(
        [apply_classifier(x, classes=classes, name="logits_high_conv"),
         apply_classifier(low, classes=classes, name="logits_low_conv")])
    outputs = apply_segmentation_output(x, factor=8, upsampling=upsampling,
                                        classifier_activation=classifier_activation)
    return finish_segmentation_model(inputs=inputs, outputs=outputs, name=name, weights=weights)


_V3 = ("Chen et al., Rethinking Atrous Convolution for Semantic Image Segmentation, 2017, "
       "https://arxiv.org/abs/1706.05587")
_V3_PLUS = ("Chen et al., Encoder-Decoder with Atrous Separable Convolution for Semantic Image "
            "Segmentation, ECCV 2018, https://arxiv.org/abs/1802.02611")
_MOBILE = ("Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018, "
           "section 6.3 (Mobile DeepLabv3), https://arxiv.org/abs/1801.04381")
_LRASPP = ("Howard et al., Searching for MobileNetV3, ICCV 2019, section 6.4 (Lite R-ASPP), "
           "https://arxiv.org/abs/1905.02244")


def _register(backbone, *, head, paper, exclude=()):
    """Registers `deeplab(backbone, head=head)` as "{deeplabv3|deeplabv3_plus|mobile_seg}_{backbone}"."""
    @entry_signature(deeplab, exclude=("head", *exclude))
    def entry(**kwargs):
        return deeplab(backbone, head=head, **kwargs)

    entry.__name__ = entry.__qualname__ = f"{DEEPLAB_HEADS[head]}_{backbone}"
    entry.__doc__ = f"{DEEPLAB_HEADS[head]} head (see `deeplab`) on {backbone}."
    register_model(family="deeplab", task="segmentation", paper=paper,
                   default_input_shape=DEFAULT_SHAPE, min_input_size=32,
                   preprocessing=backbone_preprocessing(backbone))(entry)
    return entry


deeplabv3_mobilenet_v2 = _register("mobilenet_v2", head="v3", paper=_V3)
deeplabv3_resnet50 = _register("resnet50", head="v3", paper=_V3, exclude=("alpha",))
deeplabv3_plus_mobilenet_v2 = _register("mobilenet_v2", head="v3_plus", paper=_V3_PLUS)
deeplabv3_plus_resnet50 = _register("resnet50", head="v3_plus", paper=_V3_PLUS, exclude=("alpha",))
# Mobile DeepLabv3 has no 3x3 convolutions in its head: nothing for `separable` or
# `atrous_rates` to change.
mobile_seg_mobilenet_v2 = _register("mobilenet_v2", head="mobile", paper=_MOBILE,
                                    exclude=("separable", "atrous_rates"))


@register_model(family="lraspp", task="segmentation", paper=_LRASPP,
                default_input_shape=DEFAULT_SHAPE, min_input_size=32,
                preprocessing=backbone_preprocessing("mobilenet_v3_large"))
@entry_signature(lraspp)
def lraspp_mobilenet_v3_large(**kwargs):
    """Lite R-ASPP on MobileNetV3-Large (stride-16 and stride-8 features)."""
    return lraspp("mobilenet_v3_large", **kwargs)
