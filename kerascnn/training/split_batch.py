"""Split-batch training steps: each batch runs as several independent parts in one step.

On a CPU with few cores, the ops of a small CNN are too small for TensorFlow to split one op
across cores well (`cpu_threads` gives each op one thread), and a plain CNN's graph is one chain,
so only one op runs at a time for most of a step. `split_batch_step(model, parts)` makes the step
compute the forward and backward pass of each part of the batch as its own branch of the graph;
TensorFlow's inter-op threads then run the branches side by side, and the part gradients meet only
where they are summed for the single optimizer update. On this project's 2-core CPU a MobileNetV2
(alpha 0.5) step at 64x64 runs 1.43x faster with two parts; at 32x32, where each op is smaller,
the benchmark shows no gain (`benchmarks/training_step.py`, docs/training_step.md). `tf.distribute.MirroredStrategy` over two CPU devices does the same in
principle but was measured slower than one process (docs/main_job.md): its per-replica
functions and all-reduce cost more than they gain on a 2-core machine.

What the update computes: the loss is the mean over the whole batch (the parts are equal, so the
mean of the parts' means), and its gradient is taken once, so weights move exactly as in an
unsplit step for a model without batch statistics. BatchNormalization layers normalise each part
with that part's statistics ("ghost batch norm", Hoffer et al. 2017, https://arxiv.org/abs/1705.08741)
and update their moving statistics once per part, in order. Metrics see the whole batch.
"""

from __future__ import annotations

import contextlib
import os

import keras


def auto_batch_splits(batch_size: int | None, *, gpu: bool, backend: str | None = None) -> int:
    """The parts a batch is split into when a recipe says `batch_splits="auto"`.

    Two on a CPU-only TensorFlow machine with at least two cores, when the batch is a known
    multiple of two with at least 32 images a part (smaller parts make BN statistics noisy);
    one (no split) otherwise. Measured on a 2-core machine only; larger CPUs split each op across
    their intra-op threads instead (`cpu_threads`).
    """
    backend = backend or keras.backend.backend()
    if gpu or backend != "tensorflow" or (os.cpu_count() or 1) < 2:
        return 1
    if batch_size is None or batch_size % 2 or batch_size // 2 < 32:
        return 1
    return 2


def check_batch_splits(parts, batch_size: int | None) -> int:
    """Validates an explicit part count against the training data's batch size.

    Raises:
        ValueError: `parts` is not a positive integer, or the batch size is unknown (the
            pipeline keeps a smaller last batch: use `drop_remainder=True`) or not a multiple
            of `parts`.
    """
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise ValueError("`batch_splits` must be 'auto' or a positive integer. "
                         f"Received: batch_splits={parts!r}")
    if parts == 1:
        return 1
    if batch_size is None:
        raise ValueError(f"`batch_splits={parts}` needs batches of a fixed size: the training "
                         "data's batch size is unknown (batch it with drop_remainder=True).")
    if batch_size % parts:
        raise ValueError(f"`batch_splits` must divide the batch size {batch_size}. "
                         f"Received: batch_splits={parts}")
    return parts


@contextlib.contextmanager
def split_batch_step(model, parts: int):
    """Within the block, `model`'s training step splits each batch into `parts` equal parts (see
    the module docstring). `parts=1` leaves the model alone. TensorFlow backend only.

    The batch size must be a multiple of `parts` (`check_batch_splits`). The model's own
    `train_step` is restored on exit, and the compiled train function is dropped on entry and
    exit so that `fit` traces the step in force.

    Raises:
        ValueError: `parts` > 1 on a backend other than TensorFlow.
    """
    if parts == 1:
        yield
        return
    if keras.backend.backend() != "tensorflow":
        raise ValueError("`batch_splits` > 1 needs the TensorFlow backend. "
                         f"Received: backend={keras.backend.backend()!r}, batch_splits={parts}")
    import tensorflow as tf
    from keras.src import tree
    from keras.src.losses import loss as loss_module

    def split(structure):
        if structure is None:
            return [None] * parts
        pieces = [tf.split(leaf, parts) for leaf in tree.flatten(structure)]
        return [tree.pack_sequence_as(structure, [p[i] for p in pieces]) for i in range(parts)]

    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        xs, ys, weights = split(x), split(y), split(sample_weight)
        with tf.GradientTape() as tape:
            predictions, losses = [], []
            for xi, yi, wi in zip(xs, ys, weights):
                yi_pred = model(xi, training=True) if model._call_has_training_arg else model(xi)
                predictions.append(yi_pred)
                losses.append(model._compute_loss(x=xi, y=yi, y_pred=yi_pred, sample_weight=wi,
                                                  training=True))
            loss = tf.add_n(losses) / parts
            model._loss_tracker.update_state(
                loss_module.unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(tree.flatten(x)[0])[0])
            if model.optimizer is not None:
                loss = model.optimizer.scale_loss(loss)
        weights_ = model.trainable_weights
        if weights_:
            model.optimizer.apply_gradients(zip(tape.gradient(loss, weights_), weights_))
        y_pred = tree.map_structure(lambda *p: tf.concat(p, 0), *predictions)
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    with replaced_train_step(model, train_step):
        yield


@contextlib.contextmanager
def replaced_train_step(model, train_step):
    """Within the block, `model.train_step` is `train_step`; on exit the step the model had
    before (its own, or an instance attribute set by an enclosing block) is back. The compiled
    train function is dropped on entry and exit so that `fit` traces the step in force."""
    own = vars(model).get("train_step")
    model.train_step = train_step
    model.train_function = None
    try:
        yield
    finally:
        del model.train_step
        if own is not None:
            model.train_step = own
        model.train_function = None
