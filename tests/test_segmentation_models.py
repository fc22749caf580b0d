"""Segmentation models: what each family promises beyond the generic checks of
test_models_generic.py (which every segmentation model also passes).

FCNs and U-Nets run at several sizes with one model; ASPP's rates follow the output stride; the
`separable` and `upsampling` options build what they say; sizes that cannot work fail with the
sizes that would; every model converts to a float32 TFLite file of builtin ops that agrees with
Keras.
"""

import inspect
import re
import warnings

import numpy as np
import pytest

import keras
import kerascnn
from keras import layers
from kerascnn.blocks.decoder import apply_unet_decoder_block
from kerascnn.blocks.upsample import BilinearUpsampling, apply_upsample_block, bilinear_kernel
from kerascnn.export import TFLiteModel, tflite_ops, to_tflite
from kerascnn.models.segmentation import transfer_backbone
from kerascnn.models.segmentation.common import nearest_multiples
from kerascnn.models.segmentation.fcn import convolutionalize_vgg16

SEGMENTATION = kerascnn.list_models(task="segmentation")
NORMATIVE = [
    "fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16", "fcn8s_mobilenet_v2", "fcn8s_resnet50",
    "unet", "unet_mobilenet_v2", "unet_resnet34",
    "deeplabv3_mobilenet_v2", "deeplabv3_resnet50", "deeplabv3_plus_mobilenet_v2",
    "deeplabv3_plus_resnet50", "mobile_seg_mobilenet_v2", "lraspp_mobilenet_v3_large",
]
# The cheapest member of each head family (VGG16 and ResNet-50 builds are slow; their heads are
# the same code on other maps).
ONE_PER_HEAD = ["fcn8s_mobilenet_v2", "unet", "unet_mobilenet_v2", "deeplabv3_mobilenet_v2",
                "deeplabv3_plus_mobilenet_v2", "mobile_seg_mobilenet_v2",
                "lraspp_mobilenet_v3_large"]


def accepts(name, argument):
    return argument in inspect.signature(kerascnn.model_info(name).builder).parameters


def small(name):
    """Keyword arguments for a cheap version of `name`: narrow MobileNets, a narrow U-Net."""
    if accepts(name, "alpha"):
        return {"alpha": 0.35}
    if name == "unet":
        return {"base_filters": 8}
    return {}


def images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype("float32")


def resize_layers(model):
    """The model's upsampling resizes (not ASPP's pooled-branch broadcast, which is always nearest)."""
    return [l for l in model.layers if isinstance(l, (layers.Resizing, layers.UpSampling2D))
            and l.name != "aspp_pool_resize"]


def test_registry_keys_and_info():
    assert set(NORMATIVE) <= set(SEGMENTATION)
    for name in SEGMENTATION:
        info = kerascnn.model_info(name)
        assert info.task == "segmentation" and "arxiv.org/abs/" in info.paper, name
        assert info.default_input_shape[-1] == 3 and info.min_input_size <= 64, name
    assert kerascnn.model_info("deeplabv3_resnet50").default_input_shape == (512, 512, 3)
    # The input is the backbone's: ResNet-50's Caffe-style BGR mean subtraction, MobileNet's [-1, 1].
    assert kerascnn.model_info("fcn8s_resnet50").preprocessing == kerascnn.model_info("resnet50").preprocessing
    assert kerascnn.model_info("unet_resnet34").preprocessing.mode == "torch"
    assert kerascnn.model_info("lraspp_mobilenet_v3_large").preprocessing.mode == "tf"


@pytest.mark.parametrize("name", ["fcn8s_mobilenet_v2", "fcn8s_vgg16", "unet", "unet_mobilenet_v2",
                                  "lraspp_mobilenet_v3_large"])
