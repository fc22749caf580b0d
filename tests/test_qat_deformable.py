"""Native QAT of DeformableConv2D: its int8 form (QuantDeformableSampling) is the float layer's
function, converts to a fully integer TFLite file with builtin ops, and the file agrees with the
QAT Keras model, on random offsets of several pixels and on a model trained on Fashion-MNIST."""

import numpy as np
import pytest

import keras
from keras import layers

import kerascnn
from kerascnn.data import from_arrays, load_fashion_mnist, make_pipeline
from kerascnn.export import TFLiteModel, to_tflite
from kerascnn.layers import DeformableConv2D
from kerascnn.layers.quantization import QuantDeformableSampling
from kerascnn.quantization import calibrate, fake_quant_layers, qat, quantize_model
from kerascnn.quantization.checks import compare_kernels, integer_report
from kerascnn.training import get_recipe, train

pytestmark = pytest.mark.xdist_group("qat_native")

# (modulated, deformable_groups, strides, dilation_rate, padding)
CONFIGS = [(False, 1, 1, 1, "same"), (True, 1, 1, 1, "same"), (True, 2, 2, 1, "valid"),
           (False, 2, 1, 2, "same")]


def _dcn_model(modulated, groups, strides, dilation, padding, input_shape=(9, 8, 4)):
    """conv -> DeformableConv2D -> BN -> ReLU -> pooling -> dense, with an offset branch whose
    random weights give offsets of about +-3 pixels, and random BN statistics."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = DeformableConv2D(6, 3, strides=strides, dilation_rate=dilation, padding=padding,
                         modulated=modulated, deformable_groups=groups, name="dcn")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(5)(x))
    rng = np.random.default_rng(1)
    branch = model.get_layer("dcn").offset_conv
    branch.kernel.assign(rng.normal(0.0, 0.3, branch.kernel.shape))
    branch.bias.assign(rng.normal(0.0, 1.0, branch.bias.shape))
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(0.0, 0.1, 6))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 6))
    return model


def _inputs(shape=(9, 8, 4), n=8):
    return np.random.default_rng(0).uniform(-1, 1, (n, *shape)).astype("float32")


@pytest.mark.parametrize("config", CONFIGS)
def test_integer_form_computes_the_float_layer(config):
    """With 16-bit quantizers the rounding is negligible: what remains is the formulation (tent
    weights over all pixels, matrix product, 1x1 kernel, folded BN), which must be the float
    layer's bilinear sampling with zero padding."""
    model = _dcn_model(*config)
    x = _inputs()
    offsets = np.asarray(model.get_layer("dcn").offset_conv(model.layers[1](x)))
    assert np.abs(offsets).max() > 2.0, "the test needs offsets of several pixels"
    qmodel = quantize_model(model, num_bits=16)
    assert [type(l).__name__ for l in qmodel.layers if l.name.startswith("dcn")] == [
        "QuantConv", "FakeQuant", "QuantDeformableSampling", "FakeQuant", "QuantConv"]
    calibrate(qmodel, [x], steps=1)
    reference = model.predict(x, verbose=0)
    error = np.abs(qmodel.predict(x, verbose=0) - reference).max() / np.abs(reference).max()
    assert error < 1e-3, error


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[2]])
def test_int8_file_is_fully_integer_and_matches_the_qat_model(config, tmp_path):
    model = _dcn_model(*config)
    x = _inputs()
    qmodel = quantize_model(model)
    calibrate(qmodel, [x], steps=1)
    content = to_tflite(qmodel, kind="qat_int8", io_dtype="float32", batch_size=len(x))
    report = integer_report(content)
    assert report["fully_integer"], report["float_tensors"]
    assert {"BATCH_MATMUL", "ABS", "SUB", "MUL"} <= set(report["ops"])
    assert not {"GATHER", "GATHER_ND", "FLOOR", "CAST"} & set(report["ops"]), report["ops"]
    assert not [op for op in report["ops"] if op.startswith("Flex") or op == "CUSTOM"]
    # Offset branch and the 1x1 kernel over the sampled columns (BN folded) are the QAT kernels.
    lsb = compare_kernels(qmodel, content)
    assert {"dcn", "dcn_offset"} <= set(lsb) and max(lsb.values()) <= 1.0, lsb
    expected = qmodel.predict(x, verbose=0)
    out = TFLiteModel(content)(x)
    output_quantizer = fake_quant_layers(qmodel)[-1]
    step = (float(output_quantizer.range_max.numpy() - output_quantizer.range_min.numpy())
            / 255.0)
    assert np.abs(out - expected).max() <= 4 * step, (np.abs(out - expected).max(), step)

    path = tmp_path / "dcn_qat.keras"
    qmodel.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(qmodel(x)))


