"""Flip averaging inside the model (`kerascnn.layers.flip_averaged`): values, saving, and the
float and int8 TFLite files (post-training and QAT) with builtin integer ops only."""

import keras
import numpy as np
import pytest

import kerascnn
from kerascnn.export.convert import tflite_ops, to_tflite
from kerascnn.export.runtime import TFLiteModel
from kerascnn.layers import FlipConcat, PairMean, flip_averaged
from kerascnn.quantization import calibrate, quantize_model
from kerascnn.quantization.checks import integer_report


def _images(n=16, size=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(0)
    return kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3), classes=10)


def test_layers():
    x = np.arange(2 * 2 * 3 * 1, dtype="float32").reshape(2, 2, 3, 1)
    both = keras.ops.convert_to_numpy(FlipConcat()(x))
    assert both.shape == (4, 2, 3, 1)
    np.testing.assert_array_equal(both[:2], x)
    np.testing.assert_array_equal(both[2:], x[:, :, ::-1])  # mirrored left to right
    rows = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 8.0], [7.0, 0.0]], "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(PairMean()(rows)), [[3, 5], [5, 2]])
    assert FlipConcat().compute_output_shape((3, 8, 8, 1)) == (6, 8, 8, 1)
    assert PairMean().compute_output_shape((None, 10)) == (None, 10)


def test_prediction_is_the_mean_over_the_mirror_images(classifier):
    averaged = flip_averaged(classifier)
    x = _images()
    expected = (classifier.predict(x, verbose=0) + classifier.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(averaged.predict(x, verbose=0), expected, atol=1e-6)
    assert averaged.count_params() == classifier.count_params()
    assert averaged.input_shape == classifier.input_shape
    assert averaged.output_shape == classifier.output_shape
    assert averaged.name == f"{classifier.name}_flip_averaged"
    # The weights are the classifier's own variables, not copies.
    assert {id(w) for w in averaged.weights} == {id(w) for w in classifier.weights}


def test_saves_and_loads(classifier, tmp_path):
    averaged = flip_averaged(classifier)
    averaged.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = _images(4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), averaged.predict(x, verbose=0),
                               atol=1e-6)


def test_refuses_what_it_cannot_average():
    inp = keras.Input((16, 16, 3))
    rows = keras.Model(inp, keras.layers.Reshape((16, 48))(inp))
    with pytest.raises(ValueError, match=r"classifier or segmentation model.*output \(None, 16, 48\)"):
        flip_averaged(rows)
    two = keras.Model(inp, [keras.layers.GlobalAveragePooling2D()(inp)] * 2)
    with pytest.raises(ValueError, match="1 input\\(s\\) and 2 output\\(s\\)"):
        flip_averaged(two)
    with pytest.raises(TypeError, match="Received: unmirror='yes'"):
        PairMean(unmirror="yes")
    with pytest.raises(ValueError, match=r"\(2N, H, W, C\) maps. Received shape \(4, 2\)"):
        PairMean(unmirror=True)(np.zeros((4, 2), "float32"))


@pytest.fixture(scope="module")
def segmenter():
    keras.utils.set_random_seed(1)
    return kerascnn.build("unet_mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3), classes=5)


def test_segmentation_maps_are_mirrored_back_before_the_mean(segmenter):
    """Each pixel's scores are the mean of the model's scores at that pixel and of its scores
    on the mirror image at the mirrored pixel; a randomly initialised model is not symmetric, so
    averaging without mirroring back would give other values."""
    x = np.random.default_rng(3).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    x[:, :, :16] += 0.5  # an asymmetric scene
    averaged = flip_averaged(segmenter)
    plain = segmenter.predict(x, verbose=0)
    mirrored = segmenter.predict(x[:, :, ::-1], verbose=0)
    got = averaged.predict(x, verbose=0)
    assert got.shape == plain.shape == (3, 32, 32, 5)
    np.testing.assert_allclose(got, (plain + mirrored[:, :, ::-1]) / 2, atol=1e-6)
    assert np.abs(got - (plain + mirrored) / 2).max() > 1e-3
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)  # still softmax scores
    # Mirroring the input mirrors the averaged output exactly.
    np.testing.assert_allclose(averaged.predict(x[:, :, ::-1], verbose=0), got[:, :, ::-1],
                               atol=1e-5)


