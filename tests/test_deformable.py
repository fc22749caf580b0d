"""DeformableConv2D (kerascnn.layers.deformable): a regular convolution at zero offsets, a loop-
by-loop NumPy reference on random offsets and masks, gradients, serialization, TFLite builtin-op
conversion, and the JAX backend."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import keras
from kerascnn.layers import DeformableConv2D

REPO_ROOT = Path(__file__).resolve().parents[1]


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def build_layer(input_shape, *, seed=0, offset_scale=1.0, **kwargs):
    """A built DeformableConv2D with a random kernel and bias and, for offset_scale > 0, random
    offset-branch weights (so offsets of a few pixels, some reaching outside the image)."""
    kwargs.setdefault("filters", 3)
    kwargs.setdefault("kernel_size", 3)
    layer = DeformableConv2D(**kwargs)
    layer.build((None, *input_shape))
    rng = np.random.default_rng(seed)
    layer.kernel.assign(rng.normal(0.0, 0.5, layer.kernel.shape).astype("float32"))
    if layer.bias is not None:
        layer.bias.assign(rng.normal(0.0, 0.5, layer.bias.shape).astype("float32"))
    if offset_scale:
        for w, std in zip(layer.offset_conv.weights, (0.3, 1.5)):
            w.assign(offset_scale * rng.normal(0.0, std, w.shape).astype("float32"))
    return layer


def random_input(shape, seed=1):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype("float32")


def bilinear(image, y, x):
    """image[y, x] (height, width, channels) interpolated bilinearly, zero outside the image."""
    height, width, _ = image.shape
    y0, x0 = math.floor(y), math.floor(x)
    value = np.zeros(image.shape[-1], np.float64)
    for row, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for col, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= row < height and 0 <= col < width:
                value += wy * wx * image[row, col]
    return value


def reference(layer, x):
    """The layer's output computed with plain loops from its weights and its offset branch's
    output (a plain Conv2D), following Dai et al. / Zhu et al. and torchvision's channel layout."""
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    groups, taps = layer.deformable_groups, kh * kw
    batch, height, width, channels = x.shape
    per_group = channels // groups
    branch = numpy(layer.offset_conv(x)).astype(np.float64)
    _, out_h, out_w, _ = branch.shape
    if layer.padding == "same":
        top = max((out_h - 1) * sh + (kh - 1) * dh + 1 - height, 0) // 2
        left = max((out_w - 1) * sw + (kw - 1) * dw + 1 - width, 0) // 2
    else:
        top = left = 0
    kernel = numpy(layer.kernel).astype(np.float64)
    out = np.zeros((batch, out_h, out_w, layer.filters))
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                for ky in range(kh):
                    for kx in range(kw):
                        k = ky * kw + kx
                        for g in range(groups):
                            dy = branch[b, i, j, 2 * (g * taps + k)]
                            dx = branch[b, i, j, 2 * (g * taps + k) + 1]
                            mask = 1.0
                            if layer.modulated:
                                logit = branch[b, i, j, 2 * groups * taps + g * taps + k]
                                mask = 1.0 / (1.0 + math.exp(-logit))
                            c = slice(g * per_group, (g + 1) * per_group)
                            sample = bilinear(x[b, :, :, c].astype(np.float64),
                                              i * sh - top + ky * dh + dy,
                                              j * sw - left + kx * dw + dx)
                            out[b, i, j] += mask * sample @ kernel[ky, kx, c]
    if layer.use_bias:
        out += numpy(layer.bias)
    return out


ZERO_OFFSET_CASES = [  # (strides, padding, dilation_rate)
    (1, "same", 1), (2, "same", 1), (2, "valid", 1), (1, "same", 2), (1, "valid", 2),
]


