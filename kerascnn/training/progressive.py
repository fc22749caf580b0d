"""Progressive resizing: the first epochs of a run train on smaller images.

A CNN's early epochs learn coarse features that small images may teach as well as large ones, at
a fraction of the cost (a step at half the resolution did half the work of a MobileNetV2 0.5 step
at 64x64 on a 2-core CPU, not a quarter: the pipeline and the resize remain); the last epochs at the
full resolution then fit the details and the BN statistics of the size the model is used at. This
is fast.ai's progressive resizing and the image-size half of EfficientNetV2's progressive learning
(Tan & Le 2021, https://arxiv.org/abs/2104.00298); FixRes (Touvron et al. 2019,
https://arxiv.org/abs/1906.06423) shows why the run must end at the resolution it is tested at.

`progressive_resizing(model, schedule, epochs, full_size)` resizes each training batch inside the training
step (bilinear, on the whole batch), so one data pipeline at the full size serves every stage and
the step is traced once. Validation, precise BN and inference see the data as it comes. The model
must accept any input size: build it with `input_shape=(None, None, channels)` and copy its
weights into a fixed-size twin for export (`set_weights`; the layers are the same).
"""

from __future__ import annotations

import contextlib

import keras

from kerascnn.training.split_batch import replaced_train_step

def check_schedule(schedule) -> tuple:
    """Validates a progressive-resizing schedule and returns it as a tuple of (fraction, size).

    A schedule is a sequence of (fraction, size) pairs with fractions increasing in (0, 1) and
    sizes positive and increasing: epochs before `fraction` of the run train at `size`; epochs
    after the last fraction train at the data's own size.

    Raises:
        ValueError: a malformed schedule (the message names the bad entry).
    """
    try:
        pairs = tuple((float(f), int(s)) for f, s in schedule)
    except (TypeError, ValueError):
        raise ValueError("`progressive_resizing` must be a sequence of (fraction, size) pairs, "
                         f"e.g. ((0.4, 32), (0.7, 48)). Received: {schedule!r}") from None
    for (f, s), original in zip(pairs, schedule):
        if not 0 < f < 1 or s < 1 or s != original[1]:
            raise ValueError("Each (fraction, size) of `progressive_resizing` needs 0 < fraction "
                             f"< 1 and an integer size >= 1. Received: {tuple(original)!r}")
    for (f0, s0), (f1, s1) in zip(pairs, pairs[1:]):
        if not (f1 > f0 and s1 > s0):
            raise ValueError("`progressive_resizing` fractions and sizes must both increase. "
                             f"Received: {schedule!r}")
    return pairs


def size_at_epoch(schedule, epoch: int, epochs: int, full_size: int) -> int:
    """The image size of 0-based `epoch` of an `epochs`-epoch run: the first stage whose
    fraction of the run, rounded down to whole epochs, lies beyond the epoch."""
    for fraction, size in schedule:
        if epoch < int(fraction * epochs):
            return min(size, full_size)
    return full_size


def stage_epochs(schedule, epochs: int, full_size: int) -> list[tuple[int, int]]:
    """[(size, epochs at that size), ...] in order, for planning a run's time."""
    stages: list[list[int]] = []
    for epoch in range(epochs):
        size = size_at_epoch(schedule, epoch, epochs, full_size)
        if stages and stages[-1][0] == size:
            stages[-1][1] += 1
        else:
            stages.append([size, 1])
    return [tuple(stage) for stage in stages]


@contextlib.contextmanager
def progressive_resizing(model, schedule, epochs: int, full_size: int):
    """Within the block, `model`'s training step resizes each batch of images to the current
    stage's size (see the module docstring). TensorFlow backend; classifiers only.

    Args:
        model: a classifier whose input takes any height and width.
        schedule: (fraction, size) pairs (`check_schedule`); empty: nothing changes.
        epochs: the run's epochs, which the fractions refer to.
        full_size: the size of the data's images (the last stage's).

    Yields:
        A Keras callback that sets the size at the start of each epoch; pass it to `fit`.

    Raises:
        ValueError: the model has a fixed input size or per-pixel outputs, or the backend is not
            TensorFlow.
    """
    schedule = check_schedule(schedule)
    if not schedule:
        yield keras.callbacks.Callback()
        return
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is not None or shape[2] is not None:
        raise ValueError("Progressive resizing trains on several image sizes, so the model must "
                         "be built with input_shape=(None, None, channels). Received a model "
                         f"with input shape {shape}")
    if full_size is None:
        raise ValueError("Progressive resizing needs training images of a known size (a "
                         "pipeline that resizes them, e.g. `kerascnn.data.make_pipeline`).")
    if len(model.outputs[0].shape) != 2:
        raise ValueError("Progressive resizing supports classifiers (outputs (N, classes)). "
                         f"Received a model with output shape {tuple(model.outputs[0].shape)}")
    if keras.backend.backend() != "tensorflow":
        raise ValueError("Progressive resizing needs the TensorFlow backend. "
                         f"Received: backend={keras.backend.backend()!r}")
    import tensorflow as tf

    size = tf.Variable(size_at_epoch(schedule, 0, epochs, full_size), trainable=False,
                       dtype=tf.int32, name="progressive_size")
    inner = model.train_step

    def resize(images):
        return tf.cond(tf.shape(images)[1] == size,
                       lambda: images,
                       lambda: tf.image.resize(images, tf.stack([size, size]), "bilinear"))

    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        data = (resize(x), y) if sample_weight is None else (resize(x), y, sample_weight)
        return inner(data)

    class _SetSize(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            size.assign(size_at_epoch(schedule, epoch, epochs, full_size))

    with replaced_train_step(model, train_step):
        yield _SetSize()
