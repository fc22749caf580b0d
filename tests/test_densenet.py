"""DenseNet: keras.applications parity, ImageNet weight transfer offline, the CIFAR DenseNet-BC-100,
the dense and transition blocks, and argument errors."""

import re

import numpy as np
import pytest

import keras
import kerascnn
from helpers import randomise
from kerascnn.blocks.dense import apply_dense_block, apply_transition_block

NAME_PATTERN = re.compile(r"^(input|stem_\w+|stage\d+_block\d+_\w+|head_\w+|predictions(_\w+)?)$")

# keras.applications' documentation table lists these parameter counts (and depths 121/169/201).
KA_PARAMS = {"densenet121": 8_062_504, "densenet169": 14_307_880, "densenet201": 20_242_984}
KA_NAMES = {n: f"DenseNet{n[len('densenet'):]}" for n in KA_PARAMS}


def _weighted_layers(model):
    """The layers the paper counts in a DenseNet's depth L: convolutions and the classifier."""
    return sum(isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
               for layer in model.layers)


@pytest.mark.parametrize("name", sorted(KA_PARAMS))
def test_parity_with_keras_applications(name):
    size = 64
    ka = getattr(keras.applications, KA_NAMES[name])(weights=None, input_shape=(size, size, 3),
                                                     classifier_activation=None)
    ours = kerascnn.build(name, input_shape=(size, size, 3), classifier_activation=None)
    assert ours.count_params() == ka.count_params() == KA_PARAMS[name]
    # L = 1 stem conv + 2 convs per dense layer + 3 transition convs + 1 classifier: 121/169/201.
    assert _weighted_layers(ours) == int(name[len("densenet"):])
    names = [layer.name for layer in ours.layers]
    assert len(set(names)) == len(names)
    assert [n for n in names if not NAME_PATTERN.match(n)] == []
    randomise(ka)
    ours.set_weights(ka.get_weights())
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    # Eager calls: tracing a 700-layer graph for predict() costs more than the computation here.
    expected = keras.ops.convert_to_numpy(ka(x, training=False))
    got = keras.ops.convert_to_numpy(ours(x, training=False))
    assert np.std(expected) > 1e-3, "logits too flat to tell models apart"
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.fixture
def offline_densenet121(monkeypatch):
    """weights="imagenet" gets a randomised weights=None DenseNet121 instead of a download."""
    made = []
    original = keras.applications.DenseNet121

    def fake(*args, weights=None, **kwargs):
        assert weights == "imagenet", "kerascnn must ask keras.applications for ImageNet weights"
        model = original(*args, weights=None, **kwargs)
        randomise(model, seed=3)
        made.append(model)
        return model

    monkeypatch.setattr(keras.applications, "DenseNet121", fake)
    return made


@pytest.mark.parametrize("features_only", [False, True])
def test_imagenet_weights_are_transferred(offline_densenet121, features_only):
    ours = kerascnn.build("densenet121", weights="imagenet", features_only=features_only,
                          input_shape=(64, 64, 3))
    (source,) = offline_densenet121
    # The backbone is the whole headless network (its final BN included): every variable matches.
    assert (source.layers[-1].name == "predictions") != features_only
    for mine, theirs in zip(ours.weights, source.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_imagenet_features():
    model = kerascnn.build("densenet121", features_only=True, input_shape=(64, 64, 3))
    shapes = {k: tuple(v.shape[1:]) for k, v in model.output.items()}
    # P1: the stem's ReLU; P2-P4: each block's BN-ReLU'd output (before compression); P5: head.
    assert shapes == {"P1": (32, 32, 64), "P2": (16, 16, 256), "P3": (8, 8, 512),
                      "P4": (4, 4, 1024), "P5": (2, 2, 1024)}
    assert model.output["P3"] is model.get_layer("stage2_block13_transition_relu").output
    assert model.output["P5"] is model.get_layer("head_relu").output


def test_output_stride_16_is_the_same_network_on_a_denser_grid():
    """With the same weights, output_stride=16 computes the stride-32 features at every other pixel
    (a stride-1 2x2 pool, then dilation 2): its P5 subsampled is the stride-32 P5."""
    base = kerascnn.build("densenet121", features_only=True, input_shape=(64, 64, 3))
    dense = kerascnn.build("densenet121", features_only=True, input_shape=(64, 64, 3),
                           output_stride=16)
    randomise(base, seed=5)
    dense.set_weights(base.get_weights())
    x = np.random.default_rng(2).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    expected, got = base(x, training=False), dense(x, training=False)
    assert tuple(got["P5"].shape) == (1, 4, 4, 1024)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got["P4"]),
                               keras.ops.convert_to_numpy(expected["P4"]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got["P5"])[:, ::2, ::2],
                               keras.ops.convert_to_numpy(expected["P5"]), atol=1e-5, rtol=0)


def test_odd_sizes_keep_the_last_row():
    """Transitions pool with ceil(H / 2) rows; keras.applications ("valid") would drop the last."""
    model = kerascnn.build("densenet_bc100_cifar", features_only=True, input_shape=(9, 9, 3))
    assert [tuple(t.shape[1:3]) for t in model.output.values()] == [(9, 9), (5, 5), (3, 3)]