@pytest.mark.parametrize("upsampling", ["nearest", "transpose"])
def test_one_model_runs_at_two_sizes(name, upsampling):
    """Fully convolutional models built with input_shape=(None, None, 3) take any multiple of their
    stride and output a map of the input's size."""
    if name == "fcn8s_vgg16" and upsampling == "transpose":
        pytest.skip("one VGG16 build is enough")
    model = kerascnn.build(name, input_shape=(None, None, 3), classes=4, upsampling=upsampling,
                           **small(name))
    assert tuple(model.output.shape) == (None, None, None, 4)
    for height, width in ((64, 64), (96, 128)):
        x = np.random.default_rng(0).uniform(-1, 1, (1, height, width, 3)).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=False))
        assert y.shape == (1, height, width, 4)
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name, size, multiple, nearest", [
    ("unet", 100, 16, "96 or 112"),
    ("unet_mobilenet_v2", 100, 32, "96 or 128"),
    ("fcn8s_mobilenet_v2", 200, 32, "192 or 224"),
    ("deeplabv3_mobilenet_v2", 72, 16, "64 or 80"),
    ("lraspp_mobilenet_v3_large", 40, 16, "32 or 48"),
])
def test_uneven_size_names_the_sizes_that_work(name, size, multiple, nearest):
    with pytest.raises(ValueError, match=f"multiples of {multiple}") as err:
        kerascnn.build(name, input_shape=(size, 64, 3), **small(name))
    message = str(err.value)
    assert f"height {size} -> {nearest}" in message and "width" not in message.split("work:")[1]
    assert f"Received: input_shape=({size}, 64, 3)" in message


def test_nearest_multiples():
    assert nearest_multiples(100, 16) == (96, 112)
    assert nearest_multiples(10, 16) == (16,)
    assert nearest_multiples(64, 32) == (64,)


