"""Checks that every registered model must pass (DESIGN.md section 6).

Each model is built once at its smallest input by a module-scoped fixture, so pytest runs all the
checks of one model together and the model is released before the next one is built. Checks that
need a different configuration (headless and feature models) build their own model at a small
size. The training step runs after the read-only checks on the shared model and restores its
weights.
"""

import gc
import inspect
import math
import re
import zlib

import numpy as np
import pytest

import keras
import kerascnn
from helpers import small_input

MODELS = kerascnn.list_models()
CLASSES = 10

# The layer-name vocabulary of DESIGN.md section 4.
NAME_RE = re.compile(r"^(input|stem_\w+|stage\d+_block\d+_\w+|head_\w+|aux\d+_\w+|aspp_\w+"
                     r"|decoder_\w+|predictions(_\w+)?|logits(_\w+)?)$")

# A model with more layers than this gets batch 2 in the training step: the step runs eagerly,
# and the deepest nets (resnet101/152, resnet110_cifar, efficientnet_b3+, densenets...) dominate
# the file's run time.
DEEP_LAYERS = 300


def is_segmentation(name):
    """Segmentation models output (N, H, W, classes) at the input resolution."""
    return kerascnn.model_info(name).task == "segmentation"


def accepts(name, argument):
    """Whether the model's builder takes `argument` (e.g. "features_only", "output_stride")."""
    return argument in inspect.signature(kerascnn.model_info(name).builder).parameters


def build_small(name, **kwargs):
    """`name` at its smallest input with 10 classes, no dropout and no stochastic depth, so that
    outputs are deterministic."""
    kwargs.setdefault("input_shape", small_input(name))
    for argument in ("dropout_rate", "drop_connect_rate"):
        if accepts(name, argument):
            kwargs.setdefault(argument, 0.0)
    return kerascnn.build(name, classes=CLASSES, **kwargs)


def images(name, batch, shape):
    """Random inputs in [-1, 1], seeded by the model name so a failure can be reproduced."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.uniform(-1.0, 1.0, (batch, *shape)).astype("float32")


def predict(model, x):
    """Inference-mode outputs as numpy (a dict for feature models)."""
    y = model(x, training=False)
    if isinstance(y, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in y.items()}
    return keras.ops.convert_to_numpy(y)


def feature_levels(name):
    """The (first, last) n of the P{n} feature maps a model returns.

    The *_cifar nets' stem is a stride-1 3x3 convolution followed by three stages of strides
    1, 2, 2, so their maps are at strides 1, 2, 4: P0..P2. Every other model with `features_only`
    has a stride-2 stem and a final stride of 32: P1..P5.
    """
    return (0, 2) if name.endswith("_cifar") else (1, 5)


# Each model's checks form one xdist group, so that with `-n 2 --dist loadgroup` a worker builds a
# model once and runs all its checks.
@pytest.fixture(scope="module", params=[pytest.param(m, marks=pytest.mark.xdist_group(m)) for m in MODELS],
                ids=MODELS)
def name(request):
    """The model under test; after all its checks, Keras' global state is cleared."""
    yield request.param
    keras.backend.clear_session()
    gc.collect()


@pytest.fixture(scope="module")
def model(name):
    """`name` built once at its smallest input (shared by the checks that do not modify it)."""
    return build_small(name)


def test_forward(name, model):
    """A forward pass gives one softmax row of `classes` probabilities per image (per pixel, at the
    input resolution, for a segmentation model), in float32."""
    shape = small_input(name)
    assert tuple(model.input_shape) == (None, *shape)
    y = predict(model, images(name, 2, shape))
    expected = (2, *shape[:2], CLASSES) if is_segmentation(name) else (2, CLASSES)
    assert tuple(model.output.shape) == (None, *expected[1:])
    assert y.shape == expected and y.dtype == np.float32
    assert np.all(np.isfinite(y)), y
    assert np.all(y >= 0), y
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)


def odd_input(name):
    """One pixel above the minimum: odd sizes test the ceil rule of "same"/symmetric padding, and
    the final map is larger than 1x1 (at 32x32 an ImageNet-stem model ends at 1x1, where global
    max and average pooling cannot be told apart)."""
    size, _, channels = small_input(name)
    return (size + 1, size + 1, channels)


def test_headless(name):
    """include_top=False: pooling "avg"/"max" give (None, C), the global mean/max of the 4-D map
    that pooling=None returns. For models with feature maps, that map has the last one's size,
    ceil(input / final stride)."""
    if not accepts(name, "include_top"):
        pytest.skip(f"{name} has no include_top option")
    shape = odd_input(name)
    plain = build_small(name, include_top=False, pooling=None, input_shape=shape)
    assert len(plain.output.shape) == 4, plain.output.shape
    if tuple(plain.output.shape[1:3]) == (1, 1):
        # Models with "valid" convolutions and pools (alexnet, lenet5) end at 1x1 near their
        # minimum size, where max and average pooling cannot be told apart.
        shape = (2 * shape[0], 2 * shape[1], shape[2])
        plain = build_small(name, include_top=False, pooling=None, input_shape=shape)
    batch, height, width, channels = plain.output.shape
    assert batch is None and height > 1 and width > 1 and channels > 0, plain.output.shape
    if accepts(name, "features_only"):
        final = math.ceil(shape[0] / 2 ** feature_levels(name)[1])
        assert (height, width) == (final, final)
    x = images(name, 2, shape)
    feature_map = predict(plain, x)
    assert feature_map.shape == (2, height, width, channels)
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        pooled = build_small(name, include_top=False, pooling=pooling, input_shape=shape)
        assert tuple(pooled.output.shape) == (None, channels), pooling
        # Global pooling adds no weights, so the feature extractor's weights fit unchanged.
        pooled.set_weights(plain.get_weights())
        np.testing.assert_allclose(predict(pooled, x), reduce(feature_map, axis=(1, 2)),
                                   rtol=1e-5, atol=1e-5, err_msg=f"pooling={pooling!r}")


