"""The native QAT engine: fake-quant layers, the graph rewrite, and int8 TFLite parity.

The end-to-end checks train on real Fashion-MNIST images (a subset), because agreement between a
QAT model and its int8 file only means something on a model that has learned to separate classes.
"""

import numpy as np
import pytest

import keras
from keras import layers

import kerascnn
from kerascnn.data import from_arrays, load_fashion_mnist, make_pipeline, pipeline_for
from kerascnn.export import TFLiteModel, to_tflite
from kerascnn.layers.quantization import FakeQuant, QuantConv, QuantDense
from kerascnn.quantization import (UnsupportedLayerError, calibrate, fake_quant_layers, qat,
                                   quantize_model)
from kerascnn.quantization.checks import compare_kernels, integer_report
from kerascnn.training import get_recipe, train

pytestmark = pytest.mark.xdist_group("qat_native")

UNIT = {"scale": (1 / 255.0,), "offset": (0.0,), "channel_order": "L"}


# --- layers ------------------------------------------------------------------------------------
def test_fake_quant_tracks_batch_range_then_moving_average():
    fq = FakeQuant(ema_decay=0.9)
    x = np.linspace(-1.0, 3.0, 64, dtype="float32").reshape(1, 64)
    fq(x, training=True)
    assert float(fq.range_min.numpy()) == pytest.approx(-1.0)
    assert float(fq.range_max.numpy()) == pytest.approx(3.0)
    fq(x * 2, training=True)
    assert float(fq.range_max.numpy()) == pytest.approx(0.9 * 3.0 + 0.1 * 6.0, rel=1e-5)
    # Inference does not move the range, and outputs lie on 255 steps of the range.
    before = float(fq.range_max.numpy())
    y = np.asarray(fq(x * 10, training=False))
    assert float(fq.range_max.numpy()) == before
    step = (before - float(fq.range_min.numpy())) / 255
    assert y.max() <= before + 1e-5
    grid = (y - y.min()) / step
    np.testing.assert_allclose(grid, np.round(grid), atol=1e-3)


def test_fake_quant_fixed_range_and_errors():
    fq = FakeQuant(fixed_range=(0.0, 255 / 256))
    y = np.asarray(fq(np.array([[0.3, 2.0, -1.0]], "float32"), training=True))
    np.testing.assert_allclose(y, [[round(0.3 * 256) / 256, 255 / 256, 0.0]], atol=1e-6)
    assert FakeQuant.from_config(fq.get_config()).fixed_range == (0.0, 255 / 256)
    with pytest.raises(ValueError, match="Received: mode='minmax'"):
        FakeQuant(mode="minmax")
    with pytest.raises(ValueError, match="fixed_range"):
        FakeQuant(fixed_range=(1.0, 2.0))
    with pytest.raises(ValueError, match="num_bits"):
        FakeQuant(num_bits=1)


@pytest.mark.parametrize("depthwise", [False, True])
def test_quant_conv_folds_batchnorm(depthwise):
    """Folded conv + BN equals Conv -> BN(inference) up to the weight quantization, and equals it
    exactly with 16-bit weights."""
    rng = np.random.default_rng(0)
    inputs = keras.Input((8, 8, 4))
    conv = (layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="conv") if depthwise
            else layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="conv"))
    bn = layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn(conv(inputs)))
    for w in model.weights:
        value = rng.normal(0, 0.5, w.shape)
        if "variance" in w.path or "gamma" in w.path:
            value = 0.5 + np.abs(value)
        w.assign(value.astype("float32"))
    x = rng.normal(size=(2, 8, 8, 4)).astype("float32")
    expected = np.asarray(model(x, training=False))
    for bits, tolerance in ((16, 1e-3), (8, 0.1)):
        qmodel = quantize_model(model, num_bits=bits, quantize_input=False)
        qconv = [l for l in qmodel.layers if isinstance(l, QuantConv)]
        assert len(qconv) == 1 and qconv[0].batchnorm
        assert not [l for l in qmodel.layers if isinstance(l, layers.BatchNormalization)]
        calibrate(qmodel, [x], steps=1)
        np.testing.assert_allclose(np.asarray(qmodel(x, training=False)), expected,
                                   atol=tolerance * np.abs(expected).max())


def test_quantized_kernel_is_symmetric_per_channel():
    layer = QuantConv(kind="conv", filters=3, kernel_size=(1, 1))
    layer.build((None, 4, 4, 2))
    layer.kernel.assign(np.array([[[[1.0, 0.01, -4.0], [0.5, -0.02, 2.0]]]], "float32"))
    q = np.asarray(layer.quantized_kernel())[0, 0]
    for channel, max_abs in enumerate((1.0, 0.02, 4.0)):
        steps = q[:, channel] / (max_abs / 127)
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
        assert np.abs(q[:, channel]).max() == pytest.approx(max_abs, rel=1e-5)


