"""Training to a wall-clock limit: a learning-rate schedule laid out over time as well as steps.

`train(..., time_limit=seconds)` trains until the recipe's epochs are done or the time is spent,
whichever comes first, and anneals the learning rate over whichever of the two is further along.
A schedule laid out over a number of epochs planned from a timed step misses on a machine whose
speed changes during the run: too slow, and the run overruns its budget or must be cut before
the learning rate has decayed (the end of a cosine schedule is where most of the accuracy is
gained); too fast, and the planning margin is wasted. Here the progress of the run is

    progress = max(step / total_steps, elapsed_seconds / time_limit)

and the learning rate is `learning_rate * warm-up ramp * (1 + cos(pi * progress)) / 2`. A
callback measures the time before each step, sets the optimizer's learning rate (a plain
variable, so checkpoints hold nothing custom), and stops training once the time is spent (Keras
ends the epoch there and still runs its validation). Without a time limit, `train` keeps Keras's
`CosineDecay`.

Keras has neither a time-based schedule nor a time limit; TensorFlow Addons' `TimeStopping`
(deprecated with the package) stopped only at an epoch's end and left the learning rate on its
step schedule, so a stopped run was not annealed. This module is that missing piece. It needs the TensorFlow backend: the JAX and PyTorch trainers hand the optimizer's variables to
the compiled step as state at the start of each epoch, so a value written by a callback between
steps is not seen until the next epoch.
"""

from __future__ import annotations

import math
import time

import keras


def cosine_progress(learning_rate: float, step: int, *, warmup_steps: int, total_steps: int,
                    time_fraction: float = 0.0) -> float:
    """The learning rate of a step: linear warm-up, then cosine decay to zero over the run's
    progress, the further along of `step / total_steps` and `time_fraction` (both clipped to
    [0, 1]).

    Raises:
        ValueError: `total_steps` < 1 or `warmup_steps` < 0.
    """
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError("`total_steps` must be >= 1 and `warmup_steps` >= 0. Received: "
                         f"total_steps={total_steps!r}, warmup_steps={warmup_steps!r}")
    done = min(1.0, max(step / total_steps, time_fraction, 0.0))
    rate = learning_rate * 0.5 * (1.0 + math.cos(math.pi * done))
    if warmup_steps:
        rate *= min(1.0, (step + 1) / warmup_steps)
    return rate


class TimeLimit(keras.callbacks.Callback):
    """Stops training once `seconds` of wall time have passed since `fit` began and, given a
    `learning_rate`, sets the optimizer's learning rate before each step by `cosine_progress`
    with the elapsed fraction of that time.

    The time counts from the start of `fit` (tracing, validation and callbacks included). The
    check runs after each step, so a run ends at most one step (plus the epoch's validation)
    past the limit. The steps count on from the optimizer's iterations, so a resumed run keeps
    its place in the schedule (its time counts from the new `fit`). After the run,
    `stopped_at_step` is the number of steps this `fit` had run when the time ran out (None:
    the epochs ended first), `steps_run` the steps it ran and `elapsed_s` the time from the
    start of `fit` to the end of its last step.

    Args:
        seconds: the time limit (> 0).
        learning_rate: peak learning rate of the schedule, or None to only stop (the
            optimizer's learning rate is then left alone).
        warmup_steps, total_steps: the schedule's warm-up and length in steps.
        clock: seconds as a float (`time.perf_counter`; tests pass their own).
    """

    def __init__(self, seconds: float, learning_rate: float | None = None, *,
                 warmup_steps: int = 0, total_steps: int = 1, clock=time.perf_counter):
        super().__init__()
        check_time_limit(seconds)
        if learning_rate is not None:
            cosine_progress(learning_rate, 0, warmup_steps=warmup_steps,
                            total_steps=total_steps)  # checks the schedule's arguments
        self.seconds = float(seconds)
        self.learning_rate = learning_rate
        self.warmup_steps, self.total_steps = warmup_steps, total_steps
        self.clock = clock
        self.stopped_at_step = None
        self.steps_run = 0
        self.elapsed_s = 0.0
        self._start = self._first_step = None

    def rate(self, step: int, time_fraction: float) -> float:
        return cosine_progress(self.learning_rate, step, warmup_steps=self.warmup_steps,
                               total_steps=self.total_steps, time_fraction=time_fraction)

    def on_train_begin(self, logs=None):
        self._start = self.clock()
        self._first_step = int(self.model.optimizer.iterations)
        self.steps_run = 0
        self.stopped_at_step = None

    def _elapsed(self):
        return self.clock() - self._start

    def on_train_batch_begin(self, batch, logs=None):
        if self.learning_rate is not None:
            self.model.optimizer.learning_rate = self.rate(
                self._first_step + self.steps_run, self._elapsed() / self.seconds)

    def on_train_batch_end(self, batch, logs=None):
        self.steps_run += 1
        self.elapsed_s = self._elapsed()
        if self.elapsed_s >= self.seconds and self.stopped_at_step is None:
            self.stopped_at_step = self.steps_run
            self.model.stop_training = True


def check_time_limit(seconds):
    """`seconds` if it is a positive number or None, else a ValueError naming it."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError("`time_limit` must be a positive number of seconds or None. "
                         f"Received: time_limit={seconds!r}")
    return float(seconds)
