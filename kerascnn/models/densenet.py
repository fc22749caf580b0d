"""DenseNet-121/169/201 (ImageNet) and DenseNet-BC-100 (CIFAR).

Huang et al., "Densely Connected Convolutional Networks", CVPR 2017,
https://arxiv.org/abs/1608.06993.

A DenseNet is a growth rate k plus the number of layers in each dense block, decoded by one
builder. All four models are DenseNet-BC: every layer is BN -> ReLU -> 1x1 conv (4k) -> BN -> ReLU
-> 3x3 conv (k), concatenated to its input, and each transition halves the channels (compression
0.5) before a 2x2 average pool. What differs from the paper, and why:

- densenet121/169/201 follow keras.applications exactly (stem: explicit symmetric zero padding,
  7x7/2 conv with 2k = 64 filters, BN, ReLU, padding, 3x3/2 max pool; convolutions without bias; BN
  epsilon 1.001e-5; final BN + ReLU before global pooling), so `weights="imagenet"` loads its
  weights unchanged and outputs agree within 1e-5. Their input convention is keras.applications'
  `densenet.preprocess_input` (mode "torch": [0, 1] pixels, ImageNet mean/std), which
  `model_info(name).preprocessing` declares.
- densenet_bc100_cifar is the paper's CIFAR network (L=100, k=12: three blocks of 16 layers; a 3x3
  conv with 2k = 24 filters and no BN as stem; 32x32 input, 10 classes). As in the authors' Torch
  code, convolutions have no bias: 769,162 trainable parameters (793,150 with the BN moving
  statistics), the paper's "0.8M". The paper's dropout (0.2 after each conv) is for the runs
  without data augmentation only; the C10+ result we quote used none, so there is none.
- Convolutions start from he_normal (the zoo's default; the Torch code uses He's fan-out normal,
  keras.applications Glorot uniform). This changes only training from scratch.
- The transitions' 2x2 average pools pad like "same", so every feature map has ceil(H / stride)
  rows, as in the rest of the zoo. keras.applications pools "valid" and drops an odd last row; the
  two agree whenever the transitions see even sizes (any input that is a multiple of 32, e.g. 224).
- BN momentum is 0.99 (keras.applications: 0.99 too); `bn_momentum` sets it.
- Options the paper does not have: `output_stride=16` for dense prediction (the last transition
  pools with stride 1 and the last block dilates; 8 is not offered, see `DenseNetSpec`), and
  `drop_connect_rate`, stochastic depth on each dense layer's new feature maps. Both leave the
  weights unchanged, so ImageNet weights load with them.
- `features_only=True` returns {"P{n}": map} with n = log2(stride): the stem's ReLU output (P1,
  ImageNet stem only), then for each dense block its output after BN + ReLU (the transition's ReLU,
  and for the last block the head's BN + ReLU). These are the block's full, uncompressed features,
  normalised, which a decoder can use directly; the raw concatenation would mix un-normalised
  conv outputs of very different scales. The CIFAR network's keys start at P0 (stride-1 stem).

Layer names: the stem is `stem_*`; layer j of dense block i is `stage{i}_block{j}_*`; the
transition after block i (L layers) is the last "block" of its stage,
`stage{i}_block{L+1}_transition_{bn,relu,conv,pool}`; the final BN + ReLU is `head_bn`, `head_relu`.
"""

from __future__ import annotations

import dataclasses

from keras import layers

from kerascnn.blocks.conv import BN_MOMENTUM, apply_conv_bn_act_block
from kerascnn.blocks.dense import DENSENET_BN_EPSILON, apply_dense_block, apply_transition_block
from kerascnn.models.common import (check_choice, check_head_args, check_number, entry_signature,
                                    finish_classifier, resolve_input)
from kerascnn.registry import preprocessing_tf, preprocessing_torch, register_model


