"""The registry and the builders' argument handling: what a user sees when they get it wrong."""

import numpy as np
import pytest

import keras
import kerascnn
from kerascnn.registry import register_model

NORMATIVE_KEYS = [
    "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnet50_v2", "resnet101_v2", "resnet152_v2",
    *[f"resnet{d}_cifar" for d in (20, 32, 44, 56, 110)],
    *[f"plain{d}_cifar" for d in (20, 32, 44, 56, 110)],
    "densenet121", "densenet169", "densenet201", "densenet_bc100_cifar",
    *[f"se_resnet{d}" for d in (18, 34, 50, 101, 152)],
    *[f"efficientnet_b{i}" for i in range(8)],
    "lenet5", "alexnet", "googlenet",
    *[f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")],
]


def test_normative_registry_keys_exist():
    assert set(NORMATIVE_KEYS) <= set(kerascnn.list_models())


def test_list_models_wildcards_and_task():
    assert kerascnn.list_models("mobilenet*") == [
        "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]
    assert kerascnn.list_models("plain*") == sorted(f"plain{d}_cifar" for d in (20, 32, 44, 56, 110))
    assert kerascnn.list_models("*_v2", task="classification") == [
        "mobilenet_v2", "resnet101_v2", "resnet152_v2", "resnet50_v2"]
    segmentation = kerascnn.list_models(task="segmentation")
    assert {"fcn8s_vgg16", "unet", "deeplabv3_plus_mobilenet_v2", "lraspp_mobilenet_v3_large"} \
        <= set(segmentation)
    assert all(kerascnn.model_info(n).task == "segmentation" for n in segmentation)
    assert sorted(kerascnn.list_models(task="classification") + segmentation) == \
        kerascnn.list_models()
    with pytest.raises(ValueError, match="Received: task='detection'"):
        kerascnn.list_models(task="detection")


def test_model_info_fields():
    info = kerascnn.model_info("mobilenet_v2")
    assert info.family == "mobilenet" and info.task == "classification"
    assert "arxiv.org/abs/1801.04381" in info.paper
    assert info.default_input_shape == (224, 224, 3) and info.min_input_size == 32
    assert info.preprocessing.scale == pytest.approx((1 / 127.5,) * 3)
    assert info.preprocessing.offset == (-1.0, -1.0, -1.0)
    assert info.published_accuracy["imagenet_top1"] == 72.0 and info.published_accuracy["source"]
    assert info.keras_applications == "MobileNetV2"
    data = info.as_dict()
    assert "builder" not in data and data["preprocessing"]["channels"] == 3
    cifar = kerascnn.model_info("resnet20_cifar")
    assert cifar.default_input_shape == (32, 32, 3) and cifar.min_input_size == 8
    assert kerascnn.model_info("resnet50").preprocessing.channel_order == "BGR"


def test_every_model_has_complete_info():
    for name in kerascnn.list_models():
        info = kerascnn.model_info(name)
        assert info.name == name and "http" in info.paper, name
        assert info.preprocessing.channels == info.default_input_shape[-1], name
        assert info.min_input_size <= min(info.default_input_shape[:2]), name
        if info.published_accuracy:
            assert info.published_accuracy.get("source"), name


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="mobilenet_v2") as err:
        kerascnn.build("mobilenetv2")
    assert "Did you mean" in str(err.value)
    with pytest.raises(ValueError, match="resnet50"):
        kerascnn.model_info("resnet05")
    with pytest.raises(TypeError, match="string"):
        kerascnn.build(None)


def test_unknown_keyword_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="'colour'") as err:
        kerascnn.build("mobilenet_v2", colour="red")
    assert "alpha" in str(err.value)  # lists what is allowed
    # depth_multiplier belongs to MobileNet V1 only
    with pytest.raises(TypeError, match="depth_multiplier"):
        kerascnn.build("mobilenet_v2", depth_multiplier=2)
    with pytest.raises(TypeError, match="minimalistic"):
        kerascnn.build("resnet50", minimalistic=True)


@pytest.mark.parametrize("kwargs,message", [
    ({"pooling": "sum", "include_top": False}, "Received: pooling='sum'"),
    ({"classes": 0}, "Received: classes=0"),
    ({"alpha": -1.0}, "Received: alpha=-1.0"),
    ({"alpha": "wide"}, "Received: alpha='wide'"),
    ({"output_stride": 4}, "Received: output_stride=4"),
    ({"dropout_rate": 1.5}, "Received: dropout_rate=1.5"),
    ({"classifier_activation": "no_such_fn"}, "classifier_activation='no_such_fn'"),
    ({"weights": "/nonexistent/w.weights.h5"}, "not found"),
    ({"weights": 3}, "Received: weights=3"),
    ({"input_shape": (224, 224)}, "Received: input_shape=(224, 224)"),
    ({"input_shape": (16, 16, 3)}, "at least 32x32"),
    ({"include_top": "yes"}, "Received: include_top='yes'"),
])
def test_bad_values_raise_value_errors_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kerascnn.build("mobilenet_v2", **kwargs)


def test_minimum_input_size_is_named_per_family():
    with pytest.raises(ValueError, match="at least 8x8"):
        kerascnn.build("resnet20_cifar", input_shape=(4, 4, 3))
    with pytest.raises(ValueError, match="at least 32x32"):
        kerascnn.build("resnet50", input_shape=(31, 64, 3))
    kerascnn.build("resnet20_cifar", input_shape=(8, 8, 3))  # the minimum itself works


def test_v3_and_v1_only_options():
    with pytest.raises(ValueError, match="minimalistic"):
        kerascnn.models.mobilenet.mobilenet_v2(minimalistic=True)
    with pytest.raises(ValueError, match="depth_multiplier"):
        kerascnn.models.mobilenet.mobilenet_v3_small(depth_multiplier=2)
    with pytest.raises(ValueError, match="Received: output_stride=16"):
        kerascnn.build("resnet20_cifar", output_stride=16)


def test_input_tensor_and_dynamic_spatial_dims():
    tensor = keras.Input((48, 48, 3))
    model = kerascnn.build("mobilenet_v2", alpha=0.35, input_tensor=tensor, classes=3)
    assert model.input_shape == (None, 48, 48, 3)
    with pytest.raises(ValueError, match="does not match"):
        kerascnn.build("mobilenet_v2", input_tensor=tensor, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="Keras tensor"):
        kerascnn.build("mobilenet_v2", input_tensor=np.zeros((1, 32, 32, 3)))
    headless = kerascnn.build("resnet18", include_top=False, pooling="avg")
    assert headless.input_shape == (None, None, None, 3)
    for size in (40, 72):
        out = headless.predict(np.zeros((1, size, size, 3), "float32"), verbose=0)
        assert out.shape == (1, 512)


def test_grayscale_input():
    model = kerascnn.build("resnet20_cifar", input_shape=(28, 28, 1))
    assert model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0).shape == (2, 10)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        @register_model(family="mobilenet", paper="x")
        def mobilenet_v2(**kwargs):  # noqa: F811
            return None


def test_classifier_computes_in_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        for name in ("mobilenet_v2", "mobilenet_v3_small", "resnet20_cifar"):
            model = kerascnn.build(name, input_shape=(32, 32, 3), classes=4)
            assert model.get_layer("stem_conv").compute_dtype == "float16", name
            assert model.get_layer("predictions").compute_dtype == "float32", name
            out = model(np.zeros((1, 32, 32, 3), "float32"))
            assert keras.backend.standardize_dtype(out.dtype) == "float32", name
    finally:
        keras.config.set_dtype_policy(previous)
