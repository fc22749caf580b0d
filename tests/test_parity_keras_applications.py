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
from helpers import randomise
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


@pytest.mark.parametrize("name,ka_name,kwargs,size", CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_same_counts_weights_and_outputs(name, ka_name, kwargs, size):
    ka = _keras_app(ka_name, size, classifier_activation=None, **kwargs)
    ours = kerascnn.build(name, input_shape=(size, size, 3), classifier_activation=None, **kwargs)
    assert ours.count_params() == ka.count_params()
    randomise(ka)
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
    randomise(ka)
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
            randomise(model, seed=len(made) + 3)
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
    randomise(source)
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


@pytest.mark.parametrize("variant", ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"])
def test_efficientnet_parity(variant):
    """keras.applications' EfficientNet normalises inside the model (Rescaling(1/255) and a
    Normalization layer with 7 weights); ours does not. Everything after that is identical: the
    counts differ by exactly those 7 weights, and with the normalisation fed to ours outside the
    model, the logits agree."""
    size = 64
    ka = getattr(keras.applications, f"EfficientNet{variant.upper()}")(
        weights=None, input_shape=(size, size, 3), classifier_activation=None)
    ours = kerascnn.build(f"efficientnet_{variant}", input_shape=(size, size, 3),
                          classifier_activation=None)
    normalization = [l for l in ka.layers if isinstance(l, keras.layers.Normalization)]
    assert len(normalization) == 1
    assert ka.count_params() - ours.count_params() == 7 == normalization[0].count_params()
    randomise(ka)
    mean = np.array([0.2, 0.4, 0.6], "float32")
    variance = np.array([0.25, 0.5, 1.0], "float32")
    normalization[0].set_weights([mean, variance, np.array(1.0, "float32")])
    ours.set_weights([w for w in ka.get_weights()[3:]])  # drop mean, variance, count
    pixels = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    x = (pixels / 255.0 - mean) / np.sqrt(variance)
    np.testing.assert_allclose(ours.predict(x, verbose=0), ka.predict(pixels, verbose=0), atol=1e-5)


def test_efficientnet_imagenet_transfer_skips_only_the_normalization(monkeypatch):
    original = keras.applications.EfficientNetB0
    made = []

    def fake(*args, weights=None, **kwargs):
        made.append(original(*args, weights=None, **kwargs))
        randomise(made[-1])
        return made[-1]

    monkeypatch.setattr(keras.applications, "EfficientNetB0", fake)
    ours = kerascnn.build("efficientnet_b0", weights="imagenet", input_shape=(64, 64, 3))
    theirs = [w for w in made[0].weights if not w.path.startswith("normalization")]
    assert len(theirs) == len(ours.weights) == len(made[0].weights) - 3
    for mine, source in zip(ours.weights, theirs):
        np.testing.assert_array_equal(mine.numpy(), source.numpy())


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_se_resnet_counts_match_timm():
    """timm's seresnet50/101/152 (no conv biases, SE ratio 1/16 rounded to multiples of 8):
    28,088,024 / 49,326,872 / 66,821,848 parameters. PyTorch does not count BN running statistics
    as parameters; Keras keeps them as non-trainable weights, so trainable counts are compared."""
    assert _trainable(kerascnn.build("se_resnet50")) == 28_088_024
    assert _trainable(kerascnn.build("se_resnet101")) == 49_326_872
    assert _trainable(kerascnn.build("se_resnet152")) == 66_821_848


def test_se_resnet18_34_are_resnet_plus_se_parameters():
    """SE-ResNet-18/34 = torchvision's ResNet-18/34 (11,689,512 / 21,797,672) plus per basic block
    2*C*r + r + C SE parameters, r = make_divisible(C / 16): r = 8, 8, 16, 32 for C = 64..512."""
    def se_params(blocks_per_stage):
        per_block = {64: 2 * 64 * 8 + 8 + 64, 128: 2 * 128 * 8 + 8 + 128,
                     256: 2 * 256 * 16 + 16 + 256, 512: 2 * 512 * 32 + 32 + 512}
        return sum(n * per_block[c] for n, c in zip(blocks_per_stage, (64, 128, 256, 512)))

    assert _trainable(kerascnn.build("se_resnet18")) == 11_689_512 + se_params((2, 2, 2, 2))
    assert _trainable(kerascnn.build("se_resnet34")) == 21_797_672 + se_params((3, 4, 6, 3))
    assert se_params((2, 2, 2, 2)) == 90_112


def test_se_ratio_option_on_mobilenet_and_resnet():
    plain = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3))
    se = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3), se_ratio=0.25)
    assert any(l.name.endswith("_se_scale") for l in se.layers)
    assert se.count_params() > plain.count_params()
    no_se = kerascnn.build("se_resnet18", se_ratio=0)
    assert no_se.count_params() == kerascnn.build("resnet18").count_params()
    v3 = kerascnn.build("mobilenet_v3_small", se_ratio=0)
    assert not any("_se_" in l.name for l in v3.layers)