def test_segmentation_wrapper_saves_converts_and_quantizes(segmenter, tmp_path):
    averaged = flip_averaged(segmenter)
    averaged.save(tmp_path / "seg.keras")
    loaded = keras.saving.load_model(tmp_path / "seg.keras")
    assert loaded.get_layer("flip_mean").unmirror is True
    x = _images(4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), averaged.predict(x, verbose=0),
                               atol=1e-6)
    content = to_tflite(averaged, "float32")
    ops = set(tflite_ops(content))
    assert {"REVERSE_V2", "CONCATENATION", "MEAN"} <= ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
    np.testing.assert_allclose(TFLiteModel(content)(x), averaged.predict(x, verbose=0), atol=1e-5)
    qat_model = quantize_model(averaged)
    assert [layer.unmirror for layer in qat_model.layers if isinstance(layer, PairMean)] == [True]


def test_float_tflite_matches_keras(classifier):
    averaged = flip_averaged(classifier)
    content = to_tflite(averaged, "float32")
    ops = set(tflite_ops(content))
    assert {"REVERSE_V2", "CONCATENATION", "MEAN"} <= ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
    x = _images(4)
    np.testing.assert_allclose(TFLiteModel(content)(x), averaged.predict(x, verbose=0), atol=1e-5)


def test_int8_files_are_fully_integer(classifier):
    """Post-training int8 of the wrapper and the QAT rewrite of it (which places the input's
    quantizer before the mirror batch and one after the mean) convert to integer-only files
    that agree with Keras."""
    averaged = flip_averaged(classifier)
    x = _images(64, seed=2)
    ptq = to_tflite(averaged, "int8", representative_data=x)
    report = integer_report(ptq)
    assert report["fully_integer"], report["float_tensors"]
    assert "REVERSE_V2" in report["ops"] and "MEAN" in report["ops"]

    qat_model = quantize_model(averaged)
    assert any(isinstance(layer, FlipConcat) for layer in qat_model.layers)
    calibrate(qat_model, [(x, np.zeros(len(x), "int64"))], steps=1)
    qat_file = to_tflite(qat_model, "qat_int8")
    report = integer_report(qat_file)
    assert report["fully_integer"], report["float_tensors"]
    expected = qat_model.predict(x, verbose=0)
    got = TFLiteModel(qat_file)(x)
    assert np.abs(got - expected).max() < 0.05  # int8 rounding of probabilities
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9


def test_bundle_metadata_names_the_classifier_output(classifier, tmp_path):
    """The bundle of a flip-averaged classifier says its output is softmax probabilities (the
    mean of two) and that it is flip-averaged; a plain classifier's says it is not."""
    import json

    from kerascnn.export import export

    for model, flipped in ((flip_averaged(classifier), True), (classifier, False)):
        out = tmp_path / f"bundle_{flipped}"
        export(model, out, formats=("tflite_float32",), latency_runs=1)
        output = json.loads((out / "metadata.json").read_text())["output"]
        assert output == {"classes": 10, "activation": "softmax", "flip_averaged": flipped}


def test_wraps_the_main_classifier_of_a_model_with_auxiliary_heads():
    """What the demo does for a GoogLeNet-style model: the auxiliary heads are dropped
    (`classifier_only`) and the main classifier is flip-averaged."""
    from kerascnn.export.bundle import classifier_only

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    main = keras.layers.Dense(3, activation="softmax", name="predictions")(pooled)
    aux = keras.layers.Dense(3, activation="softmax", name="aux1_predictions")(pooled)
    model = keras.Model(inp, [main, aux])
    with pytest.raises(ValueError, match="2 output"):
        flip_averaged(model)
    averaged = flip_averaged(classifier_only(model))
    x = _images(4, size=16)
    expected = (model.predict(x, verbose=0)[0] + model.predict(x[:, :, ::-1], verbose=0)[0]) / 2
    np.testing.assert_allclose(averaged.predict(x, verbose=0), expected, atol=1e-6)
