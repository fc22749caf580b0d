"""TFLite export and the bundle: builtin ops only, float parity with Keras, int8 accuracy on real
data, metadata the app can rely on, and atomic writes."""

import json
import os

import numpy as np
import pytest

import keras
import kerascnn
from keras import layers
from kerascnn.data import FASHION_MNIST_CLASSES, load_fashion_mnist
from kerascnn.export import FlexOpsError, export, load_tflite, tensor_details, tflite_ops, to_tflite
from kerascnn.export import bundle as bundle_module
from kerascnn.export.runtime import quantize


# The cheapest member of each family (any other family: its first model), plus MobileNetV3 for
# hard-swish and SE.
_PREFERRED = {"mobilenet": "mobilenet_v2", "resnet": "resnet20_cifar", "senet": "se_resnet18",
              "densenet": "densenet_bc100_cifar", "efficientnet": "efficientnet_b0", "vgg": "vgg11_bn"}


def _one_per_family():
    names = kerascnn.list_models(task="classification")
    chosen = {family: name for family, name in _PREFERRED.items() if name in names}
    for name in names:
        chosen.setdefault(kerascnn.model_info(name).family, name)
    return sorted(set(chosen.values()) | {"mobilenet_v3_small"})


def _assert_builtin(ops):
    assert ops and not any(op == "CUSTOM" or op.startswith("Flex") or op == "DELEGATE" for op in ops), ops


@pytest.mark.parametrize("name", _one_per_family())
def test_float32_tflite_matches_keras(name):
    info = kerascnn.model_info(name)
    size = max(info.min_input_size, 32)
    kwargs = {"alpha": 0.35} if name == "mobilenet_v2" else {}
    model = kerascnn.build(name, input_shape=(size, size, info.default_input_shape[-1]), classes=10,
                           **kwargs)
    content = to_tflite(model, "float32")
    _assert_builtin(tflite_ops(content))
    details = tensor_details(content)
    assert details["input"]["shape"][0] == 1  # fixed batch: no shape ops for delegates to trip on
    x = np.random.default_rng(0).uniform(-1, 1, (3, *model.input_shape[1:])).astype("float32")
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(load_tflite_bytes(content)(x), expected, atol=1e-4)


def load_tflite_bytes(content):
    from kerascnn.export import TFLiteModel

    return TFLiteModel(content)


def test_frozen_once_freezes_each_model_once_with_the_same_files(monkeypatch):
    """Inside `frozen_once` (which `export` uses) a model is traced and frozen once per batch
    size for all its formats, and the files are byte for byte those of separate conversions."""
    from kerascnn.export import convert as convert_module

    model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), classes=4, alpha=0.35)
    kinds = ("float32", "float16", "dynamic_int8")
    separate = {kind: to_tflite(model, kind) for kind in kinds}
    frozen = []
    real_freeze = convert_module._freeze
    monkeypatch.setattr(convert_module, "_freeze",
                        lambda m, batch: frozen.append(batch) or real_freeze(m, batch))
    with convert_module.frozen_once():
        assert {kind: to_tflite(model, kind) for kind in kinds} == separate
        assert tensor_details(to_tflite(model, "float32", batch_size=2))["input"]["shape"][0] == 2
    assert frozen == [1, 2]
    to_tflite(model, "float32")  # outside the block every conversion freezes again
    assert frozen == [1, 2, 1]


def test_squeeze_excitation_exports_without_shape_ops():
    """A dynamic batch adds SHAPE/PACK/STRIDED_SLICE around SE blocks (Keras's own export does);
    a fixed batch-1 trace must not."""
    model = kerascnn.build("mobilenet_v3_small", input_shape=(64, 64, 3), classes=5)
    ops = tflite_ops(to_tflite(model, "float32"))
    assert not {"SHAPE", "PACK", "STRIDED_SLICE"} & set(ops), ops


class _Sinh(layers.Layer):
    """sinh has no TFLite builtin; the Flex delegate runs it."""

    def call(self, x):
        return keras.ops.sinh(x)


