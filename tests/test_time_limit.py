"""Training to a wall-clock limit: the progress-driven cosine schedule, the TimeLimit callback and
`train(..., time_limit=...)`."""

import functools
import importlib
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerascnn.training import get_recipe, train
from kerascnn.training.time_limit import TimeLimit, cosine_progress


def test_schedule_follows_steps_without_time():
    def rate(step):
        return cosine_progress(0.1, step, warmup_steps=10, total_steps=110)

    assert rate(0) == pytest.approx(0.1 / 10)
    assert rate(4) == pytest.approx(0.1 * 5 / 10 * 0.5 * (1 + math.cos(math.pi * 4 / 110)))
    assert rate(55) == pytest.approx(0.05)
    assert rate(110) == pytest.approx(0.0, abs=1e-12)
    assert rate(500) == pytest.approx(0.0, abs=1e-12)  # stays at the end


def test_schedule_takes_the_further_of_time_and_steps():
    def rate(step, fraction):
        return cosine_progress(0.2, step, warmup_steps=0, total_steps=1000, time_fraction=fraction)

    assert rate(0, 0.0) == pytest.approx(0.2)
    assert rate(100, 0.5) == pytest.approx(0.1)  # half the time spent, a tenth of the steps
    assert rate(750, 0.5) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert rate(1, 3.0) == pytest.approx(0.0, abs=1e-12)  # past the limit: the end
    with pytest.raises(ValueError, match="total_steps=0"):
        cosine_progress(0.1, 0, warmup_steps=0, total_steps=0)
    with pytest.raises(ValueError, match="warmup_steps=-1"):
        TimeLimit(10, 0.1, warmup_steps=-1, total_steps=5)


def _data(n=256, batch=32):
    rng = np.random.default_rng(0)
    x = rng.random((n, 8, 8, 3), dtype=np.float32)
    y = rng.integers(0, 4, n)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True)


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3),
                             keras.layers.BatchNormalization(),
                             keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(4, activation="softmax")])


class _FakeClock:
    """A clock that a callback advances by `tick` seconds after every training step."""

    def __init__(self, tick):
        self.now, self.tick = 100.0, tick

    def __call__(self):
        return self.now


class _Advance(keras.callbacks.Callback):
    """Placed after the TimeLimit: records the learning rate the timer set for each step, then
    lets the step's `tick` seconds pass."""

    def __init__(self, clock, record):
        super().__init__()
        self.clock, self.record = clock, record

    def on_train_batch_begin(self, batch, logs=None):
        self.record.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self.clock.now += self.clock.tick


def test_callback_stops_at_the_limit_and_drives_the_schedule():
    """With a clock that advances 1 s per step and a 5.5 s limit, training stops after the
    sixth step of an epoch of eight, and each step's learning rate follows the elapsed fraction
    of the limit (the steps' own share, 6/800, is smaller)."""
    model = _model()
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    clock, used = _FakeClock(1.0), []
    timer = TimeLimit(5.5, 0.1, total_steps=800, clock=clock)
    history = model.fit(_data(), epochs=100, verbose=0, shuffle=False,
                        callbacks=[timer, _Advance(clock, used)])
    assert timer.stopped_at_step == timer.steps_run == 6
    assert int(model.optimizer.iterations) == 6 and len(history.history["loss"]) == 1
    assert timer.elapsed_s == pytest.approx(6.0)
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 5.5)) for k in range(6)]
    np.testing.assert_allclose(used, expected, rtol=1e-6)


def test_callback_does_not_stop_before_the_limit():
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    clock = _FakeClock(0.01)
    timer = TimeLimit(60, clock=clock)
    model.fit(_data(), epochs=2, verbose=0, shuffle=False, callbacks=[timer, _Advance(clock, [])])
    assert timer.stopped_at_step is None and timer.steps_run == 16
    assert not model.stop_training