@pytest.mark.parametrize("strides, padding, dilation_rate", ZERO_OFFSET_CASES)
def test_zero_offsets_equal_plain_conv2d(strides, padding, dilation_rate):
    """With the offset branch at its zero initialisation, the layer is the Conv2D of its kernel
    (odd sizes, so "same" pads asymmetrically at stride 2)."""
    shape = (9, 10, 4)
    layer = build_layer(shape, offset_scale=0.0, strides=strides, padding=padding,
                        dilation_rate=dilation_rate)
    assert all(not np.any(numpy(w)) for w in layer.offset_conv.weights)  # the default init
    conv = keras.layers.Conv2D(3, 3, strides=strides, padding=padding, dilation_rate=dilation_rate)
    conv.build((None, *shape))
    conv.set_weights([numpy(layer.kernel), numpy(layer.bias)])
    x = random_input((2, *shape))
    expected = numpy(conv(x))
    np.testing.assert_allclose(numpy(layer(x)), expected, atol=1e-5)
    assert layer.compute_output_shape((None, *shape)) == (None, *expected.shape[1:])


def test_zero_init_modulated_is_half_the_plain_convolution():
    """DCNv2's mask is sigmoid(logits) and the logits start at zero, so a fresh modulated layer
    computes 0.5x the convolution (the choice the module docstring explains)."""
    shape = (6, 7, 4)
    layer = build_layer(shape, offset_scale=0.0, padding="same", modulated=True, use_bias=False)
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)
    conv.build((None, *shape))
    conv.set_weights([numpy(layer.kernel)])
    x = random_input((2, *shape))
    np.testing.assert_allclose(numpy(layer(x)), 0.5 * numpy(conv(x)), atol=1e-5)


REFERENCE_CASES = {
    "v1": dict(padding="same"),
    "v1_stride2_valid_groups2": dict(strides=2, padding="valid", deformable_groups=2),
    "v2_dilation2": dict(padding="same", dilation_rate=2, modulated=True),
    "v2_groups2_rect_kernel": dict(kernel_size=(2, 3), strides=(2, 1), padding="same",
                                   modulated=True, deformable_groups=2, use_bias=False),
}


@pytest.mark.parametrize("kwargs", REFERENCE_CASES.values(), ids=REFERENCE_CASES.keys())
def test_random_offsets_match_numpy_reference(kwargs):
    """Random offsets (fractional, some far outside the image) and masks: equal to the loops."""
    shape = (7, 8, 4)
    layer = build_layer(shape, **kwargs)
    x = random_input((2, *shape))
    taps = layer.kernel_size[0] * layer.kernel_size[1]
    offsets = numpy(layer.offset_conv(x))[..., :2 * layer.deformable_groups * taps]
    assert np.abs(offsets).max() > 3.0 and np.mean(offsets != np.round(offsets)) > 0.99
    np.testing.assert_allclose(numpy(layer(x)), reference(layer, x), atol=1e-4)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses tf.GradientTape")
@pytest.mark.parametrize("modulated", [False, True])
def test_gradients_reach_input_kernel_and_offset_branch(modulated):
    """Non-zero, finite gradients for the input and every weight, and the offset-bias gradient
    agrees with a central difference (the layer is piecewise bilinear in the offsets)."""
    import tensorflow as tf

    shape = (6, 6, 4)
    layer = build_layer(shape, padding="same", modulated=modulated)
    x = tf.constant(random_input((2, *shape)))
    probe = tf.constant(random_input((2, 6, 6, 3), seed=7))

    def loss():
        return tf.reduce_sum(layer(x) * probe)

    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss()
    variables = [layer.kernel, layer.bias, *layer.offset_conv.weights]
    grads = tape.gradient(value, [x, *variables])
    for name, grad in zip(["input", "kernel", "bias", "offset_kernel", "offset_bias"], grads):
        grad = numpy(tf.convert_to_tensor(grad))
        assert np.all(np.isfinite(grad)) and np.any(grad != 0), name

    offset_bias = layer.offset_conv.bias
    # The vertical offset of tap 2 (row 0, column 2), group 0. A small step keeps most samples
    # inside their pixel cell, where the layer is linear in the offset; float32 rounding then
    # limits the agreement to about 1e-3 relative.
    index, eps = 4, 1e-3
    base = numpy(offset_bias)

    def loss_at(delta):
        changed = base.copy()
        changed[index] += delta
        offset_bias.assign(changed)
        return float(loss())

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    offset_bias.assign(base)
    analytic = float(numpy(grads[-1])[index])
    assert analytic == pytest.approx(numeric, rel=1e-2)


