"""The tfmot QAT engine: Keras 3 -> tf_keras translation, tfmot quantization, training on kerascnn
pipelines, full-integer TFLite, clear errors for what tfmot cannot quantize, and no lasting effect
of tfmot's TF_USE_LEGACY_KERAS on Keras 3 code in the same process."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras
import kerascnn
from keras import layers

tfmot_engine = pytest.importorskip("kerascnn.quantization.tfmot_engine")
if not tfmot_engine.available():
    pytest.skip("tf-keras / tensorflow-model-optimization not installed", allow_module_level=True)

from kerascnn.data import from_arrays, make_pipeline  # noqa: E402
from kerascnn.export import TFLiteModel, tensor_details, tflite_ops  # noqa: E402
from kerascnn.quantization.tfmot_engine import (TranslationMismatchError,  # noqa: E402
                                                UnsupportedLayerError, check_translation,
                                                float_ops, quantize, to_tflite,
                                                translate_to_tf_keras, train)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _small_cnn(classes=10):
    """A user's own Keras 3 CNN with what the zoo's builders do not use: activations inside
    Conv2D/Dense (relu6 and hard_swish, which tf_keras lacks), a non-default initializer and an
    L2 regularizer, a residual Add and a logits head."""
    inputs = keras.Input((32, 32, 3), name="input")
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6",
                      kernel_initializer=keras.initializers.HeUniform(seed=1),
                      kernel_regularizer=keras.regularizers.L2(1e-4), name="stem_conv")(inputs)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="stage1_dw")(x)
    y = layers.BatchNormalization(name="stage1_dw_bn")(y)
    y = layers.ReLU(6.0, name="stage1_dw_relu6")(y)
    y = layers.Conv2D(16, 1, name="stage1_pw")(y)
    x = layers.Add(name="stage1_add")([x, y])
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="stage2_conv")(x)
    x = layers.MaxPooling2D(2, name="stage2_pool")(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dropout(0.1, name="head_dropout")(x)
    outputs = layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def _random_weights(model, seed=0):
    """Random weights and BN statistics (variance positive), so a weight copied into the wrong
    slot changes the outputs."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(0.0, 0.1, w.shape)
        if "variance" in w.path or "gamma" in w.path:
            value = 1.0 + np.abs(value)
        w.assign(value.astype("float32"))


def _build(name, **kwargs):
    if name == "small_cnn":
        return _small_cnn()
    return kerascnn.build(name, input_shape=(32, 32, 3), classes=10, **kwargs)


@pytest.mark.parametrize("name,kwargs", [("mobilenet_v2", {"alpha": 0.35}), ("resnet20_cifar", {}),
                                         ("resnet18", {}), ("small_cnn", {})])
def test_translation_reproduces_keras3_outputs(name, kwargs):
    model = _build(name, **kwargs)
    _random_weights(model)
    twin = translate_to_tf_keras(model)
    assert type(twin).__module__.startswith("tf_keras")
    assert check_translation(model, twin) <= 1e-5
    # Every Keras 3 layer keeps its name; only split-off activations are new.
    assert {layer.name for layer in model.layers} <= {layer.name for layer in twin.layers}
    assert twin.count_params() == model.count_params()


def test_check_translation_names_the_layer_that_differs():
    model = _small_cnn()
    _random_weights(model)
    twin = translate_to_tf_keras(model)
    kernel, bias = twin.get_layer("stage1_pw").get_weights()
    twin.get_layer("stage1_pw").set_weights([kernel * 1.01, bias])  # a 1% translation error
    with pytest.raises(TranslationMismatchError, match=r"'stage1_pw' \(Conv2D\)") as info:
        check_translation(model, twin)
    assert not info.value.rounding_only and info.value.max_abs_diff > 1e-5