@dataclasses.dataclass(frozen=True)
class DenseNetSpec:
    """A DenseNet: layers per dense block, growth rate, stem and transition compression.

    Attributes:
        blocks: layers in each dense block.
        growth_rate: channels each layer adds (k); the stem has 2k filters.
        stem: "imagenet" (7x7/2 conv, BN, ReLU, 3x3/2 max pool) or "cifar" (3x3 conv).
        compression: the transitions keep this fraction of the channels (theta).
        bottleneck_width: the 1x1 bottleneck conv has bottleneck_width * k filters; None: no
            bottleneck (the paper's plain DenseNet).
        keras_applications: the counterpart's name, if any.
    """

    blocks: tuple
    growth_rate: int = 32
    stem: str = "imagenet"
    compression: float = 0.5
    bottleneck_width: int | None = 4
    keras_applications: str | None = None

    @property
    def default_input_shape(self):
        return (224, 224, 3) if self.stem == "imagenet" else (32, 32, 3)

    @property
    def output_strides(self):
        # 8 would also turn the second-last transition's pool into a stride-1 pool, whose window
        # then has to be dilated to stay exact; Keras' pooling layers have no dilation.
        return (None, 16, 32) if self.stem == "imagenet" else (None,)

    @property
    def min_input_size(self):
        # ImageNet: stride 4 after the stem, then three 2x2 pools need 8x8 there. CIFAR: two 2x2
        # pools would accept 4x4; 8 keeps a 2x2 final map, like the CIFAR ResNets.
        return 32 if self.stem == "imagenet" else 8


DENSENET121 = DenseNetSpec((6, 12, 24, 16), keras_applications="DenseNet121")
DENSENET169 = DenseNetSpec((6, 12, 32, 32), keras_applications="DenseNet169")
DENSENET201 = DenseNetSpec((6, 12, 48, 32), keras_applications="DenseNet201")
DENSENET_BC100_CIFAR = DenseNetSpec((16, 16, 16), growth_rate=12, stem="cifar")