# --- the rewrite -------------------------------------------------------------------------------
def test_rewrite_of_mobilenet_v2():
    model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35, classes=10)
    qmodel = quantize_model(model)
    convs = [l for l in model.layers if isinstance(l, (layers.Conv2D, layers.DepthwiseConv2D))]
    qconvs = [l for l in qmodel.layers if isinstance(l, QuantConv)]
    assert len(qconvs) == len(convs) and all(l.batchnorm for l in qconvs)
    assert len([l for l in qmodel.layers if isinstance(l, QuantDense)]) == 1
    assert not [l for l in qmodel.layers if isinstance(l, layers.BatchNormalization)]
    # ReLU6 is fused into the conv: its quantizer comes after the activation, not before.
    names = {l.name for l in fake_quant_layers(qmodel)}
    assert "stage2_block1_expand_relu6_fq" in names
    assert "stage2_block1_expand_bn_fq" not in names
    # Linear bottlenecks (projection conv + BN, no activation) are quantized after the BN.
    assert "stage2_block2_project_bn_fq" in names
    # The softmax is split from the classifier's Dense and gets TFLite's fixed output range.
    assert qmodel.get_layer("predictions_act_fq").fixed_range == (0.0, 255 / 256)
    assert qmodel.get_layer("predictions_fq").fixed_range is None


def test_unsupported_layer_is_named():
    from kerascnn.layers import LocalResponseNormalization

    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    x = LocalResponseNormalization(name="my_lrn")(x)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    with pytest.raises(UnsupportedLayerError, match="my_lrn.*LocalResponseNormalization"):
        quantize_model(model)
    with pytest.raises(ValueError, match="Received: engine='onnx'"):
        qat(model, None, engine="onnx")


def test_calibrate_takes_the_range_over_all_batches_in_one_trace(monkeypatch):
    """Calibration ranges are the min/max over the batches, as if each batch were calibrated
    alone; on TensorFlow the model's Python runs once (one trace), not once per batch."""
    model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35, classes=10)
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-s, s, (4, 32, 32, 3)).astype("float32") for s in (0.5, 1.0, 0.8)]

    def ranges(qmodel):
        return np.array([(q.range_min.numpy(), q.range_max.numpy())
                         for q in fake_quant_layers(qmodel) if q.fixed_range is None])

    alone = []
    for x in batches:
        qmodel = quantize_model(model)
        assert calibrate(qmodel, [x], steps=1) == 1
        alone.append(ranges(qmodel))
    qmodel = quantize_model(model)
    calls = []
    real_call = FakeQuant.call

    def counting_call(self, inputs, training=None):
        calls.append(self.name)
        return real_call(self, inputs, training=training)

    monkeypatch.setattr(FakeQuant, "call", counting_call)
    assert calibrate(qmodel, batches + batches, steps=3) == 3
    together = ranges(qmodel)
    np.testing.assert_allclose(together[:, 0], np.min([r[:, 0] for r in alone], axis=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(together[:, 1], np.max([r[:, 1] for r in alone], axis=0),
                               rtol=1e-5, atol=1e-6)
    assert (together[:, 0] < together[:, 1]).all()
    assert len(calls) == len(fake_quant_layers(qmodel))


def test_qat_model_saves_and_loads(tmp_path):
    model = kerascnn.build("mobilenet_v3_small", input_shape=(32, 32, 3), alpha=0.75, classes=10)
    qmodel = quantize_model(model)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    calibrate(qmodel, [x], steps=1)
    path = tmp_path / "qat.keras"
    qmodel.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(qmodel(x)))


def test_kernel_chunks_for_large_kernels():
    """Kernels over the converter's folding limit are computed in output-channel slices: the
    FCN's fc6 (7x7x512x4096, 392 MB) in 8 slices of 49 MB, fc7 (64 MB) whole."""
    from kerascnn.quantization.native import MAX_FOLDED_KERNEL_BYTES, _kernel_chunks

    fc6 = layers.Conv2D(4096, 7)
    fc6.build((None, 7, 7, 512))
    fc7 = layers.Conv2D(4096, 1)
    fc7.build((None, 1, 1, 4096))
    assert MAX_FOLDED_KERNEL_BYTES == 64 * 2**20
    assert _kernel_chunks(fc6) == 8 and _kernel_chunks(fc7) == 1
    with pytest.raises(ValueError, match="kernel_chunks=3.*filters=8"):
        QuantConv(kind="conv", filters=8, kernel_chunks=3)
    with pytest.raises(ValueError, match="activation='swish'"):
        QuantConv(kind="conv", filters=8, activation="swish")


@pytest.mark.parametrize("pattern", ["inline_relu", "relu_layer", "bn_relu6", "linear"])
def test_sliced_convolution_is_the_same_function_and_fully_integer(monkeypatch, tmp_path,
                                                                    pattern):
    """With a tiny folding limit, a conv is sliced: the QAT model computes the same numbers as
    the unsliced one, converts to integer CONV_2D slices joined by one CONCATENATION (ReLU fused
    into each slice), its kernels match within 1 LSB, and it saves and loads."""
    import kerascnn.quantization.native as native

    rng = np.random.default_rng(0)
    inputs = keras.Input((6, 6, 8), batch_size=1)
    if pattern == "inline_relu":
        x = layers.Conv2D(12, 3, activation="relu", name="big")(inputs)
    elif pattern == "relu_layer":
        x = layers.ReLU(name="big_relu")(layers.Conv2D(12, 3, name="big")(inputs))
    elif pattern == "bn_relu6":
        x = layers.Conv2D(12, 3, use_bias=False, name="big")(inputs)
        x = layers.ReLU(6.0, name="big_relu")(layers.BatchNormalization(name="big_bn")(x))
    else:
        x = layers.Conv2D(12, 3, name="big")(inputs)
    outputs = layers.Conv2D(5, 1, name="head")(x)
    model = keras.Model(inputs, outputs)
    for w in model.weights:
        value = rng.normal(0, 0.3, w.shape)
        w.assign((0.5 + np.abs(value) if "variance" in w.path else value).astype("float32"))
    data = rng.normal(size=(16, 6, 6, 8)).astype("float32")

    whole = quantize_model(model)
    monkeypatch.setattr(native, "MAX_FOLDED_KERNEL_BYTES", 3 * 3 * 8 * 4 * 4)  # 4 filters/slice
    sliced = quantize_model(model)
    big = sliced.get_layer("big")
    assert big.kernel_chunks == 3 and whole.get_layer("big").kernel_chunks == 1
    assert big.activation == {"inline_relu": "relu", "relu_layer": "relu",
                              "bn_relu6": "relu6", "linear": None}[pattern]
    for qmodel in (whole, sliced):
        calibrate(qmodel, [data[:8]], steps=1)
    np.testing.assert_allclose(np.asarray(sliced(data, training=False)),
                               np.asarray(whole(data, training=False)), rtol=1e-5, atol=1e-5)

    content = to_tflite(sliced, kind="qat_int8", io_dtype="int8")
    report = integer_report(content)
    assert report["fully_integer"], report["float_tensors"][:5]
    assert "CONCATENATION" in report["ops"] and "RELU" not in report["ops"], report["ops"]
    assert max(compare_kernels(sliced, content).values()) <= 1.0
    path = tmp_path / "sliced.keras"
    sliced.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(data)), np.asarray(sliced(data)))


