"""Building blocks: `apply_<what>_block(x, *, ..., name)` functions made of built-in Keras layers."""

from kerascnn.blocks.conv import ACTIVATIONS, apply_activation, apply_conv_bn_act_block, make_divisible
from kerascnn.blocks.dense import DENSENET_BN_EPSILON, apply_dense_block, apply_transition_block
from kerascnn.blocks.depthwise_separable import apply_depthwise_separable_block
from kerascnn.blocks.inception import apply_inception_block
from kerascnn.blocks.inverted_residual import apply_inverted_residual_block
from kerascnn.blocks.residual import (apply_basic_block, apply_bottleneck_block,
                                      apply_preact_bottleneck_block)
from kerascnn.blocks.se import apply_se_block

__all__ = [
    "ACTIVATIONS", "DENSENET_BN_EPSILON", "apply_activation", "apply_basic_block",
    "apply_bottleneck_block", "apply_conv_bn_act_block", "apply_dense_block",
    "apply_depthwise_separable_block", "apply_inception_block", "apply_inverted_residual_block",
    "apply_preact_bottleneck_block", "apply_se_block", "apply_transition_block", "make_divisible",
]