def test_dynamic_input_size_is_refused_with_a_clear_error():
    inputs = keras.Input((None, None, 3))
    x = DeformableConv2D(4, 3, padding="same", name="dynamic_dcn")(inputs)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match="dynamic_dcn_sampling.*static input height.*None"):
        quantize_model(model)
    with pytest.raises(ValueError, match="num_bits"):
        QuantDeformableSampling(num_bits=1)


def test_resnet50_dcn_converts_fully_integer():
    """The zoo's deformable model (modulated=False, 13 deformable layers at its smallest input)."""
    model = kerascnn.build("resnet50_dcn", input_shape=(32, 32, 3), classes=10)
    x = _inputs((32, 32, 3), n=2)
    qmodel = quantize_model(model)
    assert sum(isinstance(l, QuantDeformableSampling) for l in qmodel.layers) == 13
    calibrate(qmodel, [x], steps=1)
    report = integer_report(to_tflite(qmodel, kind="qat_int8", io_dtype="float32"))
    assert report["fully_integer"], report["float_tensors"]
    assert "BATCH_MATMUL" in report["ops"]


def test_trained_deformable_cnn_agrees_with_its_int8_file():
    """A small CNN with a modulated deformable convolution, trained on Fashion-MNIST, then QAT:
    the int8 file predicts what the QAT Keras model predicts."""
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    unit = {"scale": (1 / 255.0,), "offset": (0.0,), "channel_order": "L"}
    kwargs = dict(input_shape=(28, 28, 1), preprocessing=unit, batch_size=64, augment=(), seed=0)
    train_ds = make_pipeline(from_arrays(xtr[:6000], ytr[:6000]), training=True, **kwargs)
    test_ds = make_pipeline(from_arrays(xte[:1000], yte[:1000]), training=False, **kwargs)

    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)  # 7x7
    x = DeformableConv2D(32, 3, padding="same", modulated=True, use_bias=False, name="dcn")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
    branch = model.get_layer("dcn").offset_conv
    branch.kernel.assign(np.random.default_rng(0).normal(0, 0.05, branch.kernel.shape))
    recipe = get_recipe("default", optimizer="adamw", learning_rate=3e-3, epochs=2,
                        warmup_epochs=0, label_smoothing=0.0)
    train(model, train_ds, None, recipe, verbose=0)
    qmodel = qat(model, train_ds, epochs=1, steps_per_epoch=40, verbose=0,
                 recipe=get_recipe("default", optimizer="adamw", learning_rate=1e-3))
    content = to_tflite(qmodel, kind="qat_int8", io_dtype="int8")
    assert integer_report(content)["fully_integer"]

    images = np.concatenate([x for x, _ in test_ds])
    offsets = qmodel.get_layer("dcn_offset_fq")
    assert max(-float(offsets.range_min.numpy()), float(offsets.range_max.numpy())) > 0.5, \
        "the offsets stayed near zero: the deformable path was not exercised"
    keras_pred = np.asarray(qmodel.predict(images, verbose=0)).argmax(-1)
    tflite_pred = TFLiteModel(content)(images).argmax(-1)
    keras_acc, tflite_acc = (keras_pred == yte[:1000]).mean(), (tflite_pred == yte[:1000]).mean()
    assert keras_acc > 0.6, "the small CNN did not learn"
    assert abs(keras_acc - tflite_acc) <= 0.01, (keras_acc, tflite_acc)
    assert (keras_pred == tflite_pred).mean() >= 0.97, (keras_pred == tflite_pred).mean()