# --- end to end on Fashion-MNIST ---------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion():
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    return (xtr[:6000], ytr[:6000]), (xte[:1000], yte[:1000])


def _user_cnn():
    """A CNN written by hand with Keras 3 layers (not from the zoo): a residual Add, a
    Concatenate, an SE block with a sigmoid gate and Multiply, and hard-swish."""
    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("hard_swish")(x)
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.Add()([x, y])
    a = layers.Conv2D(8, 1, activation="relu")(x)
    b = layers.DepthwiseConv2D(3, padding="same")(x)
    b = layers.ReLU(6.0)(b)
    x = layers.Concatenate()([a, b])
    x = layers.MaxPooling2D()(x)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(6, 1, activation="relu")(s)
    s = layers.Conv2D(24, 1, activation="sigmoid")(s)
    x = layers.Multiply()([x, s])
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("swish")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="user_cnn")


def _agreement(qmodel, content, images, labels):
    keras_pred = np.asarray(qmodel.predict(images, verbose=0)).argmax(-1)
    tflite_pred = TFLiteModel(content)(images).argmax(-1)
    return ((keras_pred == labels).mean(), (tflite_pred == labels).mean(),
            (keras_pred == tflite_pred).mean())


def test_user_written_cnn_converts_fully_integer(fashion):
    (xtr, ytr), (xte, yte) = fashion
    kwargs = dict(input_shape=(28, 28, 1), preprocessing=UNIT, batch_size=64, augment=(), seed=0)
    train_ds = make_pipeline(from_arrays(xtr, ytr), training=True, **kwargs)
    test_ds = make_pipeline(from_arrays(xte, yte), training=False, **kwargs)
    model = _user_cnn()
    train(model, train_ds, None, get_recipe("default", optimizer="adamw", learning_rate=3e-3,
                                             epochs=2, warmup_epochs=0, label_smoothing=0.0),
          verbose=0)
    qmodel = qat(model, train_ds, epochs=1, steps_per_epoch=40, verbose=0,
                 recipe=get_recipe("default", optimizer="adamw", learning_rate=3e-3))
    content = to_tflite(qmodel, kind="qat_int8", io_dtype="int8")
    report = integer_report(content)
    assert report["fully_integer"], report["float_tensors"]
    assert {"HARD_SWISH", "CONCATENATION", "MUL", "LOGISTIC", "ADD"} <= set(report["ops"])
    assert not [op for op in report["ops"] if op.startswith("Flex") or op == "CUSTOM"]
    images = np.concatenate([x for x, _ in test_ds])
    keras_acc, tflite_acc, agree = _agreement(qmodel, content, images, yte)
    assert keras_acc > 0.6, "the small CNN did not learn"
    assert agree >= 0.95, (keras_acc, tflite_acc, agree)


