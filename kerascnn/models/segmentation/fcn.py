"""Fully convolutional networks: FCN-32s, FCN-16s and FCN-8s.

Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
https://arxiv.org/abs/1411.4038.

FCN-32s scores every position of VGG16's last feature map and upsamples the scores 32x. FCN-16s
adds scores computed from pool4 to the 2x-upsampled coarse scores before a 16x upsampling; FCN-8s
does the same once more with pool3 and upsamples 8x. `fcn8s_<backbone>` applies the FCN-8s head to
another backbone's stride 8, 16 and 32 features (P3, P4, P5 of `features_only=True`).

As in the paper:

- VGG16's fully connected layers become convolutions on pool5: fc6 (7x7, 4096) and fc7 (1x1,
  4096), each with ReLU and dropout 0.5, then a 1x1 class-scoring layer. With weights="imagenet"
  fc6 and fc7 receive VGG16's fc1 and fc2 weights reshaped ("convolutionalization",
  `convolutionalize_vgg16`), as the paper initialises them.
- The skip scoring layers (1x1 convolutions on pool4 and pool3) start at zero, so a freshly built
  FCN-16s/8s computes what the coarser net does and the skips learn a correction.
- `upsampling="transpose"` gives the paper's learned "deconvolutions": kernel 2f, stride f,
  initialised to bilinear interpolation (kernel 4 for the 2x steps; 64, 32 and 16 for the final
  32x, 16x and 8x).

What differs, and why:

- Every convolution uses "same" padding instead of the paper's 100-pixel padding of conv1_1
  followed by "crop" layers that realign the upsampled maps. With "same" padding the maps at
  strides 8, 16 and 32 have exactly H/8, H/16 and H/32 rows when H (and W) are multiples of 32,
  so the skips add without cropping. Height and width must therefore be multiples of 32: a known
  size that is not raises a ValueError naming the nearest sizes that work; with
  `input_shape=(None, None, 3)` one model runs at any multiple of 32 (other sizes fail at run time
  in the skip additions).
- The main class-scoring layer starts random, not at zero as in the paper: with a zero scorer no
  gradient reaches the layers below it in the first step (only the scorer itself moves), which
  the zoo's generic training check rejects. The skip scorers are zero-initialised as in the paper
  (the main path still carries gradients to the backbone).
- The default `upsampling="nearest"` resizes the scores (2x) and follows with a 3x3 convolution
  in place of the learned 2x deconvolutions, and resizes without a convolution for the final
  upsampling, which in the paper is a deconvolution fixed to bilinear interpolation; with
  "transpose" that final layer is trainable too (the zoo's models have no frozen weights).
- The paper trains FCN-16s from a trained FCN-32s and FCN-8s from FCN-16s ("staged" training);
  these builders give the architectures, the training schedule is the user's.
- The other backbones have no fully connected layers to convolutionalize (their classifiers are
  global pooling and one dense layer), so their P5 features are scored directly.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from kerascnn.blocks.conv import apply_activation
from kerascnn.blocks.upsample import apply_upsample_block
from kerascnn.models import mobilenet, resnet, vgg  # noqa: F401  (the backbones' registrations)
from kerascnn.models.common import check_choice, check_number, entry_signature, resolve_input
from kerascnn.models.segmentation.common import (backbone_preprocessing, build_backbone,
                                                 check_divisible, check_segmentation_args,
                                                 apply_segmentation_output,
                                                 finish_segmentation_model)
from kerascnn.registry import register_model

FCN_VARIANTS = (8, 16, 32)
FCN_MULTIPLE = 32
DEFAULT_SHAPE = (512, 512, 3)

# VGG16's pool3 and pool4 (the paper's skip sources) and pool5, by stride exponent.
VGG16_POOLS = {3: "stage3_block3_pool", 4: "stage4_block3_pool", 5: "stage5_block3_pool"}
VGG16_FC = {"head_fc6_conv": ("fc1", (7, 7, 512, 4096)), "head_fc7_conv": ("fc2", (1, 1, 4096, 4096))}


def fcn(backbone, *, variant=8, input_shape=None, input_tensor=None, classes=21,
        classifier_activation="softmax", weights=None, upsampling="nearest", dropout_rate=0.5,
        alpha=None, name=None):
    """Builds an FCN-32s, FCN-16s or FCN-8s on a registered backbone.

    Args:
        backbone: registry name of the backbone: "vgg16" (the paper's net: fc6/fc7 as
            convolutions, skips from pool3 and pool4) or any model with `features_only` (its
            P3, P4 and P5 features), e.g. "mobilenet_v2", "resnet50".
        variant: 32, 16 or 8: the stride of the finest features that are scored.
        input_shape: (height, width, channels), default (512, 512, 3); height and width must be
            multiples of 32, or None for a model that takes any multiple of 32.
        input_tensor: optional Keras tensor to use as the input.
        classes: number of classes (default 21: PASCAL VOC's 20 and background).
        classifier_activation: "softmax" (default) or None for logits.
        weights: None, "imagenet" (the backbone's ImageNet weights, and for VGG16 its fc1/fc2
            reshaped into fc6/fc7) or the path to a weights file of the whole model.
        upsampling: "nearest" (default), "bilinear" or "transpose"; see
            `kerascnn.blocks.upsample`.
        dropout_rate: dropout after fc6 and fc7 (VGG16 only; the paper: 0.5).
        alpha: width multiplier of a MobileNet backbone.
        name: model name (default "fcn{variant}s_{backbone}").

    Returns:
        A `keras.Model` mapping (N, H, W, C) images to (N, H, W, classes) scores.

    Raises:
        ValueError: a bad argument value, or a known height or width that is not a multiple
            of 32 (the message names the nearest sizes that work).

    Example:
        >>> model = kerascnn.build("fcn8s_vgg16", input_shape=(None, None, 3), classes=21)
        >>> model(np.zeros((1, 320, 480, 3))).shape
        TensorShape([1, 320, 480, 21])
    """
    name = name or f"fcn{variant}s_{backbone}"
    check_choice("variant", variant, FCN_VARIANTS)
    check_segmentation_args(model_name=name, classes=classes,
                            classifier_activation=classifier_activation, weights=weights,
                            upsampling=upsampling, imagenet_backbone=backbone)
    check_number("dropout_rate", dropout_rate, low=0.0, high=1.0)
    if dropout_rate >= 1.0:
        raise ValueError(f"`dropout_rate` must be in [0, 1). Received: dropout_rate={dropout_rate!r}")
    image, inputs = resolve_input(model_name=name, input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=DEFAULT_SHAPE,
                                  min_size=FCN_MULTIPLE, include_top=True)
    check_divisible(name, image, FCN_MULTIPLE, "the skips add maps of strides 8, 16 and 32")
    kwargs = {} if alpha is None else {"alpha": alpha}
    net = build_backbone(backbone, image, weights=weights, **kwargs)
    if backbone == "vgg16":
        maps = {n: net.get_layer(pool).output for n, pool in VGG16_POOLS.items()}
        x = maps[5]
        for fc, (_, shape) in VGG16_FC.items():
            block = fc[: -len("_conv")]
            x = layers.Conv2D(shape[-1], shape[:2], padding="same", name=fc)(x)
            x = apply_activation(x, "relu", name=f"{block}_relu")
            if dropout_rate > 0:
                x = layers.Dropout(dropout_rate, name=f"{block}_dropout")(x)
    else:
        maps = {n: net.output[f"P{n}"] for n in (3, 4, 5)}
        x = maps[5]
    x = layers.Conv2D(classes, 1, padding="same", name="head_score")(x)
    stride = 32
    # The skips each variant adds: P4 (pool4) for FCN-16s, then P3 (pool3) for FCN-8s.
    for level in {32: (), 16: (4,), 8: (4, 3)}[variant]:
        x = apply_upsample_block(x, factor=2, mode=upsampling, name=f"decoder_up{level}")
        skip = layers.Conv2D(classes, 1, padding="same", kernel_initializer="zeros",
                             name=f"decoder_score_p{level}")(maps[level])
        x = layers.Add(name=f"decoder_fuse_p{level}")([x, skip])
        stride //= 2
    outputs = apply_segmentation_output(x, factor=stride, upsampling=upsampling,
                                        classifier_activation=classifier_activation)
    model = finish_segmentation_model(inputs=inputs, outputs=outputs, name=name, weights=weights)
    if backbone == "vgg16" and weights == "imagenet":
        convolutionalize_vgg16(model, keras.applications.VGG16(include_top=True, weights="imagenet"))
    return model


def convolutionalize_vgg16(model, source) -> None:
    """Copies VGG16's fully connected layers fc1 and fc2 into an FCN's fc6 (7x7 convolution) and
    fc7 (1x1 convolution): the paper's "convolutionalization".

    keras.applications' VGG16 flattens its 7x7x512 pool5 map in (row, column, channel) order, so
    fc1's (25088, 4096) kernel reshaped to (7, 7, 512, 4096) is the 7x7 convolution that computes,
    at the centre of a 7x7 map, what fc1 computes on the flattened map.

    Args:
        model: an FCN built on "vgg16".
        source: `keras.applications.VGG16(include_top=True)` (with ImageNet weights, normally).
    """
    for target, (dense, shape) in VGG16_FC.items():
        kernel, bias = source.get_layer(dense).get_weights()
        model.get_layer(target).set_weights([np.reshape(kernel, shape), bias])


_PAPER = ("Long, Shelhamer and Darrell, Fully Convolutional Networks for Semantic Segmentation, "
          "CVPR 2015, https://arxiv.org/abs/1411.4038")


def _register(variant, backbone, *, exclude=()):
    """Registers `fcn(backbone, variant=variant)` as "fcn{variant}s_{backbone}"."""
    name = f"fcn{variant}s_{backbone}"

    @entry_signature(fcn, exclude=("variant", *exclude))
    def entry(**kwargs):
        return fcn(backbone, variant=variant, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"FCN-{variant}s on {backbone}: class scores from stride "
                     f"{variant} upward, upsampled {variant}x to the input resolution.")
    register_model(family="fcn", task="segmentation", paper=_PAPER, default_input_shape=DEFAULT_SHAPE,
                   min_input_size=FCN_MULTIPLE, preprocessing=backbone_preprocessing(backbone))(entry)
    return entry


fcn32s_vgg16 = _register(32, "vgg16", exclude=("alpha",))
fcn16s_vgg16 = _register(16, "vgg16", exclude=("alpha",))
fcn8s_vgg16 = _register(8, "vgg16", exclude=("alpha",))
fcn8s_mobilenet_v2 = _register(8, "mobilenet_v2", exclude=("dropout_rate",))
fcn8s_resnet50 = _register(8, "resnet50", exclude=("alpha", "dropout_rate"))
