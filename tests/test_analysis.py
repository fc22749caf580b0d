"""Tests for kerascnn.analysis: MACs against published figures and TensorFlow's profiler, the
output-size formula, activation memory, receptive fields, path counts, feature maps, the
comparison table and chart, and the `info` / `compare` commands."""

import functools
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

from kerascnn.analysis import (activation_memory, compare, conv_output_size, count_macs,
                               count_paths, depth, edge_filters, feature_maps, receptive_field,
                               walk, weight_layer_count)
from kerascnn.analysis.cli import _standalone_parser
from kerascnn.analysis.feature_maps import default_layers, demo_image, edge_kernel


@functools.lru_cache(maxsize=None)
def built(name, **kwargs):
    """Each registered model is built once per test session (random weights, no download)."""
    return compare.build_registered(name, **kwargs)


def model_of(*layer_list, input_shape=(16, 16, 3)):
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layer_list:
        x = layer(x)
    return keras.Model(inputs, x)


# --- conv_output_size ------------------------------------------------------------------------

@pytest.mark.parametrize("size,kernel,strides,padding,dilation", [
    (224, 7, 2, "valid", 1), (224, 3, 2, "same", 1), (225, 3, 2, "same", 1), (28, 3, 1, "valid", 2),
    (31, 5, 3, "valid", 1), (17, 3, 1, "same", 3), (23, 3, 1, "valid", 3), (32, 1, 2, "valid", 1),
    (13, 4, 4, "same", 1),
])
def test_conv_output_size_matches_keras(size, kernel, strides, padding, dilation):
    layer = layers.Conv2D(1, kernel, strides=strides, padding=padding, dilation_rate=dilation)
    expected = layer.compute_output_shape((None, size, size, 1))[1]
    assert conv_output_size(size, kernel, strides, padding, dilation) == expected


def test_conv_output_size_formula_with_explicit_padding():
    assert conv_output_size(224, 7, strides=2, padding=3) == 112  # (224 + 6 - 7) // 2 + 1
    assert conv_output_size(56, 3, padding=1) == 56
    assert conv_output_size(28, 3, dilation_rate=2) == 24  # effective kernel 5
    assert conv_output_size(10, 3, strides=2, padding=(0, 1)) == 5
    assert conv_output_size(7, 3, strides=2, padding="same") == math.ceil(7 / 2)
    # Explicit padding agrees with ZeroPadding2D + a valid convolution.
    model = model_of(layers.ZeroPadding2D(2), layers.Conv2D(1, 5, strides=3), input_shape=(29, 29, 1))
    assert model.output.shape[1] == conv_output_size(29, 5, strides=3, padding=2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(size=0, kernel_size=3), "size"),
    (dict(size=8, kernel_size=3, strides=True), "strides"),
    (dict(size=8, kernel_size=3, padding="full"), "padding"),
    (dict(size=8, kernel_size=3, padding=-1), "padding"),
    (dict(size=4, kernel_size=3, dilation_rate=2), "smaller than the effective kernel 5"),
])
def test_conv_output_size_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        conv_output_size(**kwargs)
    assert "Received:" in str(info.value)


# --- MACs: published figures -----------------------------------------------------------------

# (registry name, builder kwargs, published MACs, source). ResNet-50: ours strides in the first 1x1
# of a bottleneck (Caffe / keras.applications), 3.86G; torchvision's "v1.5" (stride in the 3x3)
# is 4.1G.
PUBLISHED = [
    ("mobilenet_v2", {}, 300e6, "MobileNetV2 paper, Table 4"),
    ("mobilenet_v1", {}, 569e6, "MobileNet paper, Table 8"),
    ("resnet18", {}, 1.8e9, "ResNet paper, Table 1"),
    ("resnet34", {}, 3.6e9, "ResNet paper, Table 1"),
    ("resnet50", {}, 3.86e9, "Caffe ResNet-50 (stride in 1x1), e.g. keras.applications"),
    ("vgg16", {}, 15.5e9, "VGG16, Canziani et al. / torchvision 15.47G"),
    ("efficientnet_b0", {}, 0.39e9, "EfficientNet paper, Table 2"),
    ("googlenet", {"kernel_size_5x5": 3}, 1.5e9, "torchvision GoogLeNet 1.50G (3x3 '5x5' branch)"),
    ("googlenet", {}, 1.586e9, "GoogLeNet paper, sum of Table 1's ops column (text: 1.5G)"),
    ("resnet20_cifar", {}, 41e6, "ResNet CIFAR-10 network, 3x3 convs + FC"),
]