def test_trained_mobilenet_v2_qat_agrees_with_its_int8_file():
    """The issue's acceptance check on the centre model: a small MobileNetV2 trained to >= 85 %
    on Fashion-MNIST, fine-tuned with QAT; its full-int8 file is fully integer, carries the QAT
    model's folded fake-quantized kernels (within 1 LSB) and agrees with the QAT Keras model."""
    from kerascnn.data import load, pipeline_for

    model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35, classes=10,
                           output_stride=16)
    recipe = get_recipe("mobilenet_fashion_mnist", epochs=2)
    pipe = dict(batch_size=recipe.batch_size, seed=0)
    train_ds = pipeline_for(model, load("fashion_mnist", "train"), training=True,
                            augment=recipe.augment, **pipe)
    test_ds = pipeline_for(model, load("fashion_mnist", "test").take(2000), training=False,
                           **pipe)
    images = np.concatenate([x for x, _ in test_ds])
    labels = np.concatenate([y for _, y in test_ds])
    train(model, train_ds, None, recipe, verbose=0)
    float_acc = float(np.mean(model.predict(images, verbose=0).argmax(-1) == labels))
    assert float_acc >= 0.85, f"float accuracy {float_acc:.3f} < 0.85"

    qmodel = qat(model, train_ds, epochs=1, steps_per_epoch=100, recipe=recipe, verbose=0)
    content = to_tflite(qmodel, kind="qat_int8", io_dtype="int8")
    report = integer_report(content)
    assert report["fully_integer"], report["float_tensors"]
    assert not [op for op in report["ops"] if op.startswith("Flex") or op == "CUSTOM"]
    lsb = compare_kernels(qmodel, content)
    assert len(lsb) == len([l for l in qmodel.layers if isinstance(l, (QuantConv, QuantDense))])
    assert max(lsb.values()) <= 1.0, max(lsb.items(), key=lambda kv: kv[1])
    keras_acc, tflite_acc, agree = _agreement(qmodel, content, images, labels)
    assert abs(keras_acc - tflite_acc) <= 0.01, (keras_acc, tflite_acc)
    assert agree >= 0.97, (keras_acc, tflite_acc, agree)


def test_lone_batchnorm_is_integer():
    """BN that no conv absorbs (pre-activation nets): its MUL/ADD constants are quantized too."""
    model = kerascnn.build("resnet50_v2", input_shape=(32, 32, 3), classes=10)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    qmodel = quantize_model(model)
    from kerascnn.layers.quantization import QuantBatchNorm

    lone = [l for l in qmodel.layers if isinstance(l, QuantBatchNorm)]
    assert lone and "head_bn" in {l.name for l in lone}
    calibrate(qmodel, [x], steps=1)
    report = integer_report(to_tflite(qmodel, kind="qat_int8", io_dtype="int8"))
    assert report["fully_integer"], report["float_tensors"][:5]


def test_qat_command_line_fine_tunes_a_checkpoint_and_exports(tmp_path):
    """`kerascnn qat CHECKPOINT` (and export/qat_export.py): QAT on a saved float model, bundle
    with a fully integer QAT file."""
    import subprocess
    import sys

    model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), alpha=0.35, classes=10)
    checkpoint = tmp_path / "float.keras"
    model.save(checkpoint)
    out = tmp_path / "bundle"
    result = subprocess.run(
        [sys.executable, "export/qat_export.py", str(checkpoint), "--steps", "2", "--batch-size",
         "16", "--validation-samples", "32", "--latency-runs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert result.returncode == 0, result.stderr[-2000:]
    content = (out / "model_qat_int8.tflite").read_bytes()
    assert integer_report(content)["fully_integer"]
    assert (out / "metadata.json").exists() and "Bundle:" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "kerascnn", "qat", str(tmp_path / "none.keras")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "none.keras" in bad.stderr
