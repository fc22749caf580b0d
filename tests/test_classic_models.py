"""LeNet-5, AlexNet, VGG and GoogLeNet: the papers' layer sizes, parity with keras.applications,
parameter counts against torchvision, and GoogLeNet's auxiliary classifiers.

torchvision counts parameters (`model.parameters()`), which leaves out BatchNorm's running mean and
variance (buffers); Keras counts those as non-trainable weights. So the comparisons use Keras'
TRAINABLE counts, and check separately that the non-trainable rest is exactly the BN statistics.
The torchvision numbers are the `num_params` of its model cards (pytorch.org/vision/stable/models).
"""

import re

import numpy as np
import pytest

import keras
import kerascnn
from kerascnn.layers import LocalResponseNormalization
from kerascnn.models.alexnet import PAPER_FILTERS
from kerascnn.models.googlenet import INCEPTION_TABLE, strip_auxiliary_heads


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def non_trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)


def _randomise(model, seed=0):
    """Random weights scaled by fan-in (He), so that activations stay near 1 through 16 layers and
    an absolute tolerance of 1e-5 on the logits is meaningful; BN statistics randomised too."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "gamma" in w.path or "variance" in w.path:
            value = 1.0 + 0.1 * np.abs(rng.normal(size=shape))
        elif len(shape) >= 2:
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        w.assign(value.astype("float32"))


@pytest.fixture(autouse=True)
def _free_memory():
    # The VGG models hold up to 144M parameters; do not let them pile up between tests.
    yield
    keras.backend.clear_session(free_memory=True)


# --------------------------------------------------------------------------------------- LeNet-5

def test_lenet5_has_the_paper_layer_sizes_and_parameters():
    model = kerascnn.build("lenet5")
    assert model.input_shape == (None, 32, 32, 1)
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    assert shapes["stage1_block1_conv"] == (28, 28, 6)     # C1
    assert shapes["stage1_block1_pool"] == (14, 14, 6)     # S2
    assert shapes["stage2_block1_conv"] == (10, 10, 16)    # C3
    assert shapes["stage2_block1_pool"] == (5, 5, 16)      # S4
    assert shapes["stage3_block1_conv"] == (1, 1, 120)     # C5
    assert shapes["head_flatten"] == (120,)
    assert shapes["head_fc1"] == (84,)                     # F6
    assert shapes["predictions"] == (10,)                  # output
    assert isinstance(model.get_layer("stage1_block1_pool"), keras.layers.AveragePooling2D)
    assert model.get_layer("stage1_block1_tanh").activation is keras.activations.tanh
    # C1: 5*5*1*6 + 6       =    156
    # C3: 5*5*6*16 + 16     =  2,416  (full connectivity; the paper's table: 1,516)
    # C5: 5*5*16*120 + 120  = 48,120
    # F6: 120*84 + 84       = 10,164
    # output: 84*10 + 10    =    850
    # total                 = 61,706  (S2/S4 are parameter-free average pools here)
    assert model.count_params() == trainable_count(model) == 61_706


def test_lenet5_options():
    relu_max = kerascnn.build("lenet5", activation="relu", subsampling="max")
    assert isinstance(relu_max.get_layer("stage2_block1_pool"), keras.layers.MaxPooling2D)
    assert relu_max.count_params() == 61_706
    assert kerascnn.build("lenet5", input_shape=(48, 48, 3), classes=4).output_shape == (None, 4)
    # No P1..P5 pyramid from "valid" 5x5 convolutions: LeNet is a classifier only.
    with pytest.raises(TypeError, match="features_only"):
        kerascnn.build("lenet5", features_only=True)


# --------------------------------------------------------------------------------------- AlexNet

def test_alexnet_map_sizes_and_torchvision_count():
    model = kerascnn.build("alexnet")
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    assert shapes["stage1_block1_conv"] == (55, 55, 64)
    assert shapes["stage1_block1_pool"] == (27, 27, 64)
    assert shapes["stage2_block1_conv"] == (27, 27, 192)
    assert shapes["stage2_block1_pool"] == (13, 13, 192)
    assert shapes["stage3_block3_conv"] == (13, 13, 256)
    assert shapes["stage3_block3_pool"] == (6, 6, 256)
    assert shapes["head_flatten"] == (9216,)
    # torchvision alexnet: 61,100,840 (no BN: total == trainable).
    assert model.count_params() == trainable_count(model) == 61_100_840


def test_alexnet_paper_two_tower_configuration():
    model = kerascnn.build("alexnet", filters=PAPER_FILTERS, two_tower=True,
                           local_response_norm=True)
    assert model.get_layer("stage2_block1_conv").groups == 2
    assert model.get_layer("stage3_block1_conv").groups == 1  # conv3 sees both towers
    assert isinstance(model.get_layer("stage1_block1_lrn"), LocalResponseNormalization)
    # conv1: 11*11*3*96 + 96             =     34,944
    # conv2: 5*5*48*256 + 256  (2 groups) =    307,456
    # conv3: 3*3*256*384 + 384           =    885,120
    # conv4: 3*3*192*384 + 384 (2 groups) =    663,936
    # conv5: 3*3*192*256 + 256 (2 groups) =    442,624
    # fc6:   6*6*256*4096 + 4096         = 37,752,832
    # fc7:   4096*4096 + 4096            = 16,781,312
    # fc8:   4096*1000 + 1000            =  4,097,000
    # total                              = 60,965,224 (the paper: "60 million parameters")
    assert model.count_params() == 60_965_224


def test_alexnet_with_lrn_saves_and_loads(tmp_path):
    model = kerascnn.build("alexnet", input_shape=(63, 63, 3), classes=3, local_response_norm=True,
                           two_tower=True)
    path = tmp_path / "alexnet.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 63, 63, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_local_response_normalization_matches_tensorflow():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(0, 3, (2, 5, 5, 12)).astype("float32")
    layer = LocalResponseNormalization(size=5, alpha=1e-2, beta=0.75, k=2.0)
    expected = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-2,
                                                  beta=0.75)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected.numpy(),
                               rtol=1e-5, atol=1e-6)
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.size, clone.alpha, clone.beta, clone.k) == (5, 1e-2, 0.75, 2.0)
    with pytest.raises(ValueError, match="Received: size=4"):
        LocalResponseNormalization(size=4)


# ------------------------------------------------------------------------------------------- VGG

@pytest.mark.parametrize("name,ka_name", [("vgg16", "VGG16"), ("vgg19", "VGG19")])
def test_vgg_parity_with_keras_applications(name, ka_name):
    """keras.applications accepts include_top=True at 64x64 with weights=None: the Flatten head
    then has 2*2*512 inputs, and so does ours."""
    size = 64
    ka = getattr(keras.applications, ka_name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    ours = kerascnn.build(name, input_shape=(size, size, 3), classifier_activation=None)
    assert ours.count_params() == ka.count_params()
    _randomise(ka)
    ours.set_weights(ka.get_weights())
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    expected = ka.predict(x, verbose=0)
    assert np.std(expected) > 1e-2, "logits too flat to tell models apart"
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, atol=1e-5, rtol=0)


@pytest.fixture
def offline_vgg(monkeypatch):
    """weights="imagenet" gets keras.applications' VGG16 with random weights instead of a download."""
    made = []
    original = keras.applications.VGG16

    def fake(*args, weights=None, **kwargs):
        assert weights == "imagenet"
        model = original(*args, weights=None, **kwargs)
        _randomise(model, seed=3 + len(made))
        made.append(model)
        return model

    monkeypatch.setattr(keras.applications, "VGG16", fake)
    return made