def test_in_layer_activations_tf_keras_lacks_are_split_off():
    """relu6 inside a Conv2D becomes a ReLU(max_value=6) layer (tfmot quantizes that one);
    hard_swish (serialized by Keras 3 as hard_silu), which tf_keras lacks, becomes an exact function."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, activation="relu6", name="conv_a")(inputs)
    x = layers.Conv2D(8, 3, activation="hard_swish", name="conv_b")(x)
    x = layers.Activation("hard_sigmoid", name="gate")(x)
    model = keras.Model(inputs, layers.Dense(3, activation="silu", name="dense")(x))
    twin = translate_to_tf_keras(model)
    check_translation(model, twin, atol=1e-6)
    relu6 = twin.get_layer("conv_a_relu6")
    assert type(relu6).__name__ == "ReLU" and relu6.max_value == 6.0
    assert twin.get_layer("conv_a").activation.__name__ == "linear"
    assert twin.get_layer("conv_b_hard_silu").activation.__name__ == "hard_swish"  # Keras 3 calls it hard_silu
    assert twin.get_layer("dense").activation.__name__ == "swish"
    # Keras 3's hard_sigmoid is relu6(x + 3) / 6, not tf_keras's clip(0.2 x + 0.5): 0.5 at x=1.5
    # would be 0.8 with tf_keras's own function.
    gate = twin.get_layer("gate").activation
    np.testing.assert_allclose(np.asarray(gate(np.array([1.5, -4.0, 4.0], "float32"))),
                               [0.75, 0.0, 1.0], atol=1e-7)


def test_nested_models_are_flattened_and_shared_layers_stay_shared():
    backbone_in = keras.Input((16, 16, 3), name="backbone_input")
    f = layers.Conv2D(8, 3, padding="same", name="backbone_conv")(backbone_in)
    f = layers.BatchNormalization(name="backbone_bn")(f)
    backbone = keras.Model(backbone_in, layers.ReLU(name="backbone_relu")(f), name="backbone")
    head = keras.Sequential([keras.Input((16, 16, 8)), layers.GlobalAveragePooling2D(name="gap"),
                             layers.Dense(4, name="fc")], name="head")
    a, b = keras.Input((16, 16, 3), name="left"), keras.Input((16, 16, 3), name="right")
    shared = layers.Conv2D(3, 1, name="shared_proj")
    features = [backbone(shared(a)), backbone(shared(b))]
    merged = layers.Concatenate(name="merge")(features)
    outputs = {"left": head(features[0]), "both": layers.Conv2D(2, 1, name="both_conv")(merged)}
    model = keras.Model([a, b], outputs, name="two_towers")
    _random_weights(model)
    twin = translate_to_tf_keras(model)
    check_translation(model, twin, input_size=16)
    names = [layer.name for layer in twin.layers]
    assert "backbone" not in names and "head" not in names
    assert names.count("backbone_conv") == 1 and names.count("shared_proj") == 1
    assert len(twin.get_layer("backbone_conv")._inbound_nodes) == 2
    assert set(twin.output) == {"left", "both"}


class _Custom(layers.Layer):
    def call(self, x):
        return x * 2.0


def test_custom_layer_and_raw_ops_are_rejected_by_name():
    inputs = keras.Input((8, 8, 3))
    x = _Custom(name="my_custom")(layers.Conv2D(4, 3, name="conv")(inputs))
    model = keras.Model(inputs, layers.Dense(2)(layers.Flatten()(x)))
    with pytest.raises(UnsupportedLayerError, match=r"'my_custom' \(_Custom\).*engine=\"native\""):
        translate_to_tf_keras(model)
    lrn = kerascnn.build("alexnet", input_shape=(63, 63, 3), classes=10, local_response_norm=True)
    with pytest.raises(UnsupportedLayerError, match="LocalResponseNormalization"):
        translate_to_tf_keras(lrn)
    inputs = keras.Input((8, 8, 3))
    raw = keras.Model(inputs, keras.ops.sin(layers.Conv2D(4, 3, name="conv")(inputs)))
    with pytest.raises(UnsupportedLayerError, match="raw keras.ops"):
        translate_to_tf_keras(raw)


@pytest.mark.parametrize("name,layer,cls", [
    ("se_resnet18", "stage1_block1_se_scale", "Multiply"),
    ("mobilenet_v3_small", "stem_hard_swish", "Activation"),
    ("resnet50_v2", "stage1_block1_preact_bn", "BatchNormalization"),
])
def test_layers_tfmot_cannot_quantize_give_a_clear_error(name, layer, cls):
    kwargs = {"alpha": 0.35} if name.startswith("mobilenet") else {}
    model = _build(name, **kwargs)
    with pytest.raises(UnsupportedLayerError) as info:
        quantize(model)
    err = info.value
    assert (err.layer_name, err.layer_class) == (layer, cls)
    message = str(err)
    assert f"'{layer}' ({cls})" in message and 'engine="native"' in message
    assert err.others  # every rejected layer is listed, not only the first


@pytest.fixture(scope="module")
def trained_qat():
    """mobilenet_v2 (alpha 0.35, 32x32): QAT for a few steps on a kerascnn pipeline."""
    keras.utils.set_random_seed(0)
    model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35, classes=10)
    qat_model = quantize(model)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 96)
    source = from_arrays(images, labels)
    info = kerascnn.model_info("mobilenet_v2")
    train_ds = make_pipeline(source, input_shape=(32, 32, 3), batch_size=16,
                                           preprocessing=info.preprocessing, training=True, seed=0)
    val_ds = make_pipeline(source.take(32), input_shape=(32, 32, 3), batch_size=16,
                                         preprocessing=info.preprocessing, training=False)
    history = train(qat_model, train_ds, val_ds, epochs=1, steps_per_epoch=4, learning_rate=1e-3,
                    verbose=0)
    x = images[:64].astype("float32") / 127.5 - 1.0
    return qat_model, history, x


def test_qat_trains_on_a_kerascnn_pipeline(trained_qat):
    qat_model, history, _ = trained_qat
    assert np.isfinite(history.history["loss"]).all()
    assert "val_accuracy" in history.history
    # The softmax head is seen through tfmot's wrapper: the loss must not apply softmax twice.
    assert type(qat_model.loss).__name__ == "SparseCategoricalCrossentropy"
    assert qat_model.loss.get_config()["from_logits"] is False
    # tfmot wrapped the convolutions and learned activation ranges.
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in qat_model.layers)


def test_int8_tflite_is_fully_integer_with_builtin_ops(trained_qat):
    qat_model, _, x = trained_qat
    content = to_tflite(qat_model)
    ops = tflite_ops(content)
    assert not any(op == "CUSTOM" or op.startswith("Flex") for op in ops), ops
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops, ops
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "FULLY_CONNECTED"} <= set(ops), ops
    assert float_ops(content) == []
    details = tensor_details(content)
    assert details["input"]["dtype"] == details["output"]["dtype"] == "int8"
    assert details["input"]["shape"] == [1, 32, 32, 3]
    # Probabilities within a few output steps (1/256) of the QAT model's. (A freshly built
    # MobileNetV2 predicts almost uniformly, so agreement of decisions is tested below.)
    expected = np.asarray(qat_model(x, training=False))
    assert np.abs(TFLiteModel(content)(x) - expected).max() < 0.05


def _pattern_task(n, seed):
    """Ten classes of 32x32 images: a class colour and horizontal colour ramp plus noise, so a
    small CNN learns it in seconds and its decisions depend on the input."""
    prototypes = np.random.default_rng(123)
    centers = prototypes.uniform(-0.7, 0.7, (10, 1, 1, 3))
    slopes = prototypes.uniform(-0.5, 0.5, (10, 1, 1, 3))
    ramp = np.linspace(-1, 1, 32)[None, :, None, None]
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = centers[y] + slopes[y] * ramp + 0.25 * rng.normal(size=(n, 32, 32, 3))
    return np.clip(x, -1, 1).astype("float32"), y


def test_int8_predictions_agree_with_the_qat_model_after_fine_tuning():
    """The user's flow: a trained float model, one epoch of QAT, int8 TFLite. The int8 file must
    make the QAT model's decisions, which are far from trivial here (above-chance accuracy, many
    different classes predicted)."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    x, y = _pattern_task(1024, 0)
    x_test, y_test = _pattern_task(256, 1)
    model = _small_cnn()
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    qat_model = quantize(model)
    train(qat_model, tf.data.Dataset.from_tensor_slices((x, y)).batch(64), epochs=1,
          learning_rate=1e-4, verbose=0)
    expected = np.asarray(qat_model(x_test, training=False)).argmax(-1)
    got = TFLiteModel(to_tflite(qat_model))(x_test).argmax(-1)
    assert np.mean(expected == y_test) > 0.4  # chance is 0.1
    assert len(np.unique(expected)) >= 5
    assert np.mean(got == expected) >= 0.9


