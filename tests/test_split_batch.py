"""Split-batch training steps (kerascnn.training.split_batch): the update equals the unsplit one
where no batch statistics are involved, BatchNormalization sees each part on its own, and `train`
chooses and validates the part count."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from kerascnn.training import Recipe, get_recipe, split_batch_step, train
from kerascnn.training.split_batch import auto_batch_splits, check_batch_splits


def _conv_net(batch_norm: bool, seed: int = 0, outputs: int = 1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=not batch_norm)(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=0.5)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    heads = [keras.layers.Dense(4, activation="softmax", name=f"head{i}")(x)
             for i in range(outputs)]
    return keras.Model(inputs, heads[0] if outputs == 1 else heads)


def _data(n=16, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 4, n), 4).astype("float32")
    return x, y


def _one_step(model, x, y, parts, lr=0.5):
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    with split_batch_step(model, parts):
        logs = model.train_on_batch(x, y, return_dict=True)
    return logs


def test_split_step_without_batch_statistics_equals_the_unsplit_step():
    x, y = _data()
    start = _conv_net(False).get_weights()
    whole, split = _conv_net(False), _conv_net(False)
    logs_whole = _one_step(whole, x, y, parts=1)
    logs_split = _one_step(split, x, y, parts=2)
    assert logs_split["loss"] == pytest.approx(logs_whole["loss"], rel=1e-5)
    assert logs_split["accuracy"] == pytest.approx(logs_whole["accuracy"])
    for a, b, initial in zip(whole.get_weights(), split.get_weights(), start):
        assert not np.allclose(a, initial)  # every weight moved
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_split_step_normalises_each_part_on_its_own():
    """With BN, the update is the mean of the parts' gradients, each part normalised with its own
    batch statistics, and the moving statistics are updated once per part, in order."""
    x, y = _data()
    model, reference = _conv_net(True), _conv_net(True)
    lr = 0.5
    _one_step(model, x, y, parts=2, lr=lr)

    loss_fn = keras.losses.CategoricalCrossentropy()
    weights = reference.trainable_weights
    grads = [np.zeros(w.shape, "float32") for w in weights]
    bn = next(l for l in reference.layers if isinstance(l, keras.layers.BatchNormalization))
    mean, variance = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    conv = reference.layers[1]
    for part in (slice(0, 8), slice(8, 16)):
        with tf.GradientTape() as tape:
            loss = loss_fn(y[part], reference(x[part], training=True))
        for total, g in zip(grads, tape.gradient(loss, weights)):
            total += g.numpy() / 2
        features = conv(x[part]).numpy().reshape(-1, 6)
        mean = 0.5 * mean + 0.5 * features.mean(0)
        variance = 0.5 * variance + 0.5 * features.var(0)
    for w, got, g in zip(weights, model.trainable_weights, grads):
        np.testing.assert_allclose(got.numpy(), w.numpy() - lr * g, atol=1e-5)
    trained_bn = next(l for l in model.layers if isinstance(l, keras.layers.BatchNormalization))
    np.testing.assert_allclose(trained_bn.moving_mean.numpy(), mean, atol=1e-5)
    np.testing.assert_allclose(trained_bn.moving_variance.numpy(), variance, rtol=1e-4, atol=1e-5)

    # ... which is not what the unsplit step computes.
    whole = _conv_net(True)
    _one_step(whole, x, y, parts=1, lr=lr)
    assert not np.allclose(whole.get_weights()[0], model.get_weights()[0], atol=1e-5)


def test_split_step_with_several_outputs_and_sample_weights():
    x, y = _data()
    sample_weight = np.linspace(0.5, 1.5, len(x)).astype("float32")
    results = []
    for parts in (1, 4):
        model = _conv_net(False, outputs=2)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=["categorical_crossentropy"] * 2,
                      loss_weights=[1.0, 0.3])
        with split_batch_step(model, parts):
            loss = model.train_on_batch(x, (y, y), sample_weight=sample_weight)
        results.append((np.ravel(loss)[0], model.get_weights()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_split_step_is_restored_on_exit():
    model = _conv_net(False)
    x, y = _data()
    _one_step(model, x, y, parts=2)
    assert "train_step" not in vars(model) and model.train_function is None
    with pytest.raises(RuntimeError):
        with split_batch_step(model, 2):
            assert "train_step" in vars(model)
            raise RuntimeError("interrupted")
    assert "train_step" not in vars(model)
    with split_batch_step(model, 1):  # one part: the model's own step
        assert "train_step" not in vars(model)


def test_auto_and_explicit_part_counts():
    assert auto_batch_splits(128, gpu=False, backend="tensorflow") == 2
    assert auto_batch_splits(64, gpu=False, backend="tensorflow") == 2
    assert auto_batch_splits(48, gpu=False, backend="tensorflow") == 1  # parts under 32 images
    assert auto_batch_splits(None, gpu=False, backend="tensorflow") == 1
    assert auto_batch_splits(128, gpu=True, backend="tensorflow") == 1
    assert auto_batch_splits(128, gpu=False, backend="jax") == 1
    assert check_batch_splits(4, 128) == 4 and check_batch_splits(1, None) == 1
    with pytest.raises(ValueError, match="must divide the batch size 128. Received: batch_splits=3"):
        check_batch_splits(3, 128)
    with pytest.raises(ValueError, match="drop_remainder=True"):
        check_batch_splits(2, None)
    for bad in (0, -2, 1.5, True, "two"):
        with pytest.raises(ValueError, match="batch_splits"):
            Recipe(batch_splits=bad)
    assert get_recipe("default", batch_splits=2).batch_splits == 2


def test_train_splits_batches_and_rejects_a_bad_count(tmp_path):
    x, y = _data(n=128)
    labels = y.argmax(1)
    fixed = tf.data.Dataset.from_tensor_slices((x, labels)).batch(64, drop_remainder=True)
    ragged = tf.data.Dataset.from_tensor_slices((x, labels)).batch(48)
    recipe = get_recipe("default", epochs=1, precise_bn_steps=0, batch_size=64, warmup_epochs=0)
    history = train(_conv_net(True), fixed, None, recipe, verbose=0)
    assert history.results["batch_splits"] == 2  # "auto" on this CPU-only machine
    assert np.isfinite(history.history["loss"]).all()
    history = train(_conv_net(True), ragged, None, recipe, verbose=0)
    assert history.results["batch_splits"] == 1  # batch size unknown: no split
    history = train(_conv_net(True), fixed, None, get_recipe(recipe, batch_splits=4), verbose=0)
    assert history.results["batch_splits"] == 4
    with pytest.raises(ValueError, match="batch size 64. Received: batch_splits=3"):
        train(_conv_net(True), fixed, None, get_recipe(recipe, batch_splits=3), verbose=0)
    with pytest.raises(ValueError, match="drop_remainder"):
        train(_conv_net(True), ragged, None, get_recipe(recipe, batch_splits=2), verbose=0)