@pytest.mark.parametrize("kwargs", [{"include_top": False}, {"features_only": True}])
def test_vgg16_imagenet_weights_are_transferred(offline_vgg, kwargs):
    ours = kerascnn.build("vgg16", weights="imagenet", input_shape=(64, 64, 3), **kwargs)
    (source,) = offline_vgg
    assert len(ours.weights) == len(source.weights) == 26  # 13 convolutions, kernel + bias
    for mine, theirs in zip(ours.weights, source.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_vgg_features_are_the_last_map_at_each_stride():
    features = kerascnn.build("vgg16_bn", features_only=True, input_shape=(64, 64, 3))
    shapes = {k: tuple(v.shape[1:]) for k, v in features.output.items()}
    assert shapes == {"P1": (32, 32, 128), "P2": (16, 16, 256), "P3": (8, 8, 512),
                      "P4": (4, 4, 512), "P5": (2, 2, 512)}
    # P1..P4 are the ReLU outputs of each stage's last convolution, just before its pool.
    assert features.output["P3"] is features.get_layer("stage4_block3_relu").output
    assert features.output["P5"] is features.get_layer("stage5_block3_pool").output


# torchvision num_params; our `_bn` convolutions keep their biases like torchvision's, so the
# trainable counts are equal, not off by the biases.
TORCHVISION_COUNTS = [
    ("vgg11", 132_863_336),
    ("vgg11_bn", 132_868_840),
    ("vgg13", 133_047_848),
    ("vgg13_bn", 133_053_736),
    ("vgg16", 138_357_544),
    ("vgg16_bn", 138_365_992),
    ("vgg19", 143_667_240),
    ("vgg19_bn", 143_678_248),
]


@pytest.mark.parametrize("name,expected", TORCHVISION_COUNTS, ids=[c[0] for c in TORCHVISION_COUNTS])
def test_vgg_counts_match_torchvision(name, expected):
    model = kerascnn.build(name)  # 224x224x3: the Flatten head sees 7x7x512
    assert trainable_count(model) == expected
    # The rest is BN's moving mean and variance: 2 per convolution channel, none without BN.
    conv_channels = sum(layer.filters for layer in model.layers
                        if isinstance(layer, keras.layers.Conv2D))
    assert non_trainable_count(model) == (2 * conv_channels if name.endswith("_bn") else 0)


# ------------------------------------------------------------------------------------- GoogLeNet

def test_inception_table_gives_the_paper_output_sizes():
    assert [row.output_channels for row in INCEPTION_TABLE] == [
        256, 480, 512, 512, 512, 528, 832, 832, 1024]
    model = kerascnn.build("googlenet", include_top=False, input_shape=(224, 224, 3))
    got = [tuple(model.get_layer(f"stage{r.stage}_block{r.block}_concat").output.shape[1:])
           for r in INCEPTION_TABLE]
    # Table 1's "output size" column.
    assert got == [(28, 28, 256), (28, 28, 480), (14, 14, 512), (14, 14, 512), (14, 14, 512),
                   (14, 14, 528), (14, 14, 832), (7, 7, 832), (7, 7, 1024)]


def test_googlenet_counts():
    # torchvision GoogLeNet: batch norm, no conv biases, and a 3x3 kernel in the "5x5" branch.
    tv_like = kerascnn.build("googlenet", kernel_size_5x5=3, aux_logits=True)
    assert trainable_count(tv_like) == 13_004_888          # GoogLeNet(aux_logits=True)
    assert trainable_count(strip_auxiliary_heads(tv_like)) == 6_624_904  # its model card
    # The two auxiliary heads hold the difference, 6,379,984:
    #   aux1: 512*128 + 2*128 (conv + BN) + 2048*1024 + 1024 + 1024*1000 + 1000 = 3,188,968
    #   aux2: 528*128 + 2*128             + 2048*1024 + 1024 + 1024*1000 + 1000 = 3,191,016
    # The paper's 5x5 kernels add (25 - 9) * sum(#5x5reduce * #5x5) over the nine modules:
    #   16 * (16*32 + 32*96 + 16*48 + 24*64 + 24*64 + 32*64 + 32*128 + 32*128 + 48*128)
    #   = 16 * 23,808 = 380,928
    paper_bn = kerascnn.build("googlenet")
    assert trainable_count(paper_bn) == 6_624_904 + 380_928 == 7_005_832
    # BN's non-trainable moving statistics: 2 per convolution channel. The convolutions have
    #   stem 64 + 64 + 192 = 320 channels, modules (#1x1 + #3x3red + #3x3 + #5x5red + #5x5 + proj)
    #   368 + 640 + 624 + 648 + 664 + 704 + 1024 + 1024 + 1264 = 6,960: 7,280 in all.
    assert non_trainable_count(paper_bn) == 2 * 7_280
    # The paper's network without BN: each channel has a bias (1) instead of gamma and beta (2).
    paper = kerascnn.build("googlenet", batch_norm=False)
    assert paper.count_params() == trainable_count(paper) == 7_005_832 - 7_280 == 6_998_552


def test_googlenet_with_auxiliary_heads_trains_with_weighted_losses():
    model = kerascnn.build("googlenet", aux_logits=True, input_shape=(96, 96, 3), classes=5)
    assert model.output_names == ["predictions", "aux1_predictions", "aux2_predictions"]
    assert [tuple(o.shape) for o in model.outputs] == [(None, 5)] * 3
    # aux1 reads 4a, aux2 reads 4d (Figure 3 of the paper).
    assert model.get_layer("aux1_pool").input is model.get_layer("stage4_block1_concat").output
    assert model.get_layer("aux2_pool").input is model.get_layer("stage4_block4_concat").output
    model.compile(keras.optimizers.SGD(0.01), loss=["sparse_categorical_crossentropy"] * 3,
                  loss_weights=[1.0, 0.3, 0.3])
    before = [w.numpy().copy() for w in model.trainable_weights]
    x = np.random.default_rng(0).uniform(-1, 1, (4, 96, 96, 3)).astype("float32")
    y = np.array([0, 1, 2, 3])
    logs = model.train_on_batch(x, (y, y, y), return_dict=True)
    assert np.isfinite(logs["loss"])
    np.testing.assert_allclose(logs["loss"], logs["predictions_loss"]
                               + 0.3 * logs["aux1_predictions_loss"]
                               + 0.3 * logs["aux2_predictions_loss"], rtol=1e-5)
    unmoved = [w.path for w, b in zip(model.trainable_weights, before)
               if np.array_equal(w.numpy(), b)]
    assert not unmoved


def test_strip_auxiliary_heads_keeps_the_main_path_and_its_weights():
    full = kerascnn.build("googlenet", aux_logits=True, input_shape=(65, 65, 3), classes=4,
                          classifier_activation=None)
    _randomise(full)
    deployed = strip_auxiliary_heads(full)
    assert len(deployed.outputs) == 1 and deployed.output_names == ["predictions"]
    assert not [layer.name for layer in deployed.layers if layer.name.startswith("aux")]
    assert deployed.get_layer("predictions") is full.get_layer("predictions")  # shared, not copied
    x = np.random.default_rng(2).uniform(-1, 1, (3, 65, 65, 3)).astype("float32")
    main, _, _ = (keras.ops.convert_to_numpy(t) for t in full(x, training=False))
    assert np.std(main) > 1e-2
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(deployed(x, training=False)), main)
    plain = kerascnn.build("googlenet", input_shape=(65, 65, 3), classes=4)
    assert strip_auxiliary_heads(plain) is plain
    with pytest.raises(ValueError, match="Received: model of type str"):
        strip_auxiliary_heads("googlenet")