def test_float_io_adds_only_boundary_conversions(trained_qat):
    qat_model, _, x = trained_qat
    content = to_tflite(qat_model, io_dtype="float32")
    assert float_ops(content) == []  # the boundary QUANTIZE/DEQUANTIZE do not count
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(tflite_ops(content))
    assert tensor_details(content)["input"]["dtype"] == "float32"
    int8 = TFLiteModel(to_tflite(qat_model))(x[:8])
    np.testing.assert_allclose(TFLiteModel(content)(x[:8]), int8, atol=1e-6)


def test_one_hot_labels_and_logits_head():
    """A MixUp-style pipeline gives one-hot labels; the small CNN outputs logits."""
    model = _small_cnn()
    qat_model = quantize(model)
    rng = np.random.default_rng(1)
    source = from_arrays(rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8),
                                       rng.integers(0, 10, 32))
    ds = make_pipeline(source, input_shape=(32, 32, 3), batch_size=8,
                                     preprocessing=kerascnn.model_info("mobilenet_v2").preprocessing,
                                     training=True, seed=0, one_hot=True, num_classes=10)
    history = train(qat_model, ds, epochs=1, optimizer="sgd", learning_rate=0.01, verbose=0)
    assert type(qat_model.loss).__name__ == "CategoricalCrossentropy"
    assert qat_model.loss.get_config()["from_logits"] is True
    assert np.isfinite(history.history["loss"]).all()
    content = to_tflite(qat_model)
    assert float_ops(content) == []
    assert "FULLY_CONNECTED" in tflite_ops(content)