def test_flex_op_is_a_clear_error_naming_the_layer():
    inputs = keras.Input((8, 8, 3))
    x = _Sinh(name="odd_activation")(layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, layers.Dense(2)(layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(FlexOpsError, match=r"Sinh in layer\(s\) \['odd_activation'\]"):
        to_tflite(model, "float32")
    assert "FlexSinh" in tflite_ops(to_tflite(model, "float32", allow_flex=True))  # opt-in


def test_bad_arguments():
    model = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ValueError, match="Received: kind='int4'"):
        to_tflite(model, "int4")
    with pytest.raises(ValueError, match="representative_data"):
        to_tflite(model, "int8")
    with pytest.raises(ValueError, match="Received: io_dtype='int16'"):
        to_tflite(model, "int8", io_dtype="int16")
    with pytest.raises(ValueError, match="model takes"):
        to_tflite(model, "int8", representative_data=np.zeros((4, 28, 28, 3), "float32"))
    with pytest.raises(ValueError, match="known height"):
        to_tflite(kerascnn.build("resnet18", include_top=False, pooling="avg"))
    with pytest.raises(ValueError, match="formats"):
        export(model, "/tmp/never", formats=["onnx"])
    with pytest.raises(ValueError, match="3 classes"):
        export(model, "/tmp/never", formats=["tflite_float32"], labels=["a", "b"])
    assert not os.path.exists("/tmp/never")


# --- A small CNN trained on Fashion-MNIST: int8 must keep its accuracy -------------------------

def _small_cnn():
    """A user's own model (not from the zoo) with the ops that matter for int8: strided and
    depthwise convolutions, ReLU6, a residual Add, pooling and a softmax classifier."""
    inputs = keras.Input((28, 28, 1), name="input")
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu6", name="stem_conv")(inputs)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="stage1_block1_dw")(x)
    y = layers.Conv2D(32, 1, name="stage1_block1_pw")(y)
    x = layers.Add(name="stage1_block1_add")([x, y])
    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="stage2_conv")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="stage2_conv2")(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def _normalize(images):
    return images[..., None].astype("float32") / 127.5 - 1.0


@pytest.fixture(scope="module")
def trained():
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    keras.utils.set_random_seed(0)
    model = _small_cnn()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(_normalize(x[:50000]), y[:50000], batch_size=128, epochs=3, verbose=0)
    return model, _normalize(x[50000:50500]), (_normalize(xt[:2000]), yt[:2000]), xt[:2000]


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):
    model, calibration, validation, _ = trained
    out = tmp_path_factory.mktemp("bundles") / "small_cnn"
    report = export(model, out, formats=["keras", "tflite_float32", "tflite_dynamic_int8",
                                         "tflite_int8"],
                    representative_data=calibration, validation_data=validation,
                    labels=FASHION_MNIST_CLASSES,
                    preprocessing={"scale": [1 / 127.5], "offset": [-1.0], "channel_order": "L",
                                   "mode": "tf"}, latency_runs=10)
    return out, report


def test_int8_keeps_accuracy_and_agrees_with_keras(bundle):
    _, report = bundle
    float_acc = report["keras_accuracy"]
    int8 = report["tflite"]["tflite_int8"]["agreement"]
    assert float_acc >= 0.85, f"the float model should reach 85% first, got {float_acc:.3f}"
    assert int8["tflite_accuracy"] >= float_acc - 0.02
    assert int8["top1_agreement"] >= 0.95
    assert report["tflite"]["tflite_float32"]["agreement"]["max_abs_diff"] < 1e-4


def test_int8_file_is_fully_integer_with_builtin_ops(bundle):
    out, report = bundle
    content = (out / "model_int8.tflite").read_bytes()
    details = tensor_details(content)
    assert details["input"]["dtype"] == details["output"]["dtype"] == "int8"
    assert details["input"]["scale"] > 0
    ops = tflite_ops(content)
    _assert_builtin(ops)
    assert "DEQUANTIZE" not in ops and "QUANTIZE" not in ops, ops
    assert report["tflite"]["tflite_int8"]["size_bytes"] < report["tflite"]["tflite_float32"]["size_bytes"] / 3
    for info in report["tflite"].values():
        assert set(info["latency_ms"]) == {"1", "2"} and all(v > 0 for v in info["latency_ms"].values())


def test_metadata_and_labels_round_trip(bundle, trained):
    out, _ = bundle
    metadata = json.loads((out / "metadata.json").read_text())
    assert (out / "labels.txt").read_text().splitlines() == list(FASHION_MNIST_CLASSES)
    assert metadata["class_names"] == list(FASHION_MNIST_CLASSES)
    assert metadata["input"]["shape"] == [1, 28, 28, 1]
    assert metadata["input"]["normalization"]["scale"] == [1 / 127.5]
    assert metadata["default_model"] == "tflite_int8"
    entry = metadata["models"]["tflite_int8"]
    assert entry["file"] == "model_int8.tflite" and entry["input"]["dtype"] == "int8"
    assert sorted(os.listdir(out)) == sorted([
        "labels.txt", "metadata.json", "report.json", "report.md", "model.keras",
        "model_float32.tflite", "model_dynamic_int8.tflite", "model_int8.tflite"])
    assert "| model_int8.tflite |" in (out / "report.md").read_text()
    # the .keras file reloads to the same model
    model, _, (x, _), _ = trained
    reloaded = keras.saving.load_model(out / "model.keras")
    np.testing.assert_allclose(reloaded.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0),
                               atol=1e-6)


def test_load_tflite_takes_raw_pixels_like_the_app(bundle, trained):
    out, _ = bundle
    _, _, (x, _), raw = trained
    runner = load_tflite(out)  # the bundle's default: the int8 file
    pixels = raw[:16, :, :, None]
    from_pixels = runner(pixels)
    assert from_pixels.shape == (16, 10)
    np.testing.assert_allclose(from_pixels.sum(-1), 1.0, atol=0.05)
    # The int8 input tensor built from raw pixels equals the one built from the test's own
    # normalisation within one quantization step (float rounding may cross a boundary).
    scale, zero_point = runner.input["quantization"]
    q_pixels = quantize(runner.normalize(pixels), scale, zero_point, np.int8).astype(int)
    q_direct = quantize(x[:16], scale, zero_point, np.int8).astype(int)
    assert np.abs(q_pixels - q_direct).max() <= 1
    direct = load_tflite(out / "model_int8.tflite")
    direct.preprocessing = None
    np.testing.assert_allclose(from_pixels, direct(x[:16]), atol=0.06)