@pytest.mark.parametrize("bad", [0, -1.5, "5", True, float("nan")])
def test_bad_time_limits_are_refused(bad):
    with pytest.raises(ValueError, match=r"Received: time_limit="):
        train(_model(), _data(), recipe=get_recipe("default", epochs=1), time_limit=bad)
    with pytest.raises(ValueError, match=r"Received: time_limit="):
        TimeLimit(bad)


def test_train_refuses_a_time_limit_off_tensorflow(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="TensorFlow backend.*'jax'"):
        train(_model(), _data(), recipe=get_recipe("default", epochs=1), time_limit=10)


class _Slow(keras.callbacks.Callback):
    """Lets `seconds` pass on `clock` (the real one when None) at the end of each step and records
    the learning rate the step used. `train` puts it before its TimeLimit, so the timer sees the
    step's time at once."""

    def __init__(self, seconds, record, clock=None):
        super().__init__()
        self.seconds, self.record, self.clock = seconds, record, clock

    def on_train_batch_end(self, batch, logs=None):
        import time

        if self.clock is None:
            time.sleep(self.seconds)
        else:
            self.clock.now += self.seconds
        self.record.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def test_train_stops_on_time_annealed(tmp_path, monkeypatch):
    """A run asked for 50 epochs of 8 steps stops mid-run when its second is spent, with its
    learning rate annealed to near zero; the results say where it stopped, and its checkpoints
    load. Time is a fake clock that moves 5/64 s per step (on a loaded CI machine the first
    step's tracing alone once took more than a real second): the limit is passed after step 13."""
    # The module, not the function that `kerascnn.training.train` names.
    train_module = importlib.import_module("kerascnn.training.train")
    clock = _FakeClock(0.0)
    monkeypatch.setattr(train_module, "TimeLimit",
                        functools.partial(TimeLimit, clock=clock))
    used = []
    recipe = get_recipe("default", epochs=50, warmup_epochs=0.25, precise_bn_steps=2)
    history = train(_model(), _data(), _data(), recipe, out_dir=tmp_path, time_limit=1.0,
                    callbacks=[_Slow(5 / 64, used, clock)], verbose=0)
    results = history.results
    assert results["time_limit_s"] == 1.0
    assert results["stopped_at_step"] == results["steps_trained"] == 13 == len(used)
    assert results["epochs_trained"] == pytest.approx(13 / 8, abs=1e-3)
    assert results["fit_s"] == pytest.approx(13 * 5 / 64, abs=0.05) and "accuracy" in results
    assert set(results["phase_s"]) == {"fit", "precise_bn", "evaluation"}
    assert min(results["phase_s"].values()) >= 0
    # Each step's rate: the two-step warm-up, then the cosine of the elapsed share of the limit.
    expected = [cosine_progress(0.1, k, warmup_steps=2, total_steps=400,
                                time_fraction=k * 5 / 64) for k in range(13)]
    np.testing.assert_allclose(used, expected, rtol=1e-5)
    assert used[-1] < 0.1 * 0.1 * 0.5  # under 5 % of the peak by the last step
    peak = int(np.argmax(used))
    assert peak <= 3
    assert all(a >= b for a, b in zip(used[peak:], used[peak + 1:]))
    # The checkpoint holds nothing custom: plain Keras loads it, at the step it stopped.
    loaded = keras.models.load_model(tmp_path / "last.keras")
    assert int(loaded.optimizer.iterations) == 13
    assert (tmp_path / "results.json").exists()


def test_train_epochs_end_before_the_time():
    used = []
    recipe = get_recipe("default", epochs=2, warmup_epochs=0, precise_bn_steps=0)
    history = train(_model(), _data(), recipe=recipe, time_limit=600,
                    callbacks=[_Slow(0.0, used)], verbose=0)
    assert history.results["stopped_at_step"] is None
    assert history.results["steps_trained"] == 16 and history.results["epochs_trained"] == 2
    # The steps ran the schedule to its end: the last step took the last rate by steps.
    assert used[-1] == pytest.approx(cosine_progress(0.1, 15, warmup_steps=0, total_steps=16))
