"""EfficientNet B0-B7: MobileNetV2-style MBConv stages with squeeze-and-excitation and swish,
scaled by one compound coefficient.

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019,
https://arxiv.org/abs/1905.11946.

B0 is a stage table; B1-B7 are B0 with the paper's (width, depth, resolution, dropout)
coefficients. The shared MobileNet builder (mobilenet.py) decodes them: widths are rounded to
multiples of 8, each stage gets ceil(depth * repeats) blocks, the SE squeeze width is a quarter of
the block's input width, and stochastic depth grows linearly to `drop_connect_rate` (0.2).

Structure and weight order follow keras.applications, so `weights="imagenet"` loads its weights
and outputs agree within 1e-5. The one difference: keras.applications normalises the input inside
the model (Rescaling + Normalization layers); ours does not, and `model_info(name).preprocessing`
gives the same ImageNet mean/std normalisation to apply in the input pipeline. Those
Normalization weights are the only ones skipped when transferring.
"""

from __future__ import annotations

import dataclasses

from kerascnn.models.common import entry_signature
from kerascnn.models.mobilenet import MobileNetSpec, Stage, mobilenet
from kerascnn.registry import preprocessing_torch, register_model

_PAPER = ("Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, "
          "ICML 2019, https://arxiv.org/abs/1905.11946")
_EFFICIENTNET_EXCLUDES = ("alpha", "depth_multiplier", "minimalistic")

# EfficientNet-B0, Table 1 of the paper: MBConv stages with SE (ratio 0.25 of the block's input
# width) and swish. B1-B7 scale it with the compound coefficients below.
EFFICIENTNET_B0 = MobileNetSpec(
    block="inverted_residual", stem_filters=32, stem_activation="swish", width_rule="divisible",
    head_filters=1280, head_activation="swish", head_scale="always", se_activation="swish",
    se_rule="input", default_se_ratio=0.25, default_drop_connect=0.2,
    keras_applications="EfficientNetB0", registry_name="efficientnet_b0", imagenet_alphas=(1.0,),
    stages=(
        #     c    n  s  t  k
        Stage(16, 1, 1, 1, 3, "swish", se=True),
        Stage(24, 2, 2, 6, 3, "swish", se=True),
        Stage(40, 2, 2, 6, 5, "swish", se=True),
        Stage(80, 3, 2, 6, 3, "swish", se=True),
        Stage(112, 3, 1, 6, 5, "swish", se=True),
        Stage(192, 4, 2, 6, 5, "swish", se=True),
        Stage(320, 1, 1, 6, 3, "swish", se=True),
    ))

# Compound scaling (Tan & Le, section 3.3): (width, depth, resolution, dropout) per variant.
EFFICIENTNET_SCALING = {
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5),
}
EFFICIENTNETS = {
    variant: dataclasses.replace(
        EFFICIENTNET_B0, width_coefficient=w, depth_coefficient=d, default_size=r,
        default_dropout=p, keras_applications=f"EfficientNet{variant.upper()}",
        registry_name=f"efficientnet_{variant}")
    for variant, (w, d, r, p) in EFFICIENTNET_SCALING.items()
}


def _efficientnet_entry(variant, top1):
    spec = EFFICIENTNETS[variant]

    @entry_signature(mobilenet, exclude=_EFFICIENTNET_EXCLUDES)
    def entry(**kwargs):
        return mobilenet(spec, **kwargs)

    entry.__name__ = entry.__qualname__ = spec.registry_name
    entry.__doc__ = (f"EfficientNet-{variant.upper()}: B0 scaled by width {spec.width_coefficient}, "
                     f"depth {spec.depth_coefficient}, resolution {spec.default_size}.")
    size = spec.default_size
    return register_model(family="efficientnet", paper=_PAPER,
                          default_input_shape=(size, size, 3), preprocessing=preprocessing_torch(),
                          keras_applications=spec.keras_applications,
                          published_accuracy={"imagenet_top1": top1, "source": "paper, Table 2"})(entry)


efficientnet_b0 = _efficientnet_entry("b0", 77.1)
efficientnet_b1 = _efficientnet_entry("b1", 79.1)
efficientnet_b2 = _efficientnet_entry("b2", 80.1)
efficientnet_b3 = _efficientnet_entry("b3", 81.6)
efficientnet_b4 = _efficientnet_entry("b4", 82.9)
efficientnet_b5 = _efficientnet_entry("b5", 83.6)
efficientnet_b6 = _efficientnet_entry("b6", 84.0)
efficientnet_b7 = _efficientnet_entry("b7", 84.3)