@pytest.mark.parametrize("name,kwargs,published,source", PUBLISHED,
                         ids=[f"{p[0]}{'-' + '-'.join(map(str, p[1].values())) if p[1] else ''}"
                              for p in PUBLISHED])
def test_macs_match_published(name, kwargs, published, source):
    macs = count_macs(built(name, **kwargs))
    assert macs.complete, macs.uncounted
    assert abs(macs.total / published - 1) < 0.03, (name, macs.total, published, source)
    assert macs.flops == 2 * macs.total


def test_resnet50_macs_follow_the_caffe_convention():
    total = count_macs(built("resnet50")).total
    assert 3.8e9 < total < 4.1e9
    assert abs(total - 3.86e9) / 3.86e9 < 0.01


# --- MACs: TensorFlow's profiler ------------------------------------------------------------

def _tf_profile(model):
    """(total float ops, {op type: float ops}) of a frozen batch-1 graph of `model`."""
    tf = pytest.importorskip("tensorflow")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([1, *model.inputs[0].shape[1:]], tf.float32)
    function = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(function.get_concrete_function(spec))
    graph_def = frozen.graph.as_graph_def()
    op_types = {node.name: node.op for node in graph_def.node}
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
        builder = tf.compat.v1.profiler.ProfileOptionBuilder
        options = builder(builder.float_operation()).with_empty_output().build()
        profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                                cmd="scope", options=options)
    per_type = {}

    def visit(node):
        if node.float_ops:
            kind = op_types.get(node.name, "?")
            per_type[kind] = per_type.get(kind, 0) + node.float_ops
        for child in node.children:
            visit(child)

    visit(profile)
    return profile.total_float_ops, per_type


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="needs the TensorFlow backend")
@pytest.mark.parametrize("name,kwargs", [
    ("lenet5", {}),
    ("resnet20_cifar", {}),
    ("mobilenet_v1", {"input_shape": (96, 96, 3), "classes": 10}),
])
def test_macs_agree_with_tensorflow_profiler(name, kwargs):
    model = built(name, **kwargs)
    macs = count_macs(model)
    total, per_type = _tf_profile(model)
    # The profiler also counts BN arithmetic that was not folded and counts pooling at one flop
    # per window element; the totals still agree within 5 %.
    assert abs(macs.total / (total / 2) - 1) < 0.05, (macs.total, total / 2)
    # Convolutions and matrix products are counted the same way: exactly equal.
    ours = macs.by_type()
    ours_linear = sum(ours.get(t, 0) for t in ("Conv2D", "DepthwiseConv2D", "Dense"))
    theirs_linear = sum(per_type.get(t, 0) for t in ("Conv2D", "DepthwiseConv2dNative", "MatMul")) / 2
    assert ours_linear == theirs_linear


# --- MACs: per-layer rules -------------------------------------------------------------------

def test_inception_bottleneck_example():
    # GoogLeNet's argument for 1x1 reductions: 28x28x192 -> 28x28x32 with a 5x5 convolution.
    direct = model_of(layers.Conv2D(32, 5, padding="same"), input_shape=(28, 28, 192))
    reduced = model_of(layers.Conv2D(16, 1), layers.Conv2D(32, 5, padding="same"),
                       input_shape=(28, 28, 192))
    assert count_macs(direct).total == 28 * 28 * 32 * 5 * 5 * 192 == 120_422_400
    assert count_macs(reduced).total == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16 == 12_443_648