def test_quantize_rounds_half_away_from_zero():
    values = np.array([0.5, 1.5, -0.5, -1.5, 2.49, 300.0, -300.0])
    np.testing.assert_array_equal(quantize(values, 1.0, 0, np.int8), [1, 2, -1, -2, 2, 127, -128])
    np.testing.assert_array_equal(quantize(np.array([0.0]), 0.5, -128, np.int8), [-128])


def test_failed_export_keeps_the_previous_bundle(bundle, trained, tmp_path, monkeypatch):
    model, calibration, _, _ = trained
    target = tmp_path / "b"
    export(model, target, formats=["tflite_float32"], latency_runs=0)
    before = {p: (target / p).read_bytes() for p in os.listdir(target)}

    calls = []
    real = bundle_module.to_tflite

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(bundle_module, "to_tflite", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        export(model, target, formats=["tflite_float32", "tflite_int8"],
               representative_data=calibration, latency_runs=0)
    assert {p: (target / p).read_bytes() for p in os.listdir(target)} == before
    assert os.listdir(tmp_path) == ["b"], "no partial or backup directories are left behind"


def test_export_replaces_an_existing_bundle(trained, tmp_path):
    model, _, _, _ = trained
    target = tmp_path / "b"
    export(model, target, formats=["tflite_float32", "tflite_float16"], latency_runs=0)
    export(model, target, formats=["tflite_float32"], latency_runs=0)
    assert "model_float16.tflite" not in os.listdir(target)
    assert os.listdir(tmp_path) == ["b"]


def test_googlenet_exports_without_auxiliary_heads():
    model = kerascnn.build("googlenet", input_shape=(96, 96, 3), classes=4, aux_logits=True)
    assert len(model.outputs) == 3
    content = to_tflite(bundle_module.classifier_only(model), "float32")
    details = tensor_details(content)
    assert details["output"]["shape"] == [1, 4]
    from kerascnn.models.googlenet import strip_auxiliary_heads

    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    expected = strip_auxiliary_heads(model).predict(x, verbose=0)
    np.testing.assert_allclose(load_tflite_bytes(content)(x), expected, atol=1e-4)


def test_cli_export_writes_a_bundle(tmp_path, capsys):
    from kerascnn.cli import main

    images = np.random.default_rng(0).integers(0, 256, (40, 20, 20, 3), dtype=np.uint8)
    np.savez(tmp_path / "val.npz", x=images, y=np.arange(40) % 3)
    out = tmp_path / "bundle"
    status = main(["export", "mobilenet_v2", "--alpha", "0.35", "--input-size", "32",
                   "--classes", "3", "--quantize", "int8", "dynamic",
                   "--calibration", str(tmp_path / "val.npz"), "--validation",
                   str(tmp_path / "val.npz"), "--out", str(out), "--latency-runs", "2"])
    assert status == 0
    assert "Bundle written to" in capsys.readouterr().out
    metadata = json.loads((out / "metadata.json").read_text())
    assert set(metadata["models"]) == {"keras", "tflite_float32", "tflite_int8", "tflite_dynamic_int8"}
    assert metadata["source_model"] == "mobilenet_v2"
    assert metadata["input"]["normalization"]["mode"] == "tf"
    report = json.loads((out / "report.json").read_text())
    assert report["tflite"]["tflite_int8"]["agreement"]["samples"] == 40
    assert main(["export", "mobilenet_v2", "--quantize", "int8"]) == 2  # no calibration data
    assert "needs --calibration" in capsys.readouterr().err


def test_calibration_from_tf_data_and_uint8_io(trained):
    """Calibration data may be a tf.data pipeline of (images, labels) batches; integer files may
    take uint8 instead of int8. Both give the same predictions as the int8 file from arrays."""
    import tensorflow as tf

    model, calibration, (x, _), _ = trained
    dataset = tf.data.Dataset.from_tensor_slices((calibration, np.zeros(len(calibration)))).batch(32)
    from_dataset = to_tflite(model, "int8", representative_data=dataset)
    from_arrays = to_tflite(model, "int8", representative_data=calibration)
    np.testing.assert_array_equal(load_tflite_bytes(from_dataset)(x[:64]),
                                  load_tflite_bytes(from_arrays)(x[:64]))
    as_uint8 = to_tflite(model, "int8", representative_data=calibration, io_dtype="uint8")
    details = tensor_details(as_uint8)
    assert details["input"]["dtype"] == details["output"]["dtype"] == "uint8"
    agree = np.mean(load_tflite_bytes(as_uint8)(x[:200]).argmax(-1)
                    == load_tflite_bytes(from_arrays)(x[:200]).argmax(-1))
    assert agree >= 0.97
