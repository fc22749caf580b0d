"""LeNet-5.

LeCun, Bottou, Bengio and Haffner, "Gradient-Based Learning Applied to Document Recognition",
Proceedings of the IEEE 86(11), 1998, http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf
(section II.B, Fig. 2).

The paper's layers on a 32x32x1 input, with the names used here:

    C1  5x5 convolution, 6 maps      -> 28x28x6    stage1_block1_conv
    S2  2x2 subsampling              -> 14x14x6    stage1_block1_pool
    C3  5x5 convolution, 16 maps     -> 10x10x16   stage2_block1_conv
    S4  2x2 subsampling              -> 5x5x16     stage2_block1_pool
    C5  5x5 convolution, 120 maps    -> 1x1x120    stage3_block1_conv
    F6  fully connected, 84 units    -> 84         head_fc1
    output, one unit per class       -> 10         predictions

What is simplified, and why:

- C3's partial connection table (Table I: each of the 16 maps sees 3, 4 or 6 of S2's 6 maps,
  1,516 weights) is replaced by full connectivity (2,416 weights). The paper used the table to
  save computation and to break symmetry; a full convolution does both jobs on today's hardware and
  is one standard op (a table would need six sliced convolutions and a Concatenate).
- S2 and S4 multiply the 2x2 sum by a trainable coefficient, add a trainable bias and apply a
  sigmoid. Here they are plain 2x2 average pools (no parameters), as in most re-implementations;
  the following convolution can absorb the scale and bias.
- The squashing function is tanh (`activation`), not the paper's scaled 1.7159 * tanh(2x / 3).
- The output layer of Euclidean RBF units with fixed 7x12 bitmap prototypes is a Dense layer with
  softmax and cross-entropy, the standard classifier (the RBF layer needs a bespoke loss).
- Inputs larger than 32x32 are allowed: C5 then gives more than 1x1 positions, which F6 takes
  flattened.
- There is no `features_only` option: the zoo's feature maps P{n} have size ceil(input / 2**n)
  from P1 to P5, and LeNet's "valid" 5x5 convolutions and two subsamplings give neither (32 -> 28
  -> 14 -> 10 -> 5 -> 1). It is a classifier, not a backbone.

With these choices the model has 61,706 parameters (the paper's LeNet-5: about 60,000).
"""

from __future__ import annotations

from keras import layers

from kerascnn.models.common import (apply_fc_classifier, apply_pooling, check_choice,
                                    check_head_args, finish_model, resolve_input)
from kerascnn.registry import Preprocessing, register_model

# (filters, kernel size, subsampling after) per convolution: C1, C3, C5.
LENET5_LAYERS = (
    (6, 5, True),
    (16, 5, True),
    (120, 5, False),
)
HIDDEN_UNITS = (84,)  # F6

ACTIVATION_CHOICES = ("tanh", "relu", "sigmoid")
SUBSAMPLING_CHOICES = ("avg", "max")

# Section II.A: the background (white, 0 in MNIST's IDX files) maps to -0.1 and the foreground
# (black, 255) to 1.175, which makes the mean input roughly 0 and the variance roughly 1.
LENET_PREPROCESSING = Preprocessing(scale=(1.275 / 255.0,), offset=(-0.1,), channels=1,
                                    channel_order="L", mode="lenet")


@register_model(family="lenet", paper=("LeCun et al., Gradient-Based Learning Applied to Document "
                                       "Recognition, Proc. IEEE 1998, "
                                       "http://yann.lecun.com/exdb/publis/pdf/lecun-01a.pdf"),
                default_input_shape=(32, 32, 1), min_input_size=32,
                preprocessing=LENET_PREPROCESSING,
                published_accuracy={"mnist_top1": 99.05,
                                    "source": "paper, section III.C (LeNet-5 test error 0.95% "
                                              "without distortions)"})
def lenet5(*, input_shape=None, input_tensor=None, include_top=True, classes=10, pooling=None,
           classifier_activation="softmax", dropout_rate=0.0, weights=None, name=None,
           activation="tanh", subsampling="avg"):
    """Builds LeNet-5.

    Args:
        input_shape: (height, width, channels), default (32, 32, 1); at least 32x32 (C5 needs a
            5x5 map). With `include_top` the size is fixed when the model is built.
        input_tensor: optional Keras tensor to use as the input.
        include_top: add F6 and the classifier; without it the model ends at C5.
        classes: number of classes (10 digits).
        pooling: None, "avg" or "max": global pooling of a headless model.
        classifier_activation: activation of the classifier ("softmax", None for logits).
        dropout_rate: dropout after F6 (the paper: none).
        weights: None or a path to a weights file.
        name: model name.
        activation: "tanh" (the paper's squashing function), "relu" or "sigmoid".
        subsampling: "avg" (the paper's S2/S4, without their coefficients) or "max".

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: for a bad value or an input smaller than 32x32.

    Example:
        >>> model = lenet5()  # 32x32x1 -> 10 classes, 61,706 parameters
    """
    name = name or "lenet5"
    check_choice("activation", activation, ACTIVATION_CHOICES)
    check_choice("subsampling", subsampling, SUBSAMPLING_CHOICES)
    check_head_args(include_top=include_top, classes=classes, pooling=pooling,
                    classifier_activation=classifier_activation, dropout_rate=dropout_rate,
                    weights=weights, has_imagenet_weights=False)
    image, inputs = resolve_input(model_name=name, input_shape=input_shape,
                                  input_tensor=input_tensor, default_shape=(32, 32, 1),
                                  min_size=32, include_top=include_top, fixed_size=include_top)
    pool_layer = layers.AveragePooling2D if subsampling == "avg" else layers.MaxPooling2D

    x = image
    for i, (filters, kernel, subsample) in enumerate(LENET5_LAYERS, start=1):
        # "valid" convolutions: the paper's maps shrink by 4 pixels at every layer.
        x = layers.Conv2D(filters, kernel, padding="valid", name=f"stage{i}_block1_conv")(x)
        x = layers.Activation(activation, name=f"stage{i}_block1_{activation}")(x)
        if subsample:
            x = pool_layer(2, strides=2, name=f"stage{i}_block1_pool")(x)

    if include_top:
        outputs = apply_fc_classifier(x, units=HIDDEN_UNITS, classes=classes,
                                      classifier_activation=classifier_activation,
                                      dropout_rate=dropout_rate, activation=activation)
    else:
        outputs = apply_pooling(x, pooling)
    return finish_model(inputs=inputs, outputs=outputs, name=name, weights=weights)