@pytest.mark.parametrize("filters,kernel", [(64, 3), (128, 5), (10, 3)])
def test_depthwise_separable_ratio(filters, kernel):
    shape = (14, 14, 32)
    standard = count_macs(model_of(layers.Conv2D(filters, kernel, padding="same"), input_shape=shape))
    separable = count_macs(model_of(layers.DepthwiseConv2D(kernel, padding="same"),
                                    layers.Conv2D(filters, 1), input_shape=shape))
    assert separable.total / standard.total == pytest.approx(1 / filters + 1 / kernel ** 2, rel=1e-12)
    fused = count_macs(model_of(layers.SeparableConv2D(filters, kernel, padding="same"),
                                input_shape=shape))
    assert fused.total == separable.total


def test_conv_variants():
    shape = (20, 20, 8)
    plain = count_macs(model_of(layers.Conv2D(16, 3), input_shape=shape)).total
    assert plain == 18 * 18 * 16 * 9 * 8
    assert count_macs(model_of(layers.Conv2D(16, 3, groups=4), input_shape=shape)).total == plain // 4
    # Dilation changes only the output size (effective kernel 5: 16x16 outputs).
    assert count_macs(model_of(layers.Conv2D(16, 3, dilation_rate=2), input_shape=shape)).total == \
        16 * 16 * 16 * 9 * 8
    strided = model_of(layers.Conv2D(16, 3, strides=2, padding="same"), input_shape=shape)
    assert count_macs(strided).total == 10 * 10 * 16 * 9 * 8
    depthwise = count_macs(model_of(layers.DepthwiseConv2D(3, depth_multiplier=2),
                                    input_shape=shape)).total
    assert depthwise == 18 * 18 * 8 * 2 * 9
    assert count_macs(model_of(layers.Conv2DTranspose(4, 3, strides=2), input_shape=shape)).total == \
        20 * 20 * 8 * 9 * 4
    assert count_macs(model_of(layers.Dense(5), input_shape=(7, 3))).total == 7 * 3 * 5


def test_pooling_merge_and_resize_rules():
    inputs = keras.Input((8, 8, 4))
    pooled = layers.MaxPooling2D(2, name="pool")(inputs)  # 4x4x4 outputs x 4 window elements
    average = layers.AveragePooling2D(3, strides=1, padding="same", name="avg")(pooled)
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(average)
    scaled = layers.Multiply(name="scale")([average, gate])
    added = layers.Add(name="add")([scaled, average, pooled])
    near = layers.UpSampling2D(2, name="nearest")(added)
    bilinear = layers.UpSampling2D(2, interpolation="bilinear", name="bilinear")(added)
    resized = layers.Resizing(6, 6, interpolation="bicubic", name="resize")(added)
    mean = layers.Average(name="average")([near, bilinear])
    rescaled = layers.Rescaling(0.5, name="rescale")(mean)
    model = keras.Model(inputs, [rescaled, resized])
    macs = count_macs(model)
    assert macs["pool"].macs == 4 * 4 * 4 * 4
    assert macs["avg"].macs == 4 * 4 * 4 * 9
    assert macs["squeeze"].macs == 4 * 4 * 4
    assert macs["scale"].macs == 4 * 4 * 4
    assert macs["add"].macs == 2 * 4 * 4 * 4
    assert macs["nearest"].macs == 0
    assert macs["bilinear"].macs == 4 * 8 * 8 * 4
    assert macs["resize"].macs == 16 * 6 * 6 * 4
    assert macs["average"].macs == 2 * 8 * 8 * 4
    assert macs["rescale"].macs == 8 * 8 * 4
    assert macs.complete
    name, kind, shape, value = macs.per_layer[1]  # entries unpack as (name, type, shape, MACs)
    assert (name, kind, shape, value) == ("pool", "MaxPooling2D", (None, 4, 4, 4), 256)