def test_none_batch_and_unknown_size():
    """A Keras model with None batch, height and width runs at several sizes, eagerly and
    traced (predict), with the output size of a Conv2D."""
    layer = build_layer((9, 9, 4), strides=2, padding="same", modulated=True)
    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, layer(inputs))
    assert tuple(model.output.shape) == (None, None, None, 3)
    for shape in ((3, 7, 9, 4), (1, 8, 8, 4)):
        x = random_input(shape)
        eager = numpy(model(x))
        assert eager.shape == (shape[0], math.ceil(shape[1] / 2), math.ceil(shape[2] / 2), 3)
        np.testing.assert_allclose(model.predict(x, verbose=0), eager, atol=1e-5)


def test_config_round_trip_and_keras_file(tmp_path):
    """from_config(get_config()) and a .keras file loaded with safe_mode=True reproduce the layer:
    same config, same weights, identical outputs."""
    shape = (7, 7, 4)
    layer = build_layer(shape, padding="same", modulated=True, deformable_groups=2,
                        dilation_rate=2, activation="relu", kernel_regularizer="l2",
                        name="stage1_block1_conv2_conv")
    config = layer.get_config()
    json.dumps(config)
    clone = DeformableConv2D.from_config(config)
    clone.build((None, *shape))
    assert clone.get_config() == config
    clone.set_weights(layer.get_weights())
    x = random_input((2, *shape))
    np.testing.assert_array_equal(numpy(clone(x)), numpy(layer(x)))

    inputs = keras.Input(shape, name="input")
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / "deformable.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    loaded_layer = loaded.get_layer("stage1_block1_conv2_conv")
    assert isinstance(loaded_layer, DeformableConv2D) and loaded_layer.get_config() == config
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(numpy(a), numpy(b), err_msg=a.path)
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(model(x)))


def test_count_macs_uses_the_layer_hook():
    """kerascnn.analysis counts the layer through its compute_macs hook: a Conv2D's MACs for the
    kernel, plus the offset branch (27 = 2 * 9 offsets + 9 mask logits) and 5 per sampled value
    (4 bilinear weights and the mask)."""
    from kerascnn.analysis import count_macs

    inputs = keras.Input((8, 8, 4), name="input")
    layer = DeformableConv2D(3, 3, padding="same", modulated=True, name="stem_conv")
    count = count_macs(keras.Model(inputs, layer(inputs)))
    assert count.uncounted == ()
    samples = 8 * 8 * 9 * 4
    assert count.total == samples * 3 + samples * 27 + samples * 5


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="Received: padding='causal'"):
        DeformableConv2D(4, 3, padding="causal")
    with pytest.raises(ValueError, match="Received: kernel_size=0"):
        DeformableConv2D(4, 0)
    with pytest.raises(ValueError, match="deformable_groups"):
        DeformableConv2D(4, 3, deformable_groups=0)
    with pytest.raises(ValueError, match="dilation_rate"):
        DeformableConv2D(4, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="divisible"):
        DeformableConv2D(4, 3, deformable_groups=3)(keras.Input((8, 8, 4)))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite needs TensorFlow")
def test_tflite_conversion_uses_builtin_ops_and_matches_keras():
    """Two stacked layers (v2 with 2 groups, then v1 strided "valid") with random offsets
    convert with builtin ops only (GATHER for the sampling, FULLY_CONNECTED for the kernel)
    and agree with Keras. The 7x7 size matters: bounds [0, 6] once turned an index clip into
    an int32 RELU6, which TFLite lacks."""
    from kerascnn.export import TFLiteModel, tflite_ops, to_tflite

    first = build_layer((7, 7, 4), filters=4, padding="same", modulated=True, deformable_groups=2,
                        name="stage1_block1_conv1_conv")
    second = build_layer((7, 7, 4), seed=3, strides=2, padding="valid",
                         name="stage1_block1_conv2_conv")
    inputs = keras.Input((7, 7, 4), name="input")
    model = keras.Model(inputs, second(first(inputs)))
    content = to_tflite(model, kind="float32")  # raises FlexOpsError if Flex would be needed
    ops = tflite_ops(content)
    assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")], ops
    assert {"GATHER", "FULLY_CONNECTED", "FLOOR"} <= set(ops), ops
    x = random_input((3, 7, 7, 4))
    np.testing.assert_allclose(TFLiteModel(content)(x), numpy(model(x)), atol=1e-4)


