"""U-Net, and U-Net decoders on pretrained backbones.

Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015, https://arxiv.org/abs/1505.04597.

`unet` is the paper's symmetric network: a contracting path of four levels (two 3x3
convolutions and a 2x2 max pool each, 64 to 512 filters), a 1024-filter bottom, and an expanding
path whose every step upsamples 2x with an "up-convolution" that halves the channels,
concatenates the contracting path's map of the same resolution, and applies two 3x3
convolutions; a 1x1 convolution scores the classes. `unet_mobilenet_v2` and `unet_resnet34` take
their contracting path from a backbone (its P1..P5 features, strides 2 to 32) and decode with
five steps of upsample, concatenate the backbone map of the same stride (none at full
resolution), two 3x3 convolutions with batch norm and ReLU, and widths 256, 128, 64, 32, 16.

What differs from the paper, and why:

- "same" padding. The paper's convolutions are unpadded ("valid"), so each 3x3 convolution loses
  a border of one pixel, a 572x572 input gives a 388x388 map, and each skip is centre-cropped
  before the concatenation; with the overlap-tile strategy that suits tiling large microscopy
  images. Here every map at stride s has exactly H/s rows, the output has the input's size, and
  no cropping is needed, which is what every other model of the zoo and most users expect. The
  price: the border pixels see zero padding. Height and width must be multiples of 16 (32 for
  the backbone versions), so that each upsampled map has the size of its skip; a known size that
  is not raises a ValueError naming the nearest sizes that work.
- Batch normalization after every convolution by default (`batch_norm=False` gives the paper's
  convolutions with biases); the paper predates its wide use, and it lets the net train from
  scratch with common learning rates.
- The up-convolution is the default `upsampling="nearest"`: a nearest resize followed by a 3x3
  convolution that halves the channels (a 3x3 kernel pads symmetrically, a 2x2 one with "same"
  padding would shift the map by half a pixel); `upsampling="transpose"` gives the paper's 2x2
  transposed convolution.
- No dropout at the end of the contracting path and no weighted loss for the borders between
  touching cells: both belong to the training recipe, not the architecture.
- 21 classes by default, like the zoo's other segmentation models (the paper used 2).
"""

from __future__ import annotations

from keras import layers

from kerascnn.blocks.conv import apply_conv_bn_act_block
from kerascnn.blocks.decoder import apply_unet_decoder_block
from kerascnn.models import mobilenet, resnet  # noqa: F401  (the backbones' registrations)
from kerascnn.models.common import check_number, entry_signature, resolve_input
from kerascnn.models.segmentation.common import (apply_classifier, apply_segmentation_output,
                                                 backbone_preprocessing, build_backbone, check_bool,
                                                 check_divisible, check_segmentation_args,
                                                 finish_segmentation_model)
from kerascnn.registry import preprocessing_tf, register_model

DEFAULT_SHAPE = (256, 256, 3)
LEVELS = 4  # max pools of the paper's contracting path
BACKBONE_DECODER_FILTERS = (256, 128, 64, 32, 16)


def symmetric_unet(*, input_shape=None, input_tensor=None, classes=21,
                   classifier_activation="softmax", weights=None, upsampling="nearest",
                   base_filters=64, batch_norm=True, name="unet"):
    """Builds the paper's U-Net (with "same" padding).

    Args:
        input_shape: (height, width, channels), default (256, 256, 3); height and width must be
            multiples of 16 (None: any multiple of 16).
        input_tensor: optional Keras tensor to use as the input.
        classes: number of classes (default 21).
        classifier_activation: "softmax" (default) or None for logits.
        weights: None or the path to a weights file (no pretrained encoder exists).
        upsampling: "nearest" (default) or "bilinear" resize then a 3x3 convolution, or
            "transpose" (2x2 transposed convolution, the paper's up-convolution).
        base_filters: filters of the first level (the paper: 64), doubled at each level.
        batch_norm: BatchNormalization after every 3x3 convolution.
        name: model name.

    Returns:
        A `keras.Model` mapping (N, H, W, C) images to (N, H, W, classes) scores.

    Raises:
        ValueError: a bad argument value, or a height or width that is not a multiple of 16
            (the message names the nearest sizes that work).

    Example:
        >>> model = kerascnn.build("unet", input_shape=(128, 128, 1), classes=2)
    """
    check_segmentation_args(model_name=name, classes=classes,
                            classifier_activation=classifier_activation, weights=weights,
                            upsampling=upsampling)
    check_number("base_filters", base_filters, low=1, integer=True)
    check_bool("batch_norm", batch_norm)
    multiple = 2 ** LEVELS
    image, inputs = resolve_input(model_name=name, input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=DEFAULT_SHAPE,
                                  min_size=2 * multiple, include_top=True)
    check_divisible(name, image, multiple, "each upsampled map is joined with the contracting "
                    "path's map of the same size")
    conv = dict(kernel_size=3, batch_norm=batch_norm, use_bias=not batch_norm)
    x, skips = image, []
    for i in range(1, LEVELS + 2):
        filters = base_filters * 2 ** (i - 1)
        for j in (1, 2):
            x = apply_conv_bn_act_block(x, filters=filters, name=f"stage{i}_block{j}", **conv)
        if i <= LEVELS:
            skips.append(x)
            x = layers.MaxPooling2D(2, name=f"stage{i}_block2_pool")(x)
    for k, skip in enumerate(reversed(skips), start=1):
        filters = skip.shape[-1]
        x = apply_unet_decoder_block(x, skip, filters=filters, up_filters=filters,
                                     upsampling=upsampling, batch_norm=batch_norm,
                                     name=f"decoder_block{k}")
    x = apply_classifier(x, classes=classes)
    outputs = apply_segmentation_output(x, factor=1, upsampling=upsampling,
                                        classifier_activation=classifier_activation)
    return finish_segmentation_model(inputs=inputs, outputs=outputs, name=name, weights=weights)


