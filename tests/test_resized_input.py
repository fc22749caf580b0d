"""`kerascnn.layers.resized_input`: a model run at another resolution than its images (values,
shared weights, saving, refusals, float and full-int8 TFLite files with builtin ops only)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerascnn
from kerascnn.export.convert import tflite_ops, to_tflite
from kerascnn.export.runtime import TFLiteModel
from kerascnn.layers import flip_averaged, resized_input
from kerascnn.quantization import quantize_model
from kerascnn.quantization.checks import integer_report


def _images(n=3, size=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def segmenter():
    keras.utils.set_random_seed(2)  # built at 64x64, fed 48x48 images
    return kerascnn.build("unet_mobilenet_v2", alpha=0.35, input_shape=(64, 64, 3), classes=5)


def test_segmentation_runs_at_its_size_and_answers_at_the_images(segmenter):
    wrapped = resized_input(segmenter, (48, 48, 3))
    x = _images(size=48)
    up = tf.image.resize(x, (64, 64), "bilinear").numpy()
    expected = tf.image.resize(segmenter.predict(up, verbose=0), (48, 48), "bilinear").numpy()
    got = wrapped.predict(x, verbose=0)
    assert got.shape == (3, 48, 48, 5)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)  # still probabilities
    assert wrapped.name == f"{segmenter.name}_from48x48"
    assert {id(w) for w in wrapped.weights} == {id(w) for w in segmenter.weights}


def test_classifier_output_is_left_as_it_is():
    keras.utils.set_random_seed(0)
    classifier = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(40, 40, 3), classes=7)
    wrapped = resized_input(classifier, (32, 32, 3), name="at40")
    x = _images(seed=1)
    expected = classifier.predict(tf.image.resize(x, (40, 40), "bilinear").numpy(), verbose=0)
    np.testing.assert_allclose(wrapped.predict(x, verbose=0), expected, atol=1e-5)
    assert wrapped.output_shape == (None, 7) and wrapped.name == "at40"
    # At the model's own size nothing is resized: the same layers, the same values.
    same = resized_input(classifier, (40, 40, 3))
    assert not [layer for layer in same.layers if isinstance(layer, keras.layers.Resizing)]


def test_trains_saves_and_converts(segmenter, tmp_path):
    wrapped = flip_averaged(resized_input(segmenter, (32, 32, 3)))
    wrapped.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = _images(4, seed=2), np.random.default_rng(2).integers(0, 5, (4, 32, 32))
    before = keras.ops.convert_to_numpy(segmenter.weights[0]).copy()
    wrapped.fit(x, y, epochs=1, verbose=0)
    assert np.abs(keras.ops.convert_to_numpy(segmenter.weights[0]) - before).max() > 0
    wrapped.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    expected = wrapped.predict(x, verbose=0)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    content = to_tflite(wrapped, "float32")
    ops = set(tflite_ops(content))
    assert "RESIZE_BILINEAR" in ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops)
    np.testing.assert_allclose(TFLiteModel(content)(x), expected, atol=1e-5)


def test_refuses_what_it_cannot_resize(segmenter):
    with pytest.raises(ValueError, match=r"model's 3 channels. Received: image_shape=\(32, 32, 1\)"):
        resized_input(segmenter, (32, 32, 1))
    with pytest.raises(ValueError, match=r"Received: image_shape=\(32, -4, 3\)"):
        resized_input(segmenter, (32, -4, 3))
    with pytest.raises(ValueError, match="Received: image_shape=32"):
        resized_input(segmenter, 32)
    any_size = keras.Input((None, None, 3))
    fcn = keras.Model(any_size, keras.layers.Conv2D(2, 1)(any_size))
    with pytest.raises(ValueError, match=r"fixed-size image input.*input \(None, None, None, 3\)"):
        resized_input(fcn, (32, 32, 3))
    inp = keras.Input((16, 16, 3))
    two = keras.Model(inp, [keras.layers.GlobalAveragePooling2D()(inp)] * 2)
    with pytest.raises(ValueError, match=r"1 input\(s\) and 2 output\(s\)"):
        resized_input(two, (8, 8, 3))


def test_full_int8_stays_integer(segmenter):
    """Post-training full int8: the two resizes are integer RESIZE_BILINEAR ops, no float
    tensor is left; the native QAT copy keeps the wrapper's shapes."""
    wrapped = resized_input(segmenter, (48, 48, 3))
    content = to_tflite(wrapped, "int8", representative_data=_images(8, size=48, seed=3))
    report = integer_report(content)
    assert report["fully_integer"] and "RESIZE_BILINEAR" in report["ops"]
    assert quantize_model(wrapped).output_shape == (None, 48, 48, 5)