JAX_SCRIPT = textwrap.dedent("""
    import sys

    import numpy as np

    import keras
    from kerascnn.layers import DeformableConv2D

    assert keras.backend.backend() == "jax", keras.backend.backend()
    data = np.load(sys.argv[1])
    inputs = keras.Input((7, 8, 4))
    layer = DeformableConv2D(3, 3, padding="same", modulated=True, deformable_groups=2)
    model = keras.Model(inputs, layer(inputs))
    model.set_weights([data[f"w{i}"] for i in range(4)])
    # predict() runs under jax.jit; train_on_batch differentiates through the sampling.
    y = model.predict(data["x"], verbose=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.train_on_batch(data["x"], np.ones_like(y))
    moved = [not np.array_equal(np.asarray(w), data[f"w{i}"]) for i, w in enumerate(model.weights)]
    np.save(sys.argv[2], y)
    print("moved", moved)
    print("OK")
""")


def test_runs_and_trains_on_jax(tmp_path):
    """On the JAX backend (a subprocess), the same weights give the TensorFlow outputs and one
    training step moves every weight, the offset branch included."""
    pytest.importorskip("jax", reason="the JAX backend check needs jax")
    shape = (7, 8, 4)
    layer = build_layer(shape, padding="same", modulated=True, deformable_groups=2)
    x = random_input((2, *shape))
    np.savez(tmp_path / "in.npz", x=x, **{f"w{i}": w for i, w in enumerate(layer.get_weights())})
    env = dict(os.environ, KERAS_BACKEND="jax",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("JAX_PLATFORMS", "cpu")
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "in.npz"),
                             str(tmp_path / "out.npy")], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (f"JAX subprocess failed (exit {result.returncode})\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-5000:]}")
    assert result.stdout.splitlines()[-2:] == ["moved [True, True, True, True]", "OK"], result.stdout
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), numpy(layer(x)), atol=1e-5)


def test_resnet50_dcn_layout_and_arguments():
    """resnet50_dcn: 13 deformable 3x3 convolutions (stages 2-4: 4 + 6 + 3 blocks), modulated on
    request; the ResNet builder rejects deformable options where they do not apply."""
    import kerascnn

    def deformable(model):
        return [layer for layer in model.layers if isinstance(layer, DeformableConv2D)]

    model = kerascnn.build("resnet50_dcn", input_shape=(32, 32, 3), classes=10, modulated=True)
    layers = deformable(model)
    assert [layer.name for layer in layers] == (
        [f"stage2_block{j}_conv2_conv" for j in range(1, 5)]
        + [f"stage3_block{j}_conv2_conv" for j in range(1, 7)]
        + [f"stage4_block{j}_conv2_conv" for j in range(1, 4)])
    assert all(layer.modulated and layer.offset_conv.filters == 27 for layer in layers)
    with pytest.raises(ValueError, match="Received: deformable_stages=\\(5,\\)"):
        kerascnn.build("resnet50", deformable_stages=(5,))
    with pytest.raises(ValueError, match="bottleneck"):
        kerascnn.build("resnet18", deformable_stages=(1,))
    with pytest.raises(ValueError, match="Received: modulated=True"):
        kerascnn.build("resnet50", modulated=True)
    with pytest.raises(ValueError, match="weights"):
        kerascnn.build("resnet50_dcn", weights="imagenet")


def test_resnet50_dcn_starts_as_resnet50():
    """With resnet50's weights copied by layer name (the deformable layers take the 3x3 kernels
    and keep their zero offset branches), resnet50_dcn gives resnet50's outputs."""
    import kerascnn

    kwargs = dict(input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    dcn, plain = kerascnn.build("resnet50_dcn", **kwargs), kerascnn.build("resnet50", **kwargs)
    for layer in dcn.layers:
        weights = plain.get_layer(layer.name).get_weights()
        if isinstance(layer, DeformableConv2D):
            weights += layer.offset_conv.get_weights()
        layer.set_weights(weights)
    x = random_input((2, 32, 32, 3))
    # Logits of a few units; 13 matrix products summed in another order than the convolutions
    # leave float32 rounding of about 1e-5 relative.
    np.testing.assert_allclose(numpy(dcn(x)), numpy(plain(x)), rtol=1e-4, atol=1e-4)
