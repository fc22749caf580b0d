"""Parameter counts: our golden table, and reference numbers from outside this project.

`golden_params.GOLDEN` (written by tests/make_golden_params.py) pins the (total, trainable) count
of every registered model at its defaults, so an unintended architecture change fails here. The
reference tests below compare against numbers published by others, which our own script could
not have produced.
"""

import functools

import numpy as np
import pytest

import keras
import kerascnn
from golden_params import GOLDEN

MODELS = kerascnn.list_models()


@functools.lru_cache(maxsize=None)
def param_counts(name):
    """(total, trainable) of `kerascnn.build(name)` at its defaults; built once per session."""
    model = kerascnn.build(name)
    total = model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    del model
    keras.backend.clear_session()
    return total, trainable


def test_golden_table_lists_exactly_the_registered_models():
    """A model cannot be registered without golden numbers, and no entry outlives its model."""
    registered, golden = set(MODELS), set(GOLDEN)
    missing = sorted(registered - golden)
    assert not missing, (f"registered without golden numbers: {', '.join(missing)} "
                         "(regenerate with tests/make_golden_params.py)")
    stale = sorted(golden - registered)
    assert not stale, f"golden numbers for models that are not registered: {', '.join(stale)}"


@pytest.mark.parametrize("name", MODELS)
def test_param_counts_match_golden(name):
    """The built model has the golden (total, trainable) parameter counts."""
    assert name in GOLDEN, f"registered without golden numbers: {name}"
    assert param_counts(name) == GOLDEN[name]


# Total parameters of the keras.applications counterparts: keras.applications.<Name>(weights=None)
# .count_params() (MobileNetV3 with include_preprocessing=False, which has no weights anyway); the
# "Parameters" column of https://keras.io/api/applications/ rounds the same numbers (4.3M, 3.5M,
# 25.6M, ...). Checked with Keras 3.15.
KERAS_APPLICATIONS_TOTAL = {
    "mobilenet_v1": 4_253_864,  # MobileNet
    "mobilenet_v2": 3_538_984,  # MobileNetV2
    "mobilenet_v3_small": 2_554_968,  # MobileNetV3Small
    "mobilenet_v3_large": 5_507_432,  # MobileNetV3Large
    "resnet50": 25_636_712,  # ResNet50
    "resnet101": 44_707_176,  # ResNet101
    "resnet152": 60_419_944,  # ResNet152
    "resnet50_v2": 25_613_800,  # ResNet50V2
    "resnet101_v2": 44_675_560,  # ResNet101V2
    "resnet152_v2": 60_380_648,  # ResNet152V2
}

# torchvision's model documentation ("num_params" of ResNet18_Weights.IMAGENET1K_V1 and
# ResNet34_Weights.IMAGENET1K_V1, https://pytorch.org/vision/stable/models.html), which is
# sum(p.numel() for p in model.parameters()).
TORCHVISION_PARAMETERS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
}

# He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Table 6 (CIFAR-10):
# "# params" of the 6n+2-layer ResNets, in millions.
CIFAR_TABLE6_MILLIONS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}


@pytest.mark.parametrize("name, expected", sorted(KERAS_APPLICATIONS_TOTAL.items()))
def test_total_params_match_keras_applications(name, expected):
    """Same architecture as keras.applications: equal total counts (the parity tests go further
    and copy the weights across)."""
    assert param_counts(name)[0] == expected


@pytest.mark.parametrize("name, expected", sorted(TORCHVISION_PARAMETERS.items()))
def test_trainable_params_match_torchvision(name, expected):
    """resnet18/34 follow torchvision (no convolution biases).

    torchvision counts `model.parameters()` only; BatchNorm's running mean and variance are
    buffers, not parameters. In Keras they are non-trainable weights, included in count_params().
    So torchvision's number must equal our trainable count exactly, and the total exceeds it by
    exactly two values per BatchNorm channel.
    """
    total, trainable = param_counts(name)
    assert trainable == expected
    model = kerascnn.build(name)
    bn_channels = sum(layer.moving_mean.shape[0] for layer in model.layers
                      if isinstance(layer, keras.layers.BatchNormalization))
    keras.backend.clear_session()
    assert total - trainable == 2 * bn_channels


@pytest.mark.parametrize("depth, millions", sorted(CIFAR_TABLE6_MILLIONS.items()))
def test_cifar_resnet_params_match_paper(depth, millions):
    """The CIFAR ResNets' trainable counts round (to 2 significant digits, in millions) to the
    paper's Table 6."""
    trainable = param_counts(f"resnet{depth}_cifar")[1]
    assert float(f"{trainable / 1e6:.2g}") == millions, trainable


@pytest.mark.parametrize("depth", sorted(CIFAR_TABLE6_MILLIONS))
def test_plain_cifar_nets_have_the_residual_nets_counts(depth):
    """Option A shortcuts (stride + zero channels) have no parameters, so a plain net and the
    ResNet of the same depth have identical counts: the paper's degradation experiment compares
    networks of equal size."""
    assert param_counts(f"plain{depth}_cifar") == param_counts(f"resnet{depth}_cifar")