def densenet(spec: DenseNetSpec, *, input_shape=None, input_tensor=None, include_top=True,
             classes=None, pooling=None, classifier_activation="softmax", dropout_rate=0.0,
             weights=None, name=None, growth_rate=None, compression=None, drop_connect_rate=0.0,
             output_stride=None, features_only=False, bn_momentum=BN_MOMENTUM):
    """Builds a DenseNet from its spec.

    Args:
        spec: the architecture (`DENSENET121`, `DENSENET_BC100_CIFAR`, ...).
        input_shape: (height, width, channels); default (224, 224, 3), CIFAR (32, 32, 3).
        input_tensor: optional Keras tensor to use as the input.
        include_top: add the classifier.
        classes: number of classes (default 1000, CIFAR 10).
        pooling: None, "avg" or "max": global pooling of a headless model.
        classifier_activation: activation of the classifier ("softmax", None for logits).
        dropout_rate: dropout before the classifier.
        weights: None, "imagenet" (densenet121/169/201 with their default growth rate and
            compression) or a path to a weights file.
        name: model name.
        growth_rate: channels each layer adds (k); default the spec's (32 ImageNet, 12 CIFAR).
        compression: fraction of channels a transition keeps, in (0, 1]; default 0.5.
        drop_connect_rate: stochastic depth: the last dense layer's new features are dropped per
            sample with this probability while training, linearly less for earlier layers.
        output_stride: None, 16 or 32 (ImageNet stem): at 16 the last transition pools with
            stride 1 and the last dense block's 3x3 convolutions dilate by 2; weights still fit.
        features_only: return {"P{n}": feature map} instead of a classifier.
        bn_momentum: BatchNormalization momentum.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: for a bad value or an input below the architecture's minimum size.

    Example:
        >>> model = kerascnn.build("densenet_bc100_cifar")
        >>> backbone = kerascnn.build("densenet121", features_only=True, input_shape=(256, 256, 3))
    """
    is_cifar = spec.stem == "cifar"
    name = name or "densenet"
    classes = (10 if is_cifar else 1000) if classes is None else classes
    growth_rate = spec.growth_rate if growth_rate is None else growth_rate
    compression = spec.compression if compression is None else compression
    check_number("growth_rate", growth_rate, low=1, integer=True)
    check_number("compression", compression, low=0.0, high=1.0, low_inclusive=False)
    check_number("drop_connect_rate", drop_connect_rate, low=0.0, high=0.99)
    check_choice("output_stride", output_stride, spec.output_strides)
    check_number("bn_momentum", bn_momentum, low=0.0, high=1.0)
    imagenet_ok = (spec.keras_applications is not None and growth_rate == spec.growth_rate
                   and compression == spec.compression)
    check_head_args(include_top=include_top, classes=classes, pooling=pooling,
                    classifier_activation=classifier_activation, dropout_rate=dropout_rate,
                    weights=weights, has_imagenet_weights=imagenet_ok, features_only=features_only)
    image, inputs = resolve_input(model_name=name, input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=spec.default_input_shape,
                                  min_size=spec.min_input_size, include_top=include_top,
                                  channels=3 if weights == "imagenet" else None)
    bn = dict(bn_epsilon=DENSENET_BN_EPSILON, bn_momentum=bn_momentum)

    if is_cifar:
        # No BN/ReLU here: the first dense layer pre-activates its input.
        x = apply_conv_bn_act_block(image, filters=2 * growth_rate, kernel_size=3, activation=None,
                                    batch_norm=False, name="stem")
        nominal, endpoints = 1, {}
    else:
        x = apply_conv_bn_act_block(image, filters=2 * growth_rate, kernel_size=7, strides=2,
                                    padding="symmetric", activation="relu", name="stem", **bn)
        endpoints = {2: x}
        x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
        nominal = 4
    actual, rate = nominal, 1
    total_layers, done = sum(spec.blocks), 0

    for i, num_layers in enumerate(spec.blocks, start=1):
        drop_rates = [drop_connect_rate * (done + j) / max(total_layers - 1, 1)
                      for j in range(num_layers)]
        x = apply_dense_block(x, num_layers=num_layers, growth_rate=growth_rate,
                              bottleneck_width=spec.bottleneck_width, dilation_rate=rate,
                              drop_rate=drop_rates, name=f"stage{i}", **bn)
        done += num_layers
        if i < len(spec.blocks):
            strides = 1 if output_stride is not None and actual * 2 > output_stride else 2
            x, endpoints[nominal] = apply_transition_block(
                x, compression=compression, strides=strides, return_features=True,
                name=f"stage{i}_block{num_layers + 1}_transition", **bn)
            nominal, actual, rate = nominal * 2, actual * strides, rate * (2 // strides)

    x = layers.BatchNormalization(epsilon=DENSENET_BN_EPSILON, momentum=bn_momentum,
                                  name="head_bn")(x)
    x = layers.ReLU(name="head_relu")(x)
    endpoints[nominal] = x
    return finish_classifier(x, endpoints, inputs=inputs, name=name, weights=weights,
                             include_top=include_top, features_only=features_only,
                             pooling=pooling, classes=classes,
                             classifier_activation=classifier_activation,
                             dropout_rate=dropout_rate, keras_applications=spec.keras_applications)


_PAPER = ("Huang et al., Densely Connected Convolutional Networks, CVPR 2017, "
          "https://arxiv.org/abs/1608.06993")
_KA_TABLE = "keras.applications documentation table (single 224 crop)"


def _register(name, spec, *, preprocessing, accuracy):
    """Registers `densenet(spec)` under `name`: the entry is a 3-line function like any other."""

    @entry_signature(densenet)
    def entry(**kwargs):
        kwargs.setdefault("name", name)
        return densenet(spec, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"{name}: DenseNet-BC, growth rate {spec.growth_rate}, "
                     f"{spec.blocks} layers per dense block.")
    register_model(family="densenet", paper=_PAPER, default_input_shape=spec.default_input_shape,
                   min_input_size=spec.min_input_size, preprocessing=preprocessing,
                   published_accuracy=accuracy, keras_applications=spec.keras_applications)(entry)
    return entry


densenet121 = _register("densenet121", DENSENET121, preprocessing=preprocessing_torch(),
                        accuracy={"imagenet_top1": 75.0, "source": _KA_TABLE})
densenet169 = _register("densenet169", DENSENET169, preprocessing=preprocessing_torch(),
                        accuracy={"imagenet_top1": 76.2, "source": _KA_TABLE})
densenet201 = _register("densenet201", DENSENET201, preprocessing=preprocessing_torch(),
                        accuracy={"imagenet_top1": 77.3, "source": _KA_TABLE})
# C10+ (standard augmentation): 4.51% error, paper Table 2. No published weights; the [-1, 1]
# input convention is the one the other CIFAR networks of the zoo share.
densenet_bc100_cifar = _register(
    "densenet_bc100_cifar", DENSENET_BC100_CIFAR, preprocessing=preprocessing_tf(),
    accuracy={"cifar10_top1": 95.49, "source": "paper, Table 2 (C10+, DenseNet-BC L=100 k=12)"})