def test_features_only(name):
    """features_only=True returns {"P{n}": map} for consecutive n (P0..P2 for the CIFAR nets,
    P1..P5 otherwise), each of spatial size ceil(input / 2**n) at an odd input size."""
    if not accepts(name, "features_only"):
        pytest.skip(f"{name} has no features_only option")
    shape = odd_input(name)
    size = shape[0]
    model = kerascnn.build(name, input_shape=shape, features_only=True)
    first, last = feature_levels(name)
    expected = [f"P{n}" for n in range(first, last + 1)]
    assert isinstance(model.output, dict), type(model.output)
    assert sorted(model.output, key=lambda k: int(k[1:])) == expected
    outputs = predict(model, images(name, 1, shape))
    assert sorted(outputs) == sorted(expected)
    for key in expected:
        side = math.ceil(size / 2 ** int(key[1:]))
        assert tuple(model.output[key].shape[1:3]) == (side, side), key
        assert outputs[key].shape[1:3] == (side, side), key
        assert np.all(np.isfinite(outputs[key])), key


def test_features_output_stride_16(name):
    """output_stride=16 keeps the keys P1..P5 but dilates instead of striding in the last stage:
    at a 64x64 input P1..P4 keep their sizes and P5 has P4's size (4x4) instead of 2x2."""
    first, last = feature_levels(name)
    if not (accepts(name, "output_stride") and accepts(name, "features_only")):
        pytest.skip(f"{name} has no features_only option with output_stride")
    if first != 1:
        pytest.skip("output_stride applies to ImageNet-stem models; the CIFAR nets end at stride 4")
    shape = (64, 64, small_input(name)[2])
    model = kerascnn.build(name, input_shape=shape, features_only=True, output_stride=16)
    assert sorted(model.output) == [f"P{n}" for n in range(first, last + 1)]
    sides = {key: tuple(t.shape[1:3]) for key, t in model.output.items()}
    for n in range(first, last):
        assert sides[f"P{n}"] == (64 // 2 ** n,) * 2, (n, sides)
    assert sides["P5"] == sides["P4"] == (4, 4), sides
    outputs = predict(model, images(name, 1, shape))
    assert outputs["P5"].shape[1:3] == (4, 4)
    assert np.all(np.isfinite(outputs["P5"]))


def test_layer_names(name, model):
    """Every layer has a unique name from the vocabulary of DESIGN.md section 4 (no auto names)."""
    names = [layer.name for layer in model.layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"duplicate layer names: {duplicates}"
    bad = [n for n in names if not NAME_RE.match(n)]
    assert not bad, f"{len(bad)} layer names outside the vocabulary: {bad[:20]}"


def test_config_round_trip(name, model):
    """from_config(get_config()) rebuilds the same graph: same layer names and parameter count,
    and with the same weights the same outputs."""
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert clone.count_params() == model.count_params()
    clone.set_weights(model.get_weights())
    x = images(name, 2, small_input(name))
    np.testing.assert_array_equal(predict(clone, x), predict(model, x))


def test_save_load_keras_file(name, model, tmp_path):
    """A .keras file loads with safe_mode=True (no Lambda layers or pickled code) and gives the
    same weights and bit-identical outputs."""
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert len(loaded.weights) == len(model.weights)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    x = images(name, 2, small_input(name))
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))


# Runs after the read-only checks of each model's group (pytest keeps file order within a
# module-scoped parameter), as it compiles and trains the shared model; it restores the weights
# afterwards, so the other checks would still see the untrained model if the order changed.
def test_one_training_step_moves_every_weight(name, model):
    """One Adam step gives a finite loss and changes every trainable weight: no weight is cut off
    from the loss (a dead branch, a layer left out of the graph, a frozen variable)."""
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(), run_eagerly=True)
    batch = 2 if len(model.layers) > DEEP_LAYERS else 4
    shape = small_input(name)
    x = images(name, batch, shape)
    if is_segmentation(name):
        # Per-pixel integer labels: every class appears in every image.
        y = (np.arange(batch * shape[0] * shape[1]) % CLASSES).reshape(batch, *shape[:2])
    else:
        y = np.arange(batch) % CLASSES
    assert model.trainable_weights, "the model has no trainable weights"
    initial = model.get_weights()
    before = [v.numpy() for v in model.trainable_weights]
    try:
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss), f"loss {loss}"
        unchanged = [v.path for v, old in zip(model.trainable_weights, before)
                     if np.array_equal(v.numpy(), old)]
    finally:
        model.set_weights(initial)
    assert not unchanged, (f"{len(unchanged)} of {len(before)} trainable weights did not change "
                           f"after one training step: {unchanged}")


def test_only_batchnorm_statistics_are_frozen(name, model):
    """Every weight trains except BatchNormalization's moving mean and variance: a frozen layer
    would escape the training-step check above, which looks at trainable weights only."""
    statistics = {id(v) for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
                  for v in (layer.moving_mean, layer.moving_variance)}
    frozen = [v.path for v in model.non_trainable_weights if id(v) not in statistics]
    assert not frozen, f"non-trainable weights that are not BatchNorm statistics: {frozen}"