def test_batch_norm_folds_only_after_a_linear_layer_it_alone_reads():
    inputs = keras.Input((6, 6, 3))
    bn_input = layers.BatchNormalization(name="bn_input")(inputs)  # nothing to fold into
    conv = layers.Conv2D(4, 1, name="conv")(bn_input)
    bn_conv = layers.BatchNormalization(name="bn_conv")(conv)  # folds
    shared = layers.Conv2D(4, 1, name="shared")(bn_conv)
    bn_shared = layers.BatchNormalization(name="bn_shared")(shared)  # conv also read elsewhere
    out = layers.Add()([bn_shared, shared])
    macs = count_macs(keras.Model(inputs, out))
    assert macs["bn_input"].macs == 6 * 6 * 3
    assert macs["bn_conv"].macs == 0
    assert macs["bn_shared"].macs == 6 * 6 * 4


class _Custom(layers.Layer):
    """A layer with weights and no MAC rule."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


class _Hooked(_Custom):
    def compute_macs(self, input_shapes):
        return 7 * math.prod(input_shapes[1:])


class _BadHook(_Custom):
    def compute_macs(self, input_shapes):
        return -1


def test_custom_layers_hook_and_uncounted():
    hooked = count_macs(model_of(_Hooked(name="hooked"), input_shape=(4, 4, 2)))
    assert hooked.total == 7 * 4 * 4 * 2 and hooked.complete
    unknown = count_macs(model_of(layers.Conv2D(2, 1, name="conv"), _Custom(name="mystery"),
                                  input_shape=(4, 4, 2)))
    assert [(u.name, u.type) for u in unknown.uncounted] == [("mystery", "_Custom")]
    assert "weights" in unknown.uncounted[0].reason
    assert unknown.total == 4 * 4 * 2 * 2  # the conv only: the unknown layer adds nothing
    assert not unknown.complete
    with pytest.raises(ValueError, match="non-negative integer"):
        count_macs(model_of(_BadHook(), input_shape=(4, 4, 2)))
    # A raw keras.ops call in the graph is reported, not guessed.
    inputs = keras.Input((4, 4, 2))
    raw = count_macs(keras.Model(inputs, keras.ops.sqrt(layers.ReLU()(inputs))))
    assert len(raw.uncounted) == 1 and "not a layer" in raw.uncounted[0].reason


def test_count_macs_needs_known_shapes():
    with pytest.raises(ValueError, match="fixed input size"):
        count_macs(model_of(layers.Conv2D(2, 3), input_shape=(None, None, 3)))


# --- activation memory -----------------------------------------------------------------------

def test_activation_memory_chain_by_hand():
    model = model_of(layers.Conv2D(4, 3, padding="same", name="conv"), layers.ReLU(name="relu"),
                     input_shape=(8, 8, 3))
    memory = activation_memory(model)
    assert memory.total_bytes == (8 * 8 * 3 + 8 * 8 * 4 + 8 * 8 * 4) * 4
    # While the ReLU runs, its input and output are live; the image is dead by then.
    assert memory.peak_bytes == 2 * 8 * 8 * 4 * 4
    assert memory.peak_layer == "relu"
    assert set(memory.peak_live) == {"conv", "relu"}
    half = activation_memory(model, batch_size=2, dtype="float16")
    assert (half.total_bytes, half.peak_bytes) == (memory.total_bytes, memory.peak_bytes)
    assert activation_memory(model, batch_size=3, dtype="int8").peak_bytes == 3 * memory.peak_bytes // 4


def test_activation_memory_keeps_a_shortcut_alive():
    inputs = keras.Input((8, 8, 4))
    a = layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = layers.Conv2D(4, 3, padding="same", name="b")(a)
    out = layers.Add(name="add")([inputs, b])
    memory = activation_memory(keras.Model(inputs, out))
    unit = 8 * 8 * 4 * 4
    # At "b" the input (still needed by the addition), a and b are live; at "add", a is dead.
    assert memory.peak_bytes == 3 * unit
    assert memory.peak_layer == "b"


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size"), (dict(dtype="float8"), "dtype"),
])
def test_activation_memory_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        activation_memory(model_of(layers.ReLU()), **kwargs)


# --- the four classic ImageNet networks ----------------------------------------------------

@pytest.fixture(scope="module")
def classics():
    stats = [compare.model_stats(built(name), name=name)
             for name in ("alexnet", "vgg16", "googlenet", "resnet50")]
    return {s.name: s for s in stats}


def test_classic_networks_ordering(classics):
    vgg, googlenet, resnet, alexnet = (classics[n]
                                       for n in ("vgg16", "googlenet", "resnet50", "alexnet"))
    others = [s for s in classics.values() if s.name != "vgg16"]
    assert all(vgg.macs > s.macs for s in others)
    assert all(vgg.params > s.params for s in others)
    assert all(vgg.peak_bytes > s.peak_bytes for s in others)
    assert all(googlenet.params < s.params for s in classics.values() if s.name != "googlenet")
    assert googlenet.macs < vgg.macs and googlenet.macs < resnet.macs
    # AlexNet computes less than GoogLeNet with almost nine times its parameters.
    assert alexnet.macs < googlenet.macs and alexnet.params > 8 * googlenet.params
    assert (vgg.depth, resnet.depth, googlenet.depth, alexnet.depth) == (16, 50, 22, 8)
    assert vgg.receptive_field == (212, 212) and resnet.receptive_field == (483, 483)


def test_comparison_table_csv_and_chart(classics, tmp_path):
    stats = list(classics.values())
    markdown = compare.to_markdown(stats)
    assert markdown.count("\n") == len(stats) + 2
    assert "| vgg16 | 224x224x3 | 138 | 15.48 |" in markdown
    rows = compare.to_csv(stats).strip().splitlines()
    assert rows[0].startswith("model,input_shape,params,macs")
    vgg_row = next(r for r in rows if r.startswith("vgg16,")).split(",")
    assert int(vgg_row[2]) == built("vgg16").count_params()
    assert int(vgg_row[3]) == count_macs(built("vgg16")).total
    path = compare.bubble_chart(stats, str(tmp_path / "chart.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# --- depth and paths -------------------------------------------------------------------------

def test_count_paths_residual_and_plain():
    assert count_paths(built("resnet20_cifar")) == 2 ** 9
    assert count_paths(built("plain20_cifar")) == 1
    assert depth(built("resnet20_cifar")) == depth(built("plain20_cifar")) == 20


def test_count_paths_by_hand():
    inputs = keras.Input((4, 4, 2))
    a = layers.Conv2D(2, 1)(inputs)
    b = layers.Add()([a, inputs])                      # 2 paths
    c = layers.Concatenate()([b, layers.Rescaling(0.0)(b)])  # zeros add no path: still 2
    d = layers.Add()([c, c])                            # one tensor read twice: 4
    assert count_paths(keras.Model(inputs, d)) == 4
    assert count_paths(keras.Model(inputs, [b, a])) == 3  # summed over outputs


def test_depth_counts_weight_layers_on_the_longest_path():
    assert depth(built("vgg16")) == weight_layer_count(built("vgg16")) == 16
    assert depth(built("resnet50")) == 50
    assert weight_layer_count(built("resnet50")) == 54  # + 4 projection shortcuts
    assert depth(built("mobilenet_v1")) == 28


# --- graph walking ---------------------------------------------------------------------------

def test_walk_expands_nested_models_sequential_and_shared_layers():
    inner_in = keras.Input((6, 6, 2))
    inner = keras.Model(inner_in, layers.Conv2D(3, 3, name="inner_conv")(inner_in), name="inner")
    inputs = keras.Input((6, 6, 2))
    shared = layers.Conv2D(2, 1, name="shared")
    x = shared(shared(inputs))
    out = layers.ReLU(name="out")(inner(x))
    graph = walk(keras.Model(inputs, out))
    names = [n.name for n in graph]
    assert names[1:] == ["shared", "shared:1", "inner/inner_conv", "out"]
    assert graph["inner/inner_conv"].inputs[0].node == names.index("shared:1")
    assert count_macs(keras.Model(inputs, out)).total == 2 * (6 * 6 * 2 * 2) + 4 * 4 * 3 * 9 * 2
    sequential = keras.Sequential([keras.Input((5, 5, 1)), layers.Conv2D(2, 3), layers.Flatten()])
    assert [n.type_name for n in walk(sequential)] == ["InputLayer", "Conv2D", "Flatten"]
    with pytest.raises(ValueError, match="keras.Model"):
        walk(layers.Conv2D(2, 3))


# --- receptive field -------------------------------------------------------------------------

def rf_of(*layer_list, input_shape=(64, 64, 1)):
    return receptive_field(model_of(*layer_list, input_shape=input_shape))


def test_stacked_3x3_convolutions():
    two = rf_of(layers.Conv2D(1, 3, padding="same"), layers.Conv2D(1, 3, padding="same"))
    assert two.final.size == (5, 5) and two.final.jump == (1, 1) and two.final.start == (0, 0)
    three = rf_of(*[layers.Conv2D(1, 3) for _ in range(3)])
    assert three.final.size == (7, 7) and three.final.start == (3, 3)  # valid: first center at 3


def test_strided_and_dilated_stacks():
    # 3x3/2 valid, then 2x2/2 pool, then 3x3: r = 3, then 3 + 1*2 = 5, then 5 + 2*4 = 13.
    fields = rf_of(layers.Conv2D(1, 3, strides=2, name="c1"), layers.MaxPooling2D(2, name="p"),
                   layers.Conv2D(1, 3, name="c2"))
    assert [fields[n].size[0] for n in ("c1", "p", "c2")] == [3, 5, 13]
    assert [fields[n].jump[0] for n in ("c1", "p", "c2")] == [2, 4, 4]
    # Centers: 1; 1 + 0.5 * 2 = 2; 2 + 1 * 4 = 6.
    assert [fields[n].start[0] for n in ("c1", "p", "c2")] == [1, 2, 6]
    # Dilation: 3x3 d=2 -> 5, then 3x3 d=4 -> 5 + 8 = 13, then 3x3 d=1 -> 15.
    dilated = rf_of(layers.Conv2D(1, 3, dilation_rate=2, padding="same"),
                    layers.Conv2D(1, 3, dilation_rate=4, padding="same"),
                    layers.Conv2D(1, 3, padding="same"))
    assert dilated.final.size == (15, 15) and dilated.final.start == (0, 0)
    # Explicit padding moves the start; TensorFlow's SAME pads less before a strided kernel.
    padded = rf_of(layers.ZeroPadding2D(((3, 3), (1, 1))), layers.Conv2D(1, 7, strides=2))
    assert padded.final.start == (0, 2) and padded.final.size == (7, 7)
    same = rf_of(layers.Conv2D(1, 3, strides=2, padding="same"))
    assert same.final.start == (1, 1)  # 64 is even: no padding before, one after


def test_non_square_kernels_per_axis():
    fields = rf_of(layers.Conv2D(1, (1, 7), padding="same"), layers.Conv2D(1, (7, 1), padding="same"))
    assert fields.final.size == (7, 7)
    assert rf_of(layers.Conv2D(1, (1, 7))).final.size == (1, 7)


def test_branches_concatenation_and_misalignment():
    inputs = keras.Input((32, 32, 1))
    small = layers.Conv2D(1, 3, padding="same", name="small")(inputs)
    large = layers.Conv2D(1, 5, padding="same", name="large")(inputs)
    concat = layers.Concatenate(name="concat")([small, large])
    added = layers.Add(name="add")([layers.Conv2D(2, 3, padding="same", name="after")(concat), concat])
    fields = receptive_field(keras.Model(inputs, added))
    assert fields["concat"].size == (5, 5) and fields["concat"].aligned
    assert fields["add"].size == (7, 7)
    assert fields.misaligned == ()
    # A strided 3x3 with SAME padding (centered at 1) next to a strided 1x1 (centered at 0).
    strided = layers.Conv2D(1, 3, strides=2, padding="same", name="strided")(inputs)
    shortcut = layers.Conv2D(1, 1, strides=2, name="shortcut")(inputs)
    merged = layers.Add(name="merged")([strided, shortcut])
    out = layers.Conv2D(1, 3, padding="same", name="next")(merged)
    fields = receptive_field(keras.Model(inputs, out))
    assert fields.misaligned == ("merged",)
    assert not fields["merged"].aligned and not fields["next"].aligned
    assert fields["merged"].size == (3, 3)  # the union of [0, 2] and [0, 0]


def test_global_pooling_and_squeeze_excitation():
    inputs = keras.Input((16, 16, 4))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    gate = layers.Conv2D(4, 1, activation="sigmoid", name="excite")(gate)
    scaled = layers.Multiply(name="scale")([x, gate])
    pooled = layers.GlobalAveragePooling2D(name="pool")(scaled)
    out = layers.Dense(3, name="classifier")(pooled)
    fields = receptive_field(keras.Model(inputs, out))
    assert fields["squeeze"].is_global and fields["excite"].is_global
    assert fields["scale"].size == (3, 3) and fields["scale"].global_context
    assert fields["classifier"].is_global and fields["classifier"].size is None
    assert fields.final.name == "scale"


def test_vgg16_receptive_field_is_212():
    fields = receptive_field(built("vgg16"))
    assert fields["stage5_block3_pool"].size == (212, 212)
    assert fields["stage5_block3_pool"].jump == (32, 32)
    assert fields.final.name == "stage5_block3_pool"


def test_receptive_field_needs_a_spatial_input():
    inputs = keras.Input((8,))
    with pytest.raises(ValueError, match="spatial"):
        receptive_field(keras.Model(inputs, layers.Dense(2)(inputs)))


# --- feature maps and edge filters -----------------------------------------------------------

def test_edge_filters_find_vertical_and_horizontal_edges():
    image = np.zeros((12, 12), dtype="float32")
    image[:, :6] = 1.0  # a vertical edge between columns 5 and 6
    layer = edge_filters()
    assert layer.kernel.shape == (3, 3, 1, 2) and not layer.trainable
    out = np.asarray(layer(image[None, :, :, None]))[0]
    vertical, horizontal = out[..., 0], out[..., 1]
    assert np.all(vertical[1:-1, 5:7] == 4.0)  # Sobel: 1 + 2 + 1 across the edge
    assert np.all(vertical[1:-1, 1:4] == 0) and np.all(vertical[1:-1, 8:-1] == 0)
    assert np.all(horizontal[1:-1, :] == 0)
    rotated = np.asarray(layer(image.T[None, :, :, None]))[0]
    assert np.array_equal(rotated[..., 1], vertical.T)
    assert np.array_equal(edge_kernel("prewitt"), [[1, 0, -1]] * 3)


def test_rgb_edge_filters_read_one_channel():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(1, 10, 10, 3)).astype("float32")
    layer = edge_filters(rgb=True, channel=1)
    kernel = np.asarray(layer.kernel)
    assert kernel.shape == (3, 3, 3, 2)
    assert np.all(kernel[:, :, [0, 2], :] == 0)
    mono = np.asarray(edge_filters()(image[..., 1:2]))
    np.testing.assert_allclose(np.asarray(layer(image)), mono, atol=1e-5)
    with pytest.raises(ValueError, match="channel"):
        edge_filters(rgb=True, channel=3)
    with pytest.raises(ValueError, match="kind"):
        edge_filters(kind="canny")


def test_feature_maps_writes_a_grid(tmp_path):
    model = built("resnet20_cifar")
    names = default_layers(model)
    assert len(names) == 4 and names[0] == "stem_conv"
    assert model.get_layer(names[-1]).output.shape[1] == 8  # the deepest convolutions
    path = tmp_path / "maps" / "resnet20.png"
    maps = feature_maps(model, demo_image(64) / 255.0, path=str(path), channels=4)
    assert list(maps) == names
    assert maps["stem_conv"].shape == (32, 32, 16)  # resized to the model's 32x32 input
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="Unknown layer name"):
        feature_maps(model, demo_image(32), layers=["nope"], path=str(path))
    with pytest.raises(ValueError, match="no spatial output"):
        feature_maps(model, demo_image(32), layers=["predictions"], path=str(path))
    with pytest.raises(ValueError, match="order"):
        feature_maps(model, demo_image(32), order="random", path=str(path))


# --- EfficientNet scaling --------------------------------------------------------------------

def test_efficientnet_scaling_reaches_about_twice_the_cost():
    rows = {r.scaling: r for r in compare.efficientnet_scaling()}
    base = rows["baseline (B0)"]
    assert abs(base.macs / 0.39e9 - 1) < 0.03
    for label in ("width only", "depth only", "resolution only"):
        assert abs(rows[label].ratio - 2.0) < 0.1, rows[label]
    assert abs(rows["width only"].width - math.sqrt(2)) < 0.06
    assert abs(rows["resolution only"].resolution - 224 * math.sqrt(2)) < 8
    assert rows["resolution only"].params == base.params  # resolution adds no parameters
    assert (rows["depth only"].blocks, base.blocks) == (32, 16)
    compound = rows["compound (phi=1)"]
    assert (compound.width, compound.depth, compound.resolution) == (1.1, 1.2, 258)
    # ceil(1.2 * repeats) blocks per stage (23, not 16 * 1.2) and a resolution that is not a
    # multiple of 32 make it cost more than alpha * beta**2 * gamma**2 = 1.92.
    assert compound.blocks == 23 and compound.ratio > 1.92
    aligned = rows["compound (phi=1), 256 px"]
    assert aligned.resolution == 256 and aligned.macs < compound.macs


# --- command line ----------------------------------------------------------------------------

def run_cli(argv):
    args = _standalone_parser().parse_args(argv)
    return args.func(args)


def test_info_command(capsys):
    assert run_cli(["info", "resnet20_cifar", "--layers", "2"]) == 0
    out = capsys.readouterr().out
    assert "Parameters:          271,098" in out
    assert f"{count_macs(built('resnet20_cifar')).total:,}" in out
    assert "20 weight layers" in out and "512 input-to-output paths" in out
    assert "Receptive field:     81x81" in out
    assert "stage1_block1_conv1_conv" in out


def test_compare_command_writes_table_csv_and_chart(tmp_path, capsys):
    assert run_cli(["compare", "lenet5", "resnet20_cifar", "--out", str(tmp_path)]) == 0
    assert "| resnet20_cifar | 32x32x3 |" in capsys.readouterr().out
    assert (tmp_path / "comparison.md").read_text().count("\n") == 4
    assert len((tmp_path / "comparison.csv").read_text().splitlines()) == 3
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="Unknown model name"):
        run_cli(["compare", "resnet_50", "--out", str(tmp_path)])


def test_registering_the_commands_does_not_import_keras():
    # kerascnn's main program imports Keras quietly, after parsing; registering must not.
    code = ("import argparse, sys; from kerascnn.analysis.cli import add_commands; "
            "add_commands(argparse.ArgumentParser().add_subparsers()); print('keras' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=root, check=True)
    assert result.stdout.strip() == "False"


def test_package_exports_the_functions_not_the_same_named_modules():
    import kerascnn.analysis
    import kerascnn.analysis.feature_maps  # noqa: F401  (loads the submodule of the same name)
    import kerascnn.analysis.receptive_field  # noqa: F401

    assert kerascnn.analysis.receptive_field is receptive_field
    assert kerascnn.analysis.feature_maps is feature_maps
    assert callable(kerascnn.analysis.count_macs)
