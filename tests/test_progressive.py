"""Progressive resizing (kerascnn.training.progressive): the schedule, the image size each epoch's
training steps actually see, what it refuses, and its place in the demo's time plan."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import kerascnn
from kerascnn.demo import plan_epochs
from kerascnn.training import Recipe, get_recipe, train
from kerascnn.training.progressive import (check_schedule, progressive_resizing, size_at_epoch,
                                           stage_epochs)


class SizeProbe(keras.layers.Layer):
    """Passes its input on and remembers the height of the last batch seen in training."""

    def build(self, input_shape):
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

    def call(self, inputs, training=None):
        if training:
            self.seen.assign(keras.ops.cast(keras.ops.shape(inputs)[1], "float32"))
        return inputs


def _any_size_classifier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = SizeProbe(name="probe")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _data(size=16, n=64, batch=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, size, size, 3)).astype("float32")
    y = rng.integers(0, 3, n)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True)


def test_schedule_stages():
    schedule = check_schedule([(0.4, 32), (0.7, 48)])
    assert schedule == ((0.4, 32), (0.7, 48))
    assert [size_at_epoch(schedule, e, 10, 64) for e in range(10)] == [32] * 4 + [48] * 3 + [64] * 3
    assert stage_epochs(schedule, 10, 64) == [(32, 4), (48, 3), (64, 3)]
    assert stage_epochs(schedule, 1, 64) == [(64, 1)]  # too short a run for the early stages
    assert stage_epochs((), 3, 64) == [(64, 3)]
    assert stage_epochs(((0.5, 80),), 2, 64) == [(64, 2)]  # never larger than the data


@pytest.mark.parametrize("bad", [((0.0, 32),), ((1.0, 32),), ((0.5, 0),), ((0.5, 31.5),),
                                 ((0.5, 48), (0.4, 56)), ((0.4, 48), (0.6, 32)), (0.5, 32),
                                 "0.5:32"])
def test_bad_schedules_are_refused(bad):
    with pytest.raises(ValueError, match="progressive_resizing"):
        Recipe(progressive_resizing=bad)


def test_each_epoch_trains_at_its_stage_size():
    model = _any_size_classifier()
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(int(model.get_layer("probe").seen.numpy()))

    recipe = get_recipe("default", epochs=4, batch_size=16, warmup_epochs=0, precise_bn_steps=2,
                        progressive_resizing=((0.25, 8), (0.5, 12)))
    history = train(model, _data(), _data(), recipe, callbacks=[Record()], verbose=0)
    assert seen == [8, 12, 16, 16]
    assert np.isfinite(history.history["loss"]).all()
    assert "val_accuracy" in history.history  # validation ran at the data's own size
    assert "train_step" not in vars(model)  # the model's own step is back


def test_refuses_models_it_cannot_resize():
    recipe = get_recipe("default", epochs=2, batch_size=16, progressive_resizing=((0.5, 8),))
    fixed = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match=r"input_shape=\(None, None, channels\).*16, 16, 3"):
        train(fixed, _data(), None, recipe, verbose=0)
    segmenter = keras.Sequential([keras.Input((None, None, 3)),
                                  keras.layers.Conv2D(3, 1, activation="softmax")])
    with pytest.raises(ValueError, match="classifiers"):
        with progressive_resizing(segmenter, ((0.5, 8),), 2, 16):
            pass


def test_mobilenet_twin_takes_the_trained_weights():
    """The demo trains a (None, None, 3) twin and exports the fixed-size model: the same layers,
    so the weights carry over exactly."""
    twin = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(None, None, 3), classes=10)
    fixed = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(64, 64, 3), classes=10)
    fixed.set_weights(twin.get_weights())
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(fixed.predict(x, verbose=0), twin.predict(x, verbose=0), atol=1e-6)


def test_plan_counts_cheaper_early_epochs():
    """With the early epochs at a quarter of the step cost, more epochs fit the same budget."""
    job = dict(epochs=30, steps_per_epoch=468, eval_batches=79, qat_steps=150)
    plain = plan_epochs(840, 30, 0.134, **job, full_size=64)
    schedule = ((0.4, 32), (0.6, 48))
    staged = plan_epochs(840, 30, 0.134, **job, full_size=64, schedule=schedule,
                         stage_step_s={32: 0.134 / 4, 48: 0.134 / 2})
    assert staged["epochs"] > plain["epochs"] and staged["fits"] and plain["fits"]
    assert staged["epoch_s"] < plain["epoch_s"]
    # One more epoch would not have fitted.
    more = plan_epochs(840, 30, 0.134, **{**job, "epochs": staged["epochs"] + 1}, full_size=64,
                       schedule=schedule, stage_step_s={32: 0.134 / 4, 48: 0.134 / 2})
    assert more["epochs"] == staged["epochs"]


def test_qat_fine_tunes_at_the_export_size():
    from kerascnn.quantization import qat_recipe

    float_recipe = get_recipe("mobilenet_fashion_mnist", progressive_resizing=((0.5, 32),))
    assert qat_recipe(float_recipe).progressive_resizing == ()