def test_stochastic_depth_grows_linearly_over_the_dense_layers():
    model = kerascnn.build("densenet_bc100_cifar", drop_connect_rate=0.2)
    rates = {layer.name: layer.rate for layer in model.layers
             if isinstance(layer, keras.layers.Dropout)}
    assert len(rates) == 47  # every dense layer but the first (rate 0)
    assert rates["stage1_block2_drop"] == pytest.approx(0.2 / 47)
    assert rates["stage3_block16_drop"] == pytest.approx(0.2)


def test_densenet_bc100_cifar():
    model = kerascnn.build("densenet_bc100_cifar")
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 769_162  # the count of the common PyTorch ports of the authors' model
    assert round(trainable / 1e6, 1) == round(model.count_params() / 1e6, 1) == 0.8  # paper: 0.8M
    # L = 100: 1 stem conv + 3 blocks x 16 layers x 2 convs + 2 transition convs + 1 classifier.
    assert _weighted_layers(model) == 1 + 3 * 16 * 2 + 2 + 1 == 100
    # 24 stem channels + 16 x 12 = 216 -> 108 after the transition, +192 = 300 -> 150, +192 = 342.
    assert model.get_layer("stage1_block17_transition_conv").output.shape[-1] == 108
    assert model.get_layer("head_bn").output.shape[-1] == 342
    info = kerascnn.model_info("densenet_bc100_cifar")
    assert info.published_accuracy["cifar10_top1"] == pytest.approx(100 - 4.51)
    features = kerascnn.build("densenet_bc100_cifar", features_only=True)
    assert {k: tuple(v.shape[1:]) for k, v in features.output.items()} == {
        "P0": (32, 32, 216), "P1": (16, 16, 300), "P2": (8, 8, 342)}


def test_registry_entries():
    for name in ("densenet121", "densenet169", "densenet201"):
        info = kerascnn.model_info(name)
        assert info.family == "densenet" and "1608.06993" in info.paper
        assert info.preprocessing.mode == "torch" and info.keras_applications == KA_NAMES[name]
        assert info.default_input_shape == (224, 224, 3) and info.min_input_size == 32
    assert [kerascnn.model_info(n).published_accuracy["imagenet_top1"]
            for n in ("densenet121", "densenet169", "densenet201")] == [75.0, 76.2, 77.3]
    kerascnn.build("densenet_bc100_cifar", input_shape=(8, 8, 3), classes=3)  # its minimum size


def test_dense_block_adds_growth_rate_channels_and_transition_halves_them():
    x = keras.Input((8, 8, 20))
    dense = apply_dense_block(x, num_layers=3, growth_rate=5, name="stage1")
    pooled, features = apply_transition_block(dense, return_features=True,
                                              name="stage1_block4_transition")
    model = keras.Model(x, [dense, features, pooled])
    assert model.output_shape == [(None, 8, 8, 20 + 3 * 5), (None, 8, 8, 35), (None, 4, 4, 17)]
    # Each layer's bottleneck is 4k wide and reads every earlier feature map.
    assert [model.get_layer(f"stage1_block{j}_conv1_conv").kernel.shape for j in (1, 2, 3)] == [
        (1, 1, 20, 20), (1, 1, 25, 20), (1, 1, 30, 20)]
    plain = keras.Model(x, apply_dense_block(x, num_layers=2, growth_rate=4,
                                             bottleneck_width=None, name="stage1"))
    assert plain.output_shape == (None, 8, 8, 28)
    assert not any("conv1" in layer.name for layer in plain.layers)
    with pytest.raises(ValueError, match="one rate per layer"):
        apply_dense_block(x, num_layers=2, growth_rate=4, drop_rate=[0.1], name="stage2")


def test_growth_rate_and_compression_options():
    model = kerascnn.build("densenet_bc100_cifar", growth_rate=4, compression=1.0, classes=2)
    # 8 stem channels + 16 x 4 = 72, kept by compression 1, +64 = 136, +64 = 200.
    assert model.get_layer("head_bn").output.shape[-1] == 200


@pytest.mark.parametrize("name,kwargs,message", [
    ("densenet_bc100_cifar", {"growth_rate": 0}, "Received: growth_rate=0"),
    ("densenet_bc100_cifar", {"growth_rate": 12.0}, "Received: growth_rate=12.0"),
    ("densenet_bc100_cifar", {"compression": 0}, "Received: compression=0"),
    ("densenet_bc100_cifar", {"compression": 1.5}, "Received: compression=1.5"),
    ("densenet_bc100_cifar", {"weights": "imagenet"}, "No ImageNet weights"),
    ("densenet_bc100_cifar", {"input_shape": (4, 4, 3)}, "at least 8x8"),
    ("densenet_bc100_cifar", {"bn_momentum": 2.0}, "Received: bn_momentum=2.0"),
    ("densenet121", {"weights": "imagenet", "growth_rate": 16}, "No ImageNet weights"),
    ("densenet121", {"weights": "imagenet", "classes": 10}, "`classes` must be 1000"),
    ("densenet121", {"input_shape": (16, 16, 3)}, "at least 32x32"),
    ("densenet121", {"pooling": "sum", "include_top": False}, "Received: pooling='sum'"),
    ("densenet121", {"output_stride": 8}, "Received: output_stride=8"),
    ("densenet_bc100_cifar", {"output_stride": 16}, "Received: output_stride=16"),
    ("densenet_bc100_cifar", {"drop_connect_rate": 1.0}, "Received: drop_connect_rate=1.0"),
])
def test_bad_values_raise_value_errors_naming_them(name, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        kerascnn.build(name, **kwargs)


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="'alpha'"):
        kerascnn.build("densenet121", alpha=0.5)
