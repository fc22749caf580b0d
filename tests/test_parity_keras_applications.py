"""Parity with keras.applications: same parameters, same weight order, same outputs.

Stronger than comparing counts: every weight of the keras.applications model is copied into ours
in order (`set_weights`), after randomising them (BN statistics included) so that a weight landing
in the wrong layer changes the output. Logits are compared, not softmax probabilities, which would
hide differences. Needs no download.
"""

import numpy as np
import pytest

import keras
import kerascnn
from kerascnn.models import mobilenet as mobilenet_module

# (our name, keras.applications name, keyword arguments shared by both, input size)
CASES = [
    ("mobilenet_v1", "MobileNet", {"alpha": 1.0}, 96),
    ("mobilenet_v1", "MobileNet", {"alpha": 0.5, "depth_multiplier": 2}, 64),
    *[("mobilenet_v2", "MobileNetV2", {"alpha": a}, 64) for a in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)],
    ("mobilenet_v3_small", "MobileNetV3Small", {}, 64),
    ("mobilenet_v3_large", "MobileNetV3Large", {}, 64),
    ("mobilenet_v3_large", "MobileNetV3Large", {"minimalistic": True}, 64),
    ("mobilenet_v3_small", "MobileNetV3Small", {"alpha": 0.75}, 64),
    ("resnet50", "ResNet50", {}, 64),
    ("resnet101", "ResNet101", {}, 64),
    ("resnet152", "ResNet152", {}, 64),
    ("resnet50_v2", "ResNet50V2", {}, 64),
    ("resnet101_v2", "ResNet101V2", {}, 64),
    ("resnet152_v2", "ResNet152V2", {}, 64),
]


def _keras_app(ka_name, size=None, **kwargs):
    if ka_name.startswith("MobileNetV3"):
        kwargs["include_preprocessing"] = False  # our models take preprocessed input
    if size is not None:
        kwargs["input_shape"] = (size, size, 3)
    return getattr(keras.applications, ka_name)(weights=None, **kwargs)


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(0.0, 0.05, w.shape)
        if "gamma" in w.path or "variance" in w.path:
            value = 1.0 + np.abs(value)
        w.assign(value.astype("float32"))


@pytest.mark.parametrize("name,ka_name,kwargs,size", CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_same_counts_weights_and_outputs(name, ka_name, kwargs, size):
    ka = _keras_app(ka_name, size, classifier_activation=None, **kwargs)
    ours = kerascnn.build(name, input_shape=(size, size, 3), classifier_activation=None, **kwargs)
    assert ours.count_params() == ka.count_params()
    _randomise(ka)
    ours.set_weights(ka.get_weights())
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    expected = ka.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    assert np.std(expected) > 1e-3, "logits too flat to tell models apart"
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_preprocessing_of_mobilenet_v3_matches_keras_applications():
    """keras.applications' MobileNetV3 rescales inside the model (x / 127.5 - 1, no weights);
    ours declares the same rescaling in model_info, so raw pixels through it give the same output."""
    ka = keras.applications.MobileNetV3Small(weights=None, input_shape=(64, 64, 3),
                                             classifier_activation=None)
    ours = kerascnn.build("mobilenet_v3_small", input_shape=(64, 64, 3), classifier_activation=None)
    _randomise(ka)
    ours.set_weights(ka.get_weights())  # the Rescaling layer has no weights
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    prep = kerascnn.model_info("mobilenet_v3_small").preprocessing
    x = pixels * np.array(prep.scale, "float32") + np.array(prep.offset, "float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), ka.predict(pixels, verbose=0), atol=1e-5)


@pytest.fixture
def offline_imagenet(monkeypatch):
    """Makes weights="imagenet" build its keras.applications source with random weights instead
    of downloading, and records the source models so tests can compare against them."""
    made = []

    def patch(ka_name):
        original = getattr(keras.applications, ka_name)

        def fake(*args, weights=None, **kwargs):
            assert weights == "imagenet", "kerascnn must ask keras.applications for ImageNet weights"
            model = original(*args, weights=None, **kwargs)
            _randomise(model, seed=len(made) + 3)
            made.append(model)
            return model

        monkeypatch.setattr(keras.applications, ka_name, fake)

    for ka_name in ("MobileNet", "MobileNetV2", "MobileNetV3Small", "ResNet50", "ResNet50V2"):
        patch(ka_name)
    return made


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "resnet50",
                                  "resnet50_v2"])
def test_imagenet_weights_are_transferred(name, offline_imagenet):
    ours = kerascnn.build(name, weights="imagenet", input_shape=(64, 64, 3))
    (source,) = offline_imagenet
    for mine, theirs in zip(ours.weights, source.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "resnet50_v2"])
def test_imagenet_weights_for_feature_backbones(name, offline_imagenet):
    """A features_only backbone takes the headless keras.applications weights, in order; the
    source's extra head convolution (not part of the backbone) is left out."""
    ours = kerascnn.build(name, weights="imagenet", features_only=True, input_shape=(64, 64, 3))
    (source,) = offline_imagenet
    assert not source.layers[-1].name.startswith("predictions")
    for mine, theirs in zip(ours.weights, source.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_imagenet_weights_need_a_published_configuration():
    with pytest.raises(ValueError, match="No ImageNet weights"):
        kerascnn.build("mobilenet_v2", weights="imagenet", alpha=0.6)
    with pytest.raises(ValueError, match="`classes` must be 1000"):
        kerascnn.build("resnet50", weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="No ImageNet weights"):
        kerascnn.build("resnet18", weights="imagenet")


def test_weights_from_a_file(tmp_path):
    source = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3), classes=5)
    _randomise(source)
    path = tmp_path / "mnv2.weights.h5"
    source.save_weights(path)
    loaded = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3), classes=5,
                            weights=str(path))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), source.predict(x, verbose=0))


def test_keras_applications_source_matches_our_configuration():
    """The helper that names the weight source builds the same architecture we do."""
    spec = mobilenet_module.MOBILENET_V2
    ka = mobilenet_module._keras_applications(spec, 0.5, include_top=True, weights=None)
    assert ka.count_params() == kerascnn.build("mobilenet_v2", alpha=0.5).count_params()