def test_auxiliary_classifiers_compute_in_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = kerascnn.build("googlenet", aux_logits=True, input_shape=(65, 65, 3), classes=3)
        assert model.get_layer("stem_conv1_conv").compute_dtype == "float16"
        for layer_name in model.output_names:
            assert model.get_layer(layer_name).compute_dtype == "float32", layer_name
    finally:
        keras.config.set_dtype_policy(previous)


# ------------------------------------------------------------------------------------ bad values

BAD_VALUES = [
    ("lenet5", {"activation": "gelu"}, "Received: activation='gelu'"),
    ("lenet5", {"subsampling": "sum"}, "Received: subsampling='sum'"),
    ("lenet5", {"input_shape": (28, 28, 1)}, "at least 32x32 pixels. Received: input_shape=(28, 28, 1)"),
    ("alexnet", {"filters": (64, 192)}, "Received: filters=(64, 192)"),
    ("alexnet", {"filters": (64, 192, 384, 256, 255), "two_tower": True},
     "Received: filters=(64, 192, 384, 256, 255)"),
    ("alexnet", {"two_tower": "yes"}, "Received: two_tower='yes'"),
    ("alexnet", {"local_response_norm": 1}, "Received: local_response_norm=1"),
    ("alexnet", {"input_shape": (62, 62, 3)}, "at least 63x63 pixels. Received: input_shape=(62, 62, 3)"),
    ("alexnet", {"weights": "imagenet"}, "Received: weights='imagenet'"),
    ("vgg16", {"input_shape": (31, 64, 3)}, "at least 32x32 pixels. Received: input_shape=(31, 64, 3)"),
    ("vgg16", {"input_shape": (None, None, 3)}, "Received: input_shape=(None, None, 3)"),
    ("vgg16", {"weights": "imagenet", "input_shape": (64, 64, 3)}, "Received: input_shape=(64, 64, 3)"),
    ("vgg16", {"weights": "imagenet", "classes": 10}, "Received: classes=10"),
    ("vgg11", {"weights": "imagenet"}, "Received: weights='imagenet'"),
    ("vgg16_bn", {"weights": "imagenet"}, "Received: weights='imagenet'"),
    ("vgg16_bn", {"bn_momentum": 2.0}, "Received: bn_momentum=2.0"),
    ("vgg19", {"pooling": "sum", "include_top": False}, "Received: pooling='sum'"),
    ("googlenet", {"kernel_size_5x5": 7}, "Received: kernel_size_5x5=7"),
    ("googlenet", {"aux_logits": True, "include_top": False}, "Received: aux_logits=True"),
    ("googlenet", {"aux_logits": True, "features_only": True}, "Received: aux_logits=True"),
    ("googlenet", {"aux_logits": True, "input_shape": (64, 64, 3)},
     "at least 65x65 pixels. Received: input_shape=(64, 64, 3)"),
    ("googlenet", {"batch_norm": 1}, "Received: batch_norm=1"),
    ("googlenet", {"dropout_rate": 1.0}, "Received: dropout_rate=1.0"),
]


@pytest.mark.parametrize("name,kwargs,message", BAD_VALUES,
                         ids=[f"{n}-{'-'.join(k)}" for n, k, _ in BAD_VALUES])
def test_bad_values_raise_value_errors_naming_them(name, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        kerascnn.build(name, **kwargs)


def test_one_registry_key_per_architecture():
    """batch_norm is not an argument of the registry entries: vgg16_bn is its own key."""
    with pytest.raises(TypeError, match="batch_norm"):
        kerascnn.build("vgg16", batch_norm=True)
    assert {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")} | {
        "lenet5", "alexnet", "googlenet"} <= set(kerascnn.list_models())