def backbone_unet(backbone, *, input_shape=None, input_tensor=None, classes=21,
                  classifier_activation="softmax", weights=None, upsampling="nearest",
                  decoder_filters=BACKBONE_DECODER_FILTERS, separable=False, alpha=None,
                  name=None):
    """Builds a U-Net whose contracting path is a registered backbone's P1..P5 features.

    Args:
        backbone: registry name of a model with `features_only` and a stride-32 last map, e.g.
            "mobilenet_v2", "resnet34".
        input_shape: (height, width, channels), default (256, 256, 3); height and width must be
            multiples of 32 (None: any multiple of 32).
        input_tensor: optional Keras tensor to use as the input.
        classes: number of classes (default 21).
        classifier_activation: "softmax" (default) or None for logits.
        weights: None, "imagenet" (the backbone's ImageNet weights, where they exist) or the path
            to a weights file of the whole model.
        upsampling: "nearest" (default) or "bilinear" resize, or "transpose" (a 2x2 transposed
            convolution to the decoder block's width).
        decoder_filters: widths of the five decoder blocks, from stride 16 to full resolution.
        separable: depthwise-separable 3x3 convolutions in the decoder blocks instead of full
            ones (a mobile decoder; on a 2-core CPU a fifth less time per training step of
            unet_mobilenet_v2 at 64x64, benchmarks/segmentation.py --separable-decoder).
        alpha: width multiplier of a MobileNet backbone.
        name: model name (default "unet_{backbone}").

    Returns:
        A `keras.Model` mapping (N, H, W, C) images to (N, H, W, classes) scores.

    Raises:
        ValueError: a bad argument value, or a height or width that is not a multiple of 32.
    """
    name = name or f"unet_{backbone}"
    check_segmentation_args(model_name=name, classes=classes,
                            classifier_activation=classifier_activation, weights=weights,
                            upsampling=upsampling, imagenet_backbone=backbone)
    if (not isinstance(decoder_filters, (tuple, list)) or len(decoder_filters) != 5
            or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0
                       for f in decoder_filters)):
        raise ValueError("`decoder_filters` must be 5 positive integers. "
                         f"Received: decoder_filters={decoder_filters!r}")
    check_bool("separable", separable)
    image, inputs = resolve_input(model_name=name, input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=DEFAULT_SHAPE,
                                  min_size=32, include_top=True)
    check_divisible(name, image, 32, "each upsampled map is joined with the backbone's map of "
                    "the same stride")
    kwargs = {} if alpha is None else {"alpha": alpha}
    features = build_backbone(backbone, image, weights=weights, **kwargs).output
    x = features["P5"]
    skips = [features["P4"], features["P3"], features["P2"], features["P1"], None]
    for k, (skip, filters) in enumerate(zip(skips, decoder_filters), start=1):
        x = apply_unet_decoder_block(x, skip, filters=filters,
                                     up_filters=filters if upsampling == "transpose" else None,
                                     upsampling=upsampling, separable=separable,
                                     name=f"decoder_block{k}")
    x = apply_classifier(x, classes=classes)
    outputs = apply_segmentation_output(x, factor=1, upsampling=upsampling,
                                        classifier_activation=classifier_activation)
    return finish_segmentation_model(inputs=inputs, outputs=outputs, name=name, weights=weights)


_PAPER = ("Ronneberger, Fischer and Brox, U-Net: Convolutional Networks for Biomedical Image "
          "Segmentation, MICCAI 2015, https://arxiv.org/abs/1505.04597")
_REGISTER = dict(family="unet", task="segmentation", paper=_PAPER,
                 default_input_shape=DEFAULT_SHAPE, min_input_size=32)


@register_model(**_REGISTER, preprocessing=preprocessing_tf())
@entry_signature(symmetric_unet)
def unet(**kwargs):
    """U-Net: symmetric contracting and expanding paths joined by concatenated skips."""
    return symmetric_unet(**kwargs)


@register_model(**_REGISTER, preprocessing=backbone_preprocessing("mobilenet_v2"))
@entry_signature(backbone_unet)
def unet_mobilenet_v2(**kwargs):
    """U-Net decoder on MobileNetV2's P1..P5 features."""
    return backbone_unet("mobilenet_v2", **kwargs)


@register_model(**_REGISTER, preprocessing=backbone_preprocessing("resnet34"))
@entry_signature(backbone_unet, exclude=("alpha",))
def unet_resnet34(**kwargs):
    """U-Net decoder on ResNet-34's P1..P5 features."""
    return backbone_unet("resnet34", **kwargs)