def test_missing_dependencies_give_an_install_hint(monkeypatch):
    import importlib.util

    monkeypatch.setattr(tfmot_engine, "_MODULES", {})
    monkeypatch.setitem(sys.modules, "tensorflow_model_optimization", None)  # import -> ImportError
    with pytest.raises(ImportError, match=r"pip install kerascnn\[qat\]"):
        translate_to_tf_keras(_small_cnn())
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert tfmot_engine.available() is False


_ISOLATION_SCRIPT = textwrap.dedent("""
    import json, os
    import numpy as np
    import tensorflow as tf          # tf.keras deliberately not touched before the engine runs
    import keras
    import kerascnn
    from kerascnn.quantization import tfmot_engine

    before = os.environ.get("TF_USE_LEGACY_KERAS")
    first = kerascnn.build("lenet5", input_shape=(32, 32, 1), classes=4)
    qat = tfmot_engine.quantize(first)
    x = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 4
    tfmot_engine.train(qat, tf.data.Dataset.from_tensor_slices((x[..., :1], y)).batch(8), verbose=0)
    after_engine = os.environ.get("TF_USE_LEGACY_KERAS")

    second = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35, classes=4)
    second.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    history = second.fit(x, y, batch_size=8, epochs=1, verbose=0)
    layer = tf.keras.layers.Dense(2)
    print("RESULT" + json.dumps({
        "before": before, "after_engine": after_engine,
        "after": os.environ.get("TF_USE_LEGACY_KERAS"),
        "tf_keras_module": tf.keras.__name__, "tf_keras_version": tf.keras.__version__,
        "keras_version": keras.__version__,
        "tf_keras_dense_is_keras3": isinstance(layer, keras.layers.Layer),
        "tf_optimizers": type(tf.optimizers.Adam()).__module__,
        "loss": float(history.history["loss"][-1]),
        "second_is_keras3": type(second).__module__.startswith("keras."),
    }))
""")


def test_keras3_is_unaffected_after_the_engine_ran():
    """A fresh interpreter: build a Keras 3 model, run tfmot quantize and train, then build and fit
    another Keras 3 model. TF_USE_LEGACY_KERAS must be back to its original value (absent) and
    `tf.keras` (first touched only after tfmot was imported) must still be Keras 3."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run([sys.executable, "-c", _ISOLATION_SCRIPT], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    result = json.loads(line[len("RESULT"):])
    assert result["before"] is None and result["after_engine"] is None and result["after"] is None
    assert result["tf_keras_module"].startswith("keras."), result
    assert result["tf_keras_version"] == result["keras_version"]
    assert result["tf_keras_dense_is_keras3"] and result["tf_optimizers"].startswith("keras.")
    assert result["second_is_keras3"] and np.isfinite(result["loss"])