def test_deeplab_needs_a_known_size():
    with pytest.raises(ValueError, match="known height and width"):
        kerascnn.build("deeplabv3_mobilenet_v2", input_shape=(None, None, 3), alpha=0.35)
    with pytest.raises(ValueError, match=r"multiples of 8.*Received"):
        kerascnn.build("deeplabv3_mobilenet_v2", input_shape=(68, 68, 3), output_stride=8, alpha=0.35)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"upsampling": "foo"}, ValueError, "Received: upsampling='foo'"),
    ({"output_stride": 32}, ValueError, "Received: output_stride=32"),
    ({"separable": "yes"}, ValueError, "Received: separable='yes'"),
    ({"classes": 0}, ValueError, "Received: classes=0"),
    ({"classifier_activation": "no_such_fn"}, ValueError, "classifier_activation='no_such_fn'"),
    ({"weights": "/nonexistent/w.weights.h5"}, ValueError, "not found"),
    ({"include_top": False}, TypeError, "'include_top'"),
    ({"features_only": True}, TypeError, "'features_only'"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        kerascnn.build("deeplabv3_plus_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35, **kwargs)


def test_options_that_do_not_apply_are_type_errors():
    with pytest.raises(TypeError, match="'separable'"):
        kerascnn.build("mobile_seg_mobilenet_v2", separable=True)
    with pytest.raises(TypeError, match="'alpha'"):
        kerascnn.build("deeplabv3_resnet50", alpha=0.5)
    with pytest.raises(TypeError, match="'output_stride'"):
        kerascnn.build("unet", output_stride=16)
    with pytest.raises(ValueError, match="no pretrained backbone"):
        kerascnn.build("unet", weights="imagenet")


def aspp_rates(model):
    """Dilation rates of the ASPP 3x3 branches, in branch order."""
    convs = [l for l in model.layers if re.fullmatch(r"aspp_b\d+_(dw_)?conv", l.name)]
    return [l.dilation_rate[0] for l in convs if l.kernel_size == (3, 3)]


@pytest.mark.parametrize("separable", [False, True])
def test_aspp_rates_double_at_output_stride_8(separable):
    """Rates 6, 12, 18 at output stride 16 and 12, 24, 36 at 8 (the DeepLabv3 paper), and the
    features the ASPP reads are then twice as large."""
    kwargs = dict(input_shape=(64, 64, 3), alpha=0.35, separable=separable)
    os16 = kerascnn.build("deeplabv3_mobilenet_v2", output_stride=16, **kwargs)
    os8 = kerascnn.build("deeplabv3_mobilenet_v2", output_stride=8, **kwargs)
    assert aspp_rates(os16) == [6, 12, 18]
    assert aspp_rates(os8) == [12, 24, 36]
    assert os16.get_layer("aspp_b0_conv").output.shape[1:3] == (4, 4)
    assert os8.get_layer("aspp_b0_conv").output.shape[1:3] == (8, 8)
    mobile = kerascnn.build("mobile_seg_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35)
    assert aspp_rates(mobile) == []  # Mobile DeepLabv3: 1x1 and image pooling only
    assert {"aspp_b0_conv", "aspp_pool_conv", "aspp_project_conv"} <= {l.name for l in mobile.layers}


@pytest.mark.parametrize("separable", [False, True])
def test_atrous_rates_replace_the_papers_rates(separable):
    kwargs = dict(input_shape=(64, 64, 3), alpha=0.35, separable=separable)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rates below the 4x4 map: no warning
        model = kerascnn.build("deeplabv3_plus_mobilenet_v2", atrous_rates=(1, 2, 3), **kwargs)
    assert aspp_rates(model) == [1, 2, 3]
    one = kerascnn.build("deeplabv3_mobilenet_v2", atrous_rates=np.array([2]), **kwargs)
    assert aspp_rates(one) == [2]
    assert "aspp_b2_conv" not in {l.name for l in one.layers}


def test_rates_as_large_as_the_map_warn_and_act_as_1x1_convolutions():
    """At 64x64 and output stride 16 the ASPP map is 4x4: rates 6, 12, 18 leave only the centre
    tap inside it, so the branch equals a 1x1 convolution with the kernel's centre."""
    with pytest.warns(UserWarning, match=r"rates \[6, 12, 18\] .* 4x4 feature map") as record:
        model = kerascnn.build("deeplabv3_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35)
    assert "atrous_rates=(6, 12, 18)" in str(record[0].message)
    with pytest.warns(UserWarning, match=r"rates \[4\] "):
        kerascnn.build("deeplabv3_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35,
                       atrous_rates=(3, 4))
    conv = model.get_layer("aspp_b1_conv")
    features = keras.Model(model.input, conv.input)(np.random.default_rng(0).normal(
        size=(2, 64, 64, 3)).astype("float32"))
    centre = keras.ops.einsum("nhwc,cf->nhwf", features, conv.kernel[1, 1])
    np.testing.assert_allclose(np.asarray(conv(features)), np.asarray(centre), atol=1e-5)


@pytest.mark.parametrize("rates", [(), (0, 6), (6.0,), "6", 6, (True,)])
def test_bad_atrous_rates(rates):
    with pytest.raises(ValueError, match=re.escape(f"Received: atrous_rates={rates!r}")):
        kerascnn.build("deeplabv3_plus_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35,
                       atrous_rates=rates)


def test_mobile_head_takes_no_atrous_rates():
    with pytest.raises(TypeError, match="'atrous_rates'"):
        kerascnn.build("mobile_seg_mobilenet_v2", atrous_rates=(1, 2, 3))
    from kerascnn.models.segmentation.deeplab import deeplab
    with pytest.raises(ValueError, match="no atrous branches"):
        deeplab("mobilenet_v2", head="mobile", input_shape=(64, 64, 3), alpha=0.35,
                atrous_rates=(1,))


def test_separable_option_makes_aspp_and_decoder_depthwise():
    kwargs = dict(input_shape=(64, 64, 3), alpha=0.35)
    plain = kerascnn.build("deeplabv3_plus_mobilenet_v2", **kwargs)
    separable = kerascnn.build("deeplabv3_plus_mobilenet_v2", separable=True, **kwargs)

    def head_depthwise(model):
        return sorted(l.name for l in model.layers if isinstance(l, layers.DepthwiseConv2D)
                      and l.name.startswith(("aspp_", "decoder_")))

    assert head_depthwise(plain) == []
    assert head_depthwise(separable) == ["aspp_b1_dw_conv", "aspp_b2_dw_conv", "aspp_b3_dw_conv",
                                         "decoder_conv1_dw_conv", "decoder_conv2_dw_conv"]
    assert separable.count_params() < plain.count_params()


def test_unet_separable_decoder_is_depthwise_and_converts():
    """`separable=True` turns every 3x3 convolution of the U-Net decoder into depthwise 3x3 + 1x1
    (and nothing in the backbone changes); the model still converts to builtin ops and matches
    Keras."""
    kwargs = dict(input_shape=(64, 64, 3), classes=5, alpha=0.35)
    plain = kerascnn.build("unet_mobilenet_v2", **kwargs)
    separable = kerascnn.build("unet_mobilenet_v2", separable=True, **kwargs)

    def decoder(model, kind):
        return sorted(l.name for l in model.layers
                      if type(l) is kind and l.name.startswith("decoder_"))

    assert decoder(plain, layers.DepthwiseConv2D) == []
    assert decoder(separable, layers.DepthwiseConv2D) == [
        f"decoder_block{k}_conv{j}_dw_conv" for k in range(1, 6) for j in (1, 2)]
    assert decoder(separable, layers.Conv2D) == [
        f"decoder_block{k}_conv{j}_pw_conv" for k in range(1, 6) for j in (1, 2)]
    assert all(l.kernel_size == (1, 1) for l in separable.layers
               if l.name.endswith("_pw_conv") and l.name.startswith("decoder_"))
    backbone = {l.name: l.count_params() for l in plain.layers if l.name.startswith("stage")}
    assert backbone == {l.name: l.count_params() for l in separable.layers
                        if l.name.startswith("stage")}
    assert separable.count_params() < plain.count_params()
    calibrate_batchnorm(separable, images(4, 64, seed=1))
    content = to_tflite(separable, "float32")
    ops = tflite_ops(content)
    assert "DEPTHWISE_CONV_2D" in ops
    assert not any(op == "CUSTOM" or op.startswith("Flex") for op in ops), ops
    x = images(2, 64)
    # Within 1e-4 or 4x the model's float32 rounding noise, as test_float32_tflite_matches_keras.
    # The randomly initialised separable decoder amplifies that noise: about 1.3e-3 here.
    tolerance = max(1e-4, 4 * keras_rounding_noise(separable, x))
    np.testing.assert_allclose(TFLiteModel(content)(x), separable.predict(x, verbose=0),
                               atol=tolerance)


def test_unet_separable_argument_is_checked():
    with pytest.raises(ValueError, match=re.escape("Received: separable='yes'")):
        kerascnn.build("unet_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35, separable="yes")
    with pytest.raises(TypeError, match="'separable'"):  # the symmetric U-Net has no option
        kerascnn.build("unet", input_shape=(64, 64, 3), separable=True)
    with pytest.raises(ValueError, match=re.escape("needs `batch_norm=True`")):
        apply_unet_decoder_block(keras.Input((8, 8, 4)), None, filters=4, batch_norm=False,
                                 separable=True, name="block")


@pytest.mark.parametrize("name", ONE_PER_HEAD)
def test_upsampling_option_chooses_the_layers(name):
    """"transpose" builds Conv2DTranspose layers and no resizes; "nearest" and "bilinear" build
    resizes of that interpolation and no transposed convolutions. All give the input's size."""
    built = {}
    for mode in ("nearest", "bilinear", "transpose"):
        model = kerascnn.build(name, input_shape=(64, 64, 3), classes=3, upsampling=mode, **small(name))
        assert tuple(model.output.shape) == (None, 64, 64, 3), mode
        built[mode] = model
        transposed = [l for l in model.layers if isinstance(l, layers.Conv2DTranspose)]
        resizes = resize_layers(model)
        if mode == "transpose":
            assert transposed and not resizes, mode
        else:
            assert resizes and not transposed, mode
            assert {l.interpolation for l in resizes} == {mode}
            # With a known size the resizes are Resizing layers (TFLite RESIZE_* ops).
            assert all(isinstance(l, layers.Resizing) for l in resizes)
    y = built["nearest"](images(1, 64), training=False)
    assert keras.ops.convert_to_numpy(y).shape == (1, 64, 64, 3)


def test_nearest_resize_falls_back_to_upsampling2d_for_unknown_sizes():
    model = kerascnn.build("unet", input_shape=(None, None, 3), base_filters=8)
    assert resize_layers(model) and all(isinstance(l, layers.UpSampling2D) for l in resize_layers(model))


def test_fcn_skip_scorers_start_at_zero():
    """The paper's zero-initialised skip scorers: a new FCN-8s first computes FCN-32s-like scores."""
    model = kerascnn.build("fcn8s_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35)
    for level in (3, 4):
        kernel, bias = model.get_layer(f"decoder_score_p{level}").get_weights()
        assert not kernel.any() and not bias.any()
    assert model.get_layer("head_score").get_weights()[0].any()


def test_fcn_variants_use_pool3_and_pool4():
    names = {v: {l.name for l in kerascnn.build(f"fcn{v}s_vgg16", input_shape=(64, 64, 3)).layers}
             for v in (32, 16, 8)}
    assert "decoder_score_p4" not in names[32] and "decoder_score_p3" not in names[16]
    assert {"decoder_score_p4", "decoder_fuse_p4"} <= names[16]
    assert {"decoder_score_p3", "decoder_fuse_p3", "stage3_block3_pool"} <= names[8]


def test_convolutionalized_vgg16_computes_its_fully_connected_layers():
    """fc6/fc7 with VGG16's fc1/fc2 weights reshaped give, at the centre of a 7x7 pool5 map,
    exactly what VGG16's classifier computes on the flattened map."""
    fcn = kerascnn.build("fcn32s_vgg16", input_shape=(224, 224, 3), dropout_rate=0.0)
    vgg = keras.applications.VGG16(weights=None, include_top=True)
    ours = [l for l in fcn.layers if l.name.startswith("stage") and isinstance(l, layers.Conv2D)]
    theirs = [l for l in vgg.layers if isinstance(l, layers.Conv2D)]
    assert len(ours) == len(theirs) == 13
    for a, b in zip(ours, theirs):
        a.set_weights(b.get_weights())
    convolutionalize_vgg16(fcn, vgg)
    x = np.random.default_rng(0).uniform(-100, 100, (1, 224, 224, 3)).astype("float32")
    fc7 = keras.Model(fcn.input, fcn.get_layer("head_fc7_relu").output).predict(x, verbose=0)
    fc2 = keras.Model(vgg.input, vgg.get_layer("fc2").output).predict(x, verbose=0)
    assert fc7.shape == (1, 7, 7, 4096)
    np.testing.assert_allclose(fc7[0, 3, 3], fc2[0], rtol=1e-4, atol=1e-4 * np.abs(fc2).max())


def test_transposed_upsampling_starts_as_bilinear_resize():
    """Long et al.'s initialisation: a stride-f transposed convolution with kernel 2f equals a
    bilinear resize except within f // 2 pixels of the border."""
    assert np.allclose(bilinear_kernel(2), [0.25, 0.75, 0.75, 0.25])
    x = keras.Input((6, 6, 2))
    model = keras.Model(x, [apply_upsample_block(x, factor=f, mode=m, conv=False, name=f"decoder_{m}{f}")
                            for f in (2, 4) for m in ("transpose", "bilinear")])
    assert isinstance(model.get_layer("decoder_transpose2_deconv").kernel_initializer, BilinearUpsampling)
    data = np.random.default_rng(0).uniform(size=(1, 6, 6, 2)).astype("float32")
    out = model.predict(data, verbose=0)
    for (deconv, resize), f in zip((out[0:2], out[2:4]), (2, 4)):
        inner = slice(f // 2, -(f // 2))
        np.testing.assert_allclose(deconv[:, inner, inner], resize[:, inner, inner], atol=1e-6)


def test_checkerboard_comes_from_uneven_overlap():
    """All-ones stride-2 transposed convolution on a constant input: kernel 3 (uneven overlap)
    paints a checkerboard of 1, 2 and 4; kernel 4 (even overlap) is flat away from the border,
    and so is nearest resize followed by a 3x3 convolution (docs/checkerboard.png)."""
    x = np.ones((1, 8, 8, 1), "float32")

    def transposed(kernel_size):
        layer = layers.Conv2DTranspose(1, kernel_size, strides=2, padding="same", use_bias=False,
                                       kernel_initializer="ones")
        return keras.ops.convert_to_numpy(layer(x))[0, 2:-2, 2:-2, 0]

    assert set(np.unique(transposed(3))) == {1.0, 2.0, 4.0}
    assert set(np.unique(transposed(4))) == {4.0}
    resized = layers.Conv2D(1, 3, padding="same", use_bias=False, kernel_initializer="ones")(
        layers.UpSampling2D(2)(x))
    assert set(np.unique(keras.ops.convert_to_numpy(resized)[0, 2:-2, 2:-2, 0])) == {9.0}


def calibrate_batchnorm(model, x):
    """Sets every BatchNormalization's moving statistics to those of one training-mode pass over
    `x`, so activations have a trained net's scale (a freshly initialised ResNet-50's logits reach
    the hundreds, where the softmax saturates)."""
    bns = [l for l in model.layers if isinstance(l, layers.BatchNormalization)]
    momenta = [l.momentum for l in bns]
    for layer in bns:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(bns, momenta):
        layer.momentum = momentum


def keras_rounding_noise(model, x):
    """How far Keras's own output moves when the input moves by 4 float32 ulps (relative 2**-21):
    the float32 rounding noise that any reordering of the computation (TFLite folds batch norm
    into the convolutions) is amplified by."""
    a = model.predict(x, verbose=0)
    b = model.predict(x * np.float32(1 + 2.0 ** -21), verbose=0)
    return float(np.abs(a - b).max())


def _tflite_params():
    # The VGG16 FCNs give 540 MB files, take ~3 min each to convert, and the converter's peak
    # memory (about 12 GB, measured: an xdist worker was OOM-killed on the 24 GB CI machine while
    # the other worker ran) is too much next to a second worker: slow, not in the default run.
    slow = {"fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16"}
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in SEGMENTATION]


@pytest.mark.parametrize("name", _tflite_params())
def test_float32_tflite_matches_keras(name):
    """Every model converts to builtin TFLite ops (resizes become RESIZE_NEAREST_NEIGHBOR, no
    Flex or custom ops, no shape arithmetic) and its softmax agrees with Keras within 1e-4, or,
    for a deep randomly initialised net whose float32 rounding noise is larger than that, within
    4 times that noise. (The three ResNet-50 models need it: moving their input by 4 ulps moves
    Keras's own softmax by 2-4e-4, and TFLite differs from Keras by 1-3e-4.)"""
    model = kerascnn.build(name, input_shape=(64, 64, 3), classes=5, **small(name))
    x = images(2, 64)
    calibrate_batchnorm(model, images(4, 64, seed=1))
    content = to_tflite(model, "float32")
    ops = tflite_ops(content)
    assert ops and not any(op == "CUSTOM" or op.startswith("Flex") for op in ops), ops
    assert "RESIZE_NEAREST_NEIGHBOR" in ops and not {"SHAPE", "TILE", "PACK"} & set(ops), ops
    expected = model.predict(x, verbose=0)
    got = TFLiteModel(content)(x)
    assert got.shape == expected.shape == (2, 64, 64, 5)
    tolerance = max(1e-4, 4 * keras_rounding_noise(model, x))
    np.testing.assert_allclose(got, expected, atol=tolerance)


@pytest.mark.parametrize("upsampling, op", [("bilinear", "RESIZE_BILINEAR"),
                                            ("transpose", "TRANSPOSE_CONV")])
def test_upsampling_modes_convert_to_builtin_ops(upsampling, op):
    model = kerascnn.build("deeplabv3_plus_mobilenet_v2", input_shape=(64, 64, 3), classes=5,
                           alpha=0.35, separable=True, upsampling=upsampling)
    content = to_tflite(model, "float32")
    assert op in tflite_ops(content)
    x = images(2, 64)
    np.testing.assert_allclose(TFLiteModel(content)(x), model.predict(x, verbose=0), atol=1e-4)


def test_unet_has_the_papers_parameters_without_batch_norm():
    """With batch_norm=False and 2x2 transposed up-convolutions, `unet` is the paper's network
    (Figure 1: 1 input channel, 2 classes); "same" padding changes no weight shapes. The count
    below is derived from the figure's layer list, not from the code."""
    def conv(k, c_in, c_out):
        return k * k * c_in * c_out + c_out

    widths = (64, 128, 256, 512, 1024)
    expected = conv(3, 1, 64) + conv(3, 64, 64)
    for c_in, c_out in zip(widths, widths[1:]):  # contracting path below the first level
        expected += conv(3, c_in, c_out) + conv(3, c_out, c_out)
    for c_in, c_out in zip(widths[::-1], widths[-2::-1]):  # expanding path
        expected += conv(2, c_in, c_out) + conv(3, 2 * c_out, c_out) + conv(3, c_out, c_out)
    expected += conv(1, 64, 2)
    model = kerascnn.build("unet", input_shape=(64, 64, 1), classes=2, batch_norm=False,
                           upsampling="transpose")
    assert model.count_params() == expected == 31_030_658


@pytest.mark.parametrize("upsampling", ["bilinear", "transpose"])
def test_non_default_upsampling_saves_and_loads_in_safe_mode(upsampling, tmp_path):
    """The generic checks save the default ("nearest") models; the transposed convolutions'
    bilinear initialiser and the bilinear resizes must round-trip through a .keras file too."""
    model = kerascnn.build("lraspp_mobilenet_v3_large", input_shape=(64, 64, 3), classes=3,
                           alpha=0.35, upsampling=upsampling)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = images(2, 64)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


JAX_SCRIPT = """
import sys
import numpy as np
import keras
import kerascnn

assert keras.backend.backend() == "jax"
x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
# ASPP, the v3+ decoder and bilinear-initialised transposed convolutions; the LR-ASPP gate and
# bilinear resizes. (Each jax.jit compilation takes tens of seconds here: two models suffice.)
cases = [("deeplabv3_plus_mobilenet_v2", dict(alpha=0.35, separable=True, upsampling="transpose")),
         ("lraspp_mobilenet_v3_large", dict(alpha=0.35, upsampling="bilinear"))]
for name, kwargs in cases:
    y = kerascnn.build(name, input_shape=(64, 64, 3), classes=4, **kwargs).predict(x, verbose=0)
    assert y.shape == (2, 64, 64, 4), (name, y.shape)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5, err_msg=name)
loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
assert not loaded, loaded[:5]
print("OK")
"""


def test_segmentation_models_run_on_jax_without_tensorflow():
    """Like the classifiers (test_backends.py), the segmentation models and their blocks are
    backend-agnostic: they build and run on JAX without importing TensorFlow."""
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]


def test_input_tensor_and_mixed_precision():
    """A model built on a given tensor uses it as its input, and under mixed precision the
    output is still float32 (the logits layers compute in float32)."""
    image = keras.Input((64, 64, 3), name="input")
    model = kerascnn.build("deeplabv3_plus_mobilenet_v2", input_tensor=image, alpha=0.35)
    assert model.inputs[0] is image
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        for name in ("deeplabv3_plus_mobilenet_v2", "lraspp_mobilenet_v3_large", "unet"):
            model = kerascnn.build(name, input_shape=(64, 64, 3), classes=3, **small(name))
            if name.startswith("deeplab"):
                assert model.get_layer("aspp_b0_conv").compute_dtype == "float16"
            assert model.output.dtype == "float32", name
            assert keras.ops.convert_to_numpy(model(images(1, 64))).dtype == np.float32
    finally:
        keras.config.set_dtype_policy(policy)


def _randomize_batch_norm(model, seed=0):
    """Non-trivial BN statistics, so that a transfer that skipped them would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32")
                               for w in layer.get_weights()])


def test_transfer_backbone_makes_the_encoder_compute_the_classifiers_features():
    """After the transfer the U-Net's encoder computes what the classifier computes (batch-norm
    statistics included), the decoder and the classifier's head are left alone, and a classifier
    trained at another input size transfers the same way."""
    classifier = kerascnn.build("mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35, classes=10)
    _randomize_batch_norm(classifier)
    model = kerascnn.build("unet_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35, classes=11)
    decoder_before = model.get_layer("logits_conv").get_weights()
    copied = transfer_backbone(classifier, model)
    assert {"stem_conv", "stage7_block1_project_bn"} <= set(copied)
    assert "predictions" not in copied
    assert not any(name.startswith(("decoder", "logits")) for name in copied)
    for before, after in zip(decoder_before, model.get_layer("logits_conv").get_weights()):
        np.testing.assert_array_equal(before, after)
    x = images(2, 64)
    tap = "stage6_block1_expand_relu6"  # the stride-16 expansion
    want = keras.Model(classifier.input, classifier.get_layer(tap).output)(x)
    got = keras.Model(model.input, model.get_layer(tap).output)(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want),
                               atol=1e-5)

    small_classifier = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35,
                                      classes=10)
    assert transfer_backbone(small_classifier, model) == copied
    for a, b in zip(model.get_layer("stage3_block2_project_conv").get_weights(),
                    small_classifier.get_layer("stage3_block2_project_conv").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_transfer_backbone_rejects_what_does_not_fit():
    model = kerascnn.build("unet_mobilenet_v2", input_shape=(64, 64, 3), alpha=0.35, classes=3)
    wider = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.5, classes=10)
    with pytest.raises(ValueError, match=r"other shapes.*skip_mismatch"):
        transfer_backbone(wider, model)
    full = transfer_backbone(
        kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35, classes=10), model)
    partial = transfer_backbone(wider, model, skip_mismatch=True)
    assert 0 < len(partial) < len(full)  # e.g. the first block's 16 channels at both widths
    with pytest.raises(ValueError, match="No layer of 'lenet5'"):
        transfer_backbone(kerascnn.build("lenet5"), model)
    with pytest.raises(TypeError, match="`classifier` must be a keras.Model. Received: classifier "
                                        "of type str"):
        transfer_backbone("mobilenet_v2", model)
