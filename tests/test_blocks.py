"""Per-block tests: structure, shapes and the properties each block exists for."""

import numpy as np
import pytest

import keras
from keras import layers
from kerascnn import blocks


def _model(fn, shape=(16, 16, 32), **kwargs):
    x = keras.Input(shape)
    return keras.Model(x, fn(x, name="stage1_block1", **kwargs))


def _types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_make_divisible():
    assert blocks.make_divisible(32 * 0.35) == 16
    assert blocks.make_divisible(11.2) == 16  # rounding to 8 would lose more than 10%
    assert blocks.make_divisible(1280 * 1.4) == 1792
    assert blocks.make_divisible(3) == 8


def test_inverted_residual_adds_only_when_shapes_match():
    same = _model(blocks.apply_inverted_residual_block, filters=32, expand_filters=192)
    assert "Add" in _types(same)
    strided = _model(blocks.apply_inverted_residual_block, filters=32, expand_filters=192, strides=2)
    assert "Add" not in _types(strided) and strided.output_shape == (None, 8, 8, 32)
    wider = _model(blocks.apply_inverted_residual_block, filters=48, expand_filters=192)
    assert "Add" not in _types(wider)


def test_inverted_residual_bottleneck_is_linear():
    """The projection (the bottleneck) has no activation: the block can output negative values."""
    model = _model(blocks.apply_inverted_residual_block, filters=16, expand_filters=96)
    following = [l.name for l in model.layers if l.name.startswith("stage1_block1_project")]
    assert following == ["stage1_block1_project_conv", "stage1_block1_project_bn"]
    out = model.predict(np.random.default_rng(0).normal(size=(1, 16, 16, 32)), verbose=0)
    assert out.min() < 0


def test_inverted_residual_without_expansion_has_no_expand_conv():
    model = _model(blocks.apply_inverted_residual_block, filters=16, expand_filters=32)
    assert not any("expand" in layer.name for layer in model.layers)


def test_depthwise_separable_cost_ratio():
    """Parameters (and MACs per pixel) of depthwise-separable vs standard 3x3: 1/N + 1/k^2."""
    c_in, n, k = 32, 64, 3
    x = keras.Input((8, 8, c_in))
    dw = layers.DepthwiseConv2D(k, padding="same", use_bias=False)(x)
    pw = layers.Conv2D(n, 1, use_bias=False)(dw)
    separable = keras.Model(x, pw).count_params()
    standard = keras.Model(x, layers.Conv2D(n, k, padding="same", use_bias=False)(x)).count_params()
    assert separable / standard == pytest.approx(1 / n + 1 / k**2)
    block = _model(blocks.apply_depthwise_separable_block, shape=(8, 8, c_in), filters=n)
    conv_params = sum(int(np.prod(w.shape)) for w in block.weights if "kernel" in w.path)
    assert conv_params == separable


def test_se_block_gates_channels():
    model = _model(blocks.apply_se_block, filters=32, squeeze_filters=8)
    assert _types(model)[-1] == "Multiply"
    x = np.abs(np.random.default_rng(0).normal(size=(2, 16, 16, 32))).astype("float32")
    ratio = model.predict(x, verbose=0) / x
    # one gate in (0, 1) per sample and channel, constant over space
    assert np.allclose(ratio, ratio[:, :1, :1, :], atol=1e-5)
    assert ratio.min() > 0 and ratio.max() < 1


def test_conv_block_padding_modes():
    sym = _model(blocks.apply_conv_bn_act_block, shape=(224, 224, 3), filters=8, kernel_size=7,
                 strides=2, padding="symmetric")
    assert sym.get_layer("stage1_block1_pad").padding == ((3, 3), (3, 3))
    assert sym.output_shape == (None, 112, 112, 8)
    same = _model(blocks.apply_conv_bn_act_block, shape=(15, 15, 3), filters=8, kernel_size=3)
    assert not any(l.name.endswith("_pad") for l in same.layers)  # stride 1 needs no PAD op
    with pytest.raises(ValueError, match="Received: padding='valid'"):
        _model(blocks.apply_conv_bn_act_block, filters=8, kernel_size=3, padding="valid")
    with pytest.raises(ValueError, match="Received: activation='gelu'"):
        _model(blocks.apply_conv_bn_act_block, filters=8, kernel_size=3, activation="gelu")


def test_basic_block_shortcuts():
    projection = _model(blocks.apply_basic_block, filters=64, strides=2)
    assert "stage1_block1_shortcut_conv" in [l.name for l in projection.layers]
    option_a = _model(blocks.apply_basic_block, filters=64, strides=2, shortcut_type="padding")
    assert option_a.count_params() < projection.count_params()
    plain = _model(blocks.apply_basic_block, filters=64, strides=2, shortcut=False)
    assert "Add" not in _types(plain)
    assert plain.count_params() == option_a.count_params()


def test_option_a_shortcut_is_strided_identity_plus_zero_channels():
    x = keras.Input((8, 8, 16))
    model = keras.Model(x, blocks.residual._apply_projection_shortcut(
        x, filters=32, strides=2, shortcut_type="padding", use_bias=False, bn_epsilon=1e-5,
        bn_momentum=0.9, name="s"))
    data = np.random.default_rng(0).normal(size=(1, 8, 8, 16)).astype("float32")
    out = model.predict(data, verbose=0)
    np.testing.assert_array_equal(out[..., :16], data[:, ::2, ::2, :])
    assert not out[..., 16:].any()


def test_bottleneck_stride_placement():
    v1 = _model(blocks.apply_bottleneck_block, filters=16, strides=2)
    assert v1.get_layer("stage1_block1_conv1_conv").strides == (2, 2)
    v15 = _model(blocks.apply_bottleneck_block, filters=16, strides=2, stride_in_1x1=False)
    assert v15.get_layer("stage1_block1_conv2_conv").strides == (2, 2)
    assert v1.output_shape == v15.output_shape == (None, 8, 8, 64)


def test_preact_block_ends_without_activation():
    model = _model(blocks.apply_preact_bottleneck_block, shape=(8, 8, 64), filters=16)
    assert _types(model)[-1] == "Add"
    assert model.layers[1].name == "stage1_block1_preact_bn"
