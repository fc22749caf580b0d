"""`train(model, train_data, val_data, recipe, out_dir)`: `model.fit` with what a long run needs.

What it adds to a plain `model.fit`:
- the recipe's optimizer, warm-up + cosine schedule, weight decay (not on BN or biases), label
  smoothing and BN momentum; auxiliary classifiers weighted by `recipe.aux_loss_weight`;
- `out_dir` with `best.keras` and `last.keras` checkpoints, a `BackupAndRestore` backup so that a
  killed run resumes from its last backup (at the end of an epoch, or every `backup_every_steps`
  steps), TensorBoard logs, `history.csv`, and `results.json` with the recipe and the final
  evaluation;
- TerminateOnNaN, and "precise BN" after training: the BN statistics are re-estimated as the
  plain average over training batches, so inference mode sees the statistics of the final
  weights instead of a lagging moving average;
- on TensorFlow, training-mode BatchNormalization through TensorFlow's fused kernel
  (`recipe.fused_bn`, see `kerascnn.training.fused_bn`): same values, a faster step;
- on a CPU, each batch split into parts that run side by side on the cores
  (`recipe.batch_splits`, see `kerascnn.training.split_batch`).

Everything else is Keras: `train` returns the History, callbacks can be added, and the model is
an ordinary Keras model afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import keras

from kerascnn.training.fused_bn import fused_batchnorm
from kerascnn.training.progressive import progressive_resizing
from kerascnn.training.recipe import Recipe, get_recipe
from kerascnn.training.split_batch import auto_batch_splits, check_batch_splits, split_batch_step
from kerascnn.training.time_limit import TimeLimit, check_time_limit, cosine_progress


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def cpu_threads() -> tuple[int, int]:
    """(inter-op, intra-op) TensorFlow thread counts for training small CNNs on a CPU: one
    inter-op thread per core and half as many intra-op threads (at least one).

    Measured on the 2-core machine this project is developed on (MobileNetV2 0.5 at 32x32, batch
    128, `train` with fused BN): 84 ms per step with (2, 1) against 101 ms with TensorFlow's
    default; the ops of such a small model are too small to split across cores, and a second
    inter-op thread overlaps independent ops instead (`benchmarks/training_step.py`,
    docs/training_step.md). Not measured on larger
    machines: there the rule keeps half the cores for intra-op work.
    """
    cores = os.cpu_count() or 1
    return cores, max(1, cores // 2)


def configure_for_hardware(recipe: Recipe | None = None, *, threads=None) -> dict:
    """Sets the global dtype policy the recipe asks for ("auto": mixed_float16 on a GPU) and,
    optionally, TensorFlow's CPU thread counts.

    Call it before building the model: a dtype policy applies to layers created afterwards, and
    thread counts can only be set before TensorFlow starts its runtime.

    Args:
        recipe: the training recipe (default: `Recipe()`).
        threads: None keeps TensorFlow's thread counts; (inter_op, intra_op) sets them; "cpu"
            sets `cpu_threads()` when there is no GPU. Where TensorFlow has already started
            (e.g. a model was built before), the counts cannot change; the returned
            "threads" is then None.

    Returns:
        {"gpu": bool, "mixed_precision": bool, "jit_compile": bool, "threads": (inter, intra) set
        or None}.
    """
    recipe = recipe or Recipe()
    gpu = has_gpu()
    mixed = gpu if recipe.mixed_precision == "auto" else bool(recipe.mixed_precision)
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    if threads == "cpu":
        threads = None if gpu else cpu_threads()
    elif threads is not None:
        if (not isinstance(threads, (tuple, list)) or len(threads) != 2
                or not all(isinstance(n, int) and n >= 1 for n in threads)):
            raise ValueError("`threads` must be None, 'cpu' or (inter_op, intra_op) positive "
                             f"integers. Received: threads={threads!r}")
        threads = tuple(threads)
    if threads is not None:
        import tensorflow as tf

        try:
            tf.config.threading.set_inter_op_parallelism_threads(threads[0])
            tf.config.threading.set_intra_op_parallelism_threads(threads[1])
        except RuntimeError:  # the runtime has started: the counts are fixed for this process
            threads = None
    return {"gpu": gpu, "mixed_precision": mixed, "jit_compile": _use_jit(recipe, gpu),
            "threads": threads}


def _use_jit(recipe: Recipe, gpu: bool | None = None) -> bool:
    """XLA compilation as the recipe asks ("auto": on a GPU)."""
    if recipe.jit_compile != "auto":
        return bool(recipe.jit_compile)
    return has_gpu() if gpu is None else gpu


def get_strategy(kind: str = "auto"):
    """A tf.distribute strategy.

    Args:
        kind: "auto" (MirroredStrategy over all GPUs when there are several, else the default
            strategy), "mirrored" (all local GPUs, or the CPU devices when there is no GPU),
            "multi_worker" (MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG) or
            "default".

    Create the strategy first thing in the program, then build and compile the model under
    `strategy.scope()`: MultiWorkerMirroredStrategy configures collective ops, which TensorFlow
    allows only before it has run anything.

    Raises:
        ValueError: unknown kind, or "multi_worker" without TF_CONFIG.
    """
    import tensorflow as tf

    if kind == "auto":
        kind = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' reads the cluster from the TF_CONFIG "
                             "environment variable, which is not set.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError("`kind` must be one of ['auto', 'default', 'mirrored', 'multi_worker']. "
                     f"Received: kind={kind!r}")


def _batchnorm_layers(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def set_bn_momentum(model, momentum: float) -> int:
    """Sets the momentum of every BatchNormalization layer; returns how many there are."""
    layers = _batchnorm_layers(model)
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def precise_batchnorm(model, dataset, steps: int = 100) -> int:
    """Re-estimates BN moving statistics as the average over `steps` batches of `dataset`.

    Each batch runs through the model in training mode with BN momentum 0, so every BN layer's
    moving statistics become that batch's; their plain average over the `steps` batches is then
    assigned (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021, call this precise BN). Only
    BN statistics change; weights do not. On TensorFlow the forward pass is a compiled
    `tf.function` with the fused BN kernel.

    Returns:
        The number of batches used.
    """
    import numpy as np

    layers = _batchnorm_layers(model)
    if not layers or steps <= 0:
        return 0
    saved = [(layer.momentum, layer.moving_mean.numpy(), layer.moving_variance.numpy())
             for layer in layers]
    sums = [[np.zeros_like(mean), np.zeros_like(variance)] for _, mean, variance in saved]
    used = 0
    try:
        for layer in layers:
            layer.momentum = 0.0
        with fused_batchnorm(model):
            forward = lambda x: model(x, training=True)  # noqa: E731
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                forward = tf.function(forward)
            for used, batch in enumerate(dataset.take(steps), start=1):
                forward(batch[0] if isinstance(batch, (tuple, list)) else batch)
                for total, layer in zip(sums, layers):
                    total[0] += layer.moving_mean.numpy()
                    total[1] += layer.moving_variance.numpy()
    except BaseException:
        for layer, (_, mean, variance) in zip(layers, saved):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        raise
    finally:
        for layer, (momentum, _, _) in zip(layers, saved):
            layer.momentum = momentum
    for layer, (mean, variance), (_, old_mean, old_variance) in zip(layers, sums, saved):
        layer.moving_mean.assign(mean / used if used else old_mean)
        layer.moving_variance.assign(variance / used if used else old_variance)
    return used


def _schedule_steps(recipe: Recipe, steps_per_epoch: int) -> tuple[int, int]:
    """(total, warm-up) steps of the recipe's schedule."""
    total = max(1, int(recipe.epochs * steps_per_epoch))
    return total, max(0, min(total - 1, int(recipe.warmup_epochs * steps_per_epoch)))


def _optimizer(recipe: Recipe, steps_per_epoch: int, timed=False):
    total, warmup = _schedule_steps(recipe, steps_per_epoch)
    if timed:  # a TimeLimit callback sets the rate before each step
        schedule = cosine_progress(recipe.learning_rate, 0, warmup_steps=warmup,
                                   total_steps=total)
    elif warmup > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=recipe.learning_rate, warmup_steps=warmup)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, decay_steps=total)
    wd = recipe.weight_decay or None
    if recipe.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=recipe.momentum, nesterov=True,
                                         weight_decay=wd)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay)
    if wd:
        # BN parameters, biases and fake-quant ranges (learned QAT ranges) are not decayed.
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "range_min",
                                                       "range_max"])
    return optimizer


def _with_targets(dataset, num_classes: int, outputs: int, sparse_rank: int = 1):
    """One-hot labels (label smoothing needs them), repeated for auxiliary outputs.

    Labels of rank `sparse_rank` are class indices: (B,) for a classifier, (B, H, W) masks for a
    segmentation model; labels with one more axis are already one-hot (MixUp/CutMix).
    """
    def convert(x, y):
        if y.shape.rank == sparse_rank:
            y = keras.ops.one_hot(keras.ops.cast(y, "int32"), num_classes)
        return (x, y) if outputs == 1 else (x, tuple(y for _ in range(outputs)))

    return dataset.map(convert)


def _count_steps(dataset):
    import tensorflow as tf

    n = int(dataset.cardinality())
    if n == tf.data.INFINITE_CARDINALITY:
        raise ValueError("`train_data` is infinite: pass `steps_per_epoch`.")
    if n == tf.data.UNKNOWN_CARDINALITY:
        n = sum(1 for _ in dataset)
    return n


def save_atomically(model, path) -> None:
    """`model.save(path)` through a temporary file in the same directory and an atomic rename,
    so that a crash or kill mid-write never leaves a truncated checkpoint in place of a good one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResumingBackup(keras.callbacks.BackupAndRestore):
    """Keras's `BackupAndRestore` with the epoch of a resumed run's first backups fixed.

    Keras 3 (3.15) restores the epoch a run was killed in, but its callback counts epochs from 0
    again until the first epoch of the resumed run ends. A backup taken in that epoch (every
    `save_freq` steps) records epoch 0, so a second kill there restarted the run from epoch 0,
    with trained weights and an optimizer step count past the schedule's end. This callback
    starts counting at the restored epoch.

    With `save_freq` a step count, Keras also takes no backup at the end of an epoch: the last
    one recorded the finished epoch itself, so a run killed early in the next epoch ran the
    finished epoch again. This callback backs up at every epoch's end as well.
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._current_epoch = getattr(self.model, "_initial_epoch", None) or 0

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)  # counts the epoch as done (and saves if per epoch)
        if self.save_freq != "epoch":
            self._save_model()
            self._batches_seen_since_last_saving = 0


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the model after each epoch (or only when `monitor` improves), atomically.

    Keras's ModelCheckpoint writes the .keras archive in place; a run killed during that write
    would leave a corrupt file where the previous good checkpoint was.
    """

    def __init__(self, filepath, monitor=None, mode="max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be 'max' or 'min'. Received: mode={mode!r}")
        self.filepath, self.monitor, self.mode = Path(filepath), monitor, mode
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None:
                return
            better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
            if not better:
                return
            self.best = value
        save_atomically(self.model, self.filepath)


def _write_json_atomically(path: Path, data: dict):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


RUN_OUTPUTS = ("results.json", "best.keras", "last.keras")  # what a new run must not replace


def _clear_finished_run(out: Path, overwrite: bool):
    """Before a new (not resumed) run in `out`: refuses to train over an earlier run's
    checkpoints and results or, with `overwrite`, deletes them and its history, so that none of
    them is mistaken for the new run's (the history would have been appended to). A history
    alone is what a run killed before its first epoch ended leaves: it is deleted."""
    kept = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if kept and not overwrite:
        raise FileExistsError(
            f"{out} holds an earlier run ({', '.join(kept)}) and no backup to resume from; "
            "training there would overwrite it. Give another out_dir, or pass overwrite=True "
            "(command line: --overwrite) to replace that run.")
    for name in (*RUN_OUTPUTS, "history.csv"):
        (out / name).unlink(missing_ok=True)


def _is_segmentation(model) -> bool:
    """A model whose (first) output is per pixel, (N, H, W, classes)."""
    return len(model.outputs[0].shape) == 4


def _compile(model, recipe, steps, outputs, timed=False):
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)
    accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")  # per pixel for segmentation
    main_metrics = [accuracy]
    if _is_segmentation(model):
        # Targets reach the metrics one-hot (see _with_targets), so both sides take an argmax.
        main_metrics.append(keras.metrics.MeanIoU(int(model.outputs[0].shape[-1]), name="mean_iou",
                                                  sparse_y_true=False, sparse_y_pred=False))
    model.compile(
        optimizer=_optimizer(recipe, steps, timed),
        loss=loss if outputs == 1 else [loss] * outputs,
        loss_weights=None if outputs == 1 else [1.0] + [recipe.aux_loss_weight] * (outputs - 1),
        metrics=main_metrics if outputs == 1 else [main_metrics] + [[]] * (outputs - 1),
        jit_compile=_use_jit(recipe))


def _build_optimizer(model, scope):
    """Creates the optimizer's variables (momentum slots and the like) before `fit`.

    Without a distribution strategy, Keras on TensorFlow leaves that to the first trace of the
    training step, and a `tf.function` that creates variables is traced a second time; the
    second trace of a flip-averaged QAT model took 12 s on the 2-core CPU (docs/main_job.md).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        with scope():
            optimizer.build(model.trainable_variables)


def _in_multi_worker_mode(strategy) -> bool:
    import tensorflow as tf

    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


@contextlib.contextmanager
def multi_worker_compat(model):
    """Lets `fit` and `evaluate` of a model built under MultiWorkerMirroredStrategy run on several
    workers; elsewhere it does nothing. `train` uses it; wrap your own `fit`/`evaluate` calls in it.

    Keras 3 (3.15) fails there in two places (keras-team/keras#20585, tensorflow/tensorflow#72388,
    both open), and this works around both for the duration of the block, on this model only:
    - before the first step, `_maybe_symbolic_build` passes the whole distributed batch (a tuple
      of PerReplica values) to `strategy.reduce`, which takes a single value and fails with
      "Attempt to convert a value (PerReplica...)". The batch is only used for its shapes, so the
      first local replica's part is used instead;
    - after every step, the logs are reduced across workers with `strategy.reduce("MEAN", v,
      axis=0)`, which fails for scalars ("Invalid reduction dimension 0"). The steps return
      each scalar as a one-element vector instead, so the reduction is the mean over replicas,
      a scalar again.
    Gradients, weights and metric updates are untouched: they go through Keras' and
    TensorFlow's own cross-worker reduction.
    """
    import tensorflow as tf

    strategy = getattr(model, "_distribute_strategy", None)
    if not _in_multi_worker_mode(strategy):
        yield
        return
    symbolic_build = model._maybe_symbolic_build

    def first_replica(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def build_from_first_replica(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(first_replica, next(batches))
                break
        return symbolic_build(data_batch=data_batch)

    def scalars_as_vectors(step):
        def step_with_vector_logs(data):
            return tf.nest.map_structure(
                lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, step(data))
        return step_with_vector_logs

    replaced = ("_maybe_symbolic_build", "train_step", "test_step")
    own = {name: vars(model)[name] for name in replaced if name in vars(model)}
    model._maybe_symbolic_build = build_from_first_replica
    model.train_step = scalars_as_vectors(model.train_step)
    model.test_step = scalars_as_vectors(model.test_step)
    model.train_function = model.test_function = None  # re-traced with the steps above
    try:
        yield
    finally:
        for name in replaced:
            delattr(model, name)
            if name in own:
                setattr(model, name, own[name])
        model.train_function = model.test_function = None


def _first_input_spec(train_data):
    import tensorflow as tf

    spec = train_data.element_spec
    return tf.nest.flatten(spec[0] if isinstance(spec, (tuple, list)) else spec)[0]


def _image_size(train_data) -> int | None:
    """The height of the training images (None when unknown or not images)."""
    spec = _first_input_spec(train_data)
    return spec.shape[1] if spec.shape.rank == 4 else None


def _batch_splits(recipe: Recipe, train_data, strategy) -> int:
    """The parts each training batch is split into (`recipe.batch_splits`)."""
    first = _first_input_spec(train_data)
    batch = first.shape[0] if first.shape.rank else None
    if recipe.batch_splits == "auto":
        replicas = getattr(strategy, "num_replicas_in_sync", 1) if strategy is not None else 1
        if replicas > 1:
            return 1
        return auto_batch_splits(batch, gpu=has_gpu())
    return check_batch_splits(recipe.batch_splits, batch)


def train(model, train_data, val_data=None, recipe: Recipe | str = "default", *, out_dir=None,
          callbacks=(), steps_per_epoch=None, backup_every_steps=None, verbose="auto",
          compile_model=True, time_limit=None, overwrite=False):
    """Trains a classifier or segmentation model with a recipe, checkpoints, resumable backups and logs.

    Args:
        model: a Keras classifier (one output, or GoogLeNet-style main + auxiliary outputs whose
            layers are named `predictions` and `aux{k}_predictions`), or a segmentation model
            with output (N, H, W, classes); segmentation models get a "mean_iou" metric
            (`keras.metrics.MeanIoU`) besides the per-pixel "accuracy", and checkpoints keep the
            best validation mean IoU.
        train_data: a batched tf.data.Dataset of (images, labels); labels are class indices or
            one-hot (from mixup/cutmix), or (B, H, W) class masks for segmentation.
            `kerascnn.data.make_pipeline` / `make_segmentation_pipeline` make one.
        val_data: the same for validation, or None.
        recipe: a `Recipe` or a name from `kerascnn.training.RECIPES`.
        out_dir: run directory for checkpoints, backup and logs (None: no files are written and
            no resumption is possible). Under MultiWorkerMirroredStrategy give every worker the
            same out_dir: the chief writes to it and each other worker to its own
            `out_dir/worker-{task_id}`, so that after a restart every worker restores its own
            backup of the same step (a worker without a backup would start from its initial
            weights while the others resume).
        callbacks: extra Keras callbacks.
        steps_per_epoch: batches per epoch (default: the dataset's length).
        backup_every_steps: also back up every N steps (besides the end of each epoch), so
            that a run killed mid-epoch loses at most N steps of training. Keras (3.15) restores
            the weights and optimizer state of the last backup but starts the interrupted epoch
            again at its first batch: that epoch runs its steps before the backup a second time,
            and the learning-rate schedule, which counts optimizer steps, ends that many steps
            early (the last ones run at the final learning rate).
        verbose: passed to `model.fit` (the progress bar).
        compile_model: compile with the recipe (False: keep the caller's compilation).
        time_limit: seconds of wall time the training (`fit`, validation included) may take, or
            None. Training stops when they are spent or the recipe's epochs are done, whichever
            comes first, and the learning rate's cosine decay follows whichever of the two is
            further along (`kerascnn.training.time_limit`), so a run ends annealed on a slower
            or faster machine alike. Precise BN and the final evaluation come after it. With
            `compile_model=False` only the stop applies. TensorFlow backend only. On resumption
            the time counts from the new call.
        overwrite: a new run may replace an earlier one in `out_dir` (its checkpoints, history
            and results are deleted first). Without it, `out_dir` must hold no earlier run's
            checkpoints or results, unless it holds a backup: then the run resumes from it.

    Returns:
        The Keras History; `history.results` holds the final evaluation (also in results.json)
        and, with a time limit, `time_limit_s`, `stopped_at_step` (None: the epochs ended
        first), `steps_trained` and `epochs_trained` (a fraction when stopped mid-epoch);
        `phase_s` gives the seconds of `fit` (validation included), precise BN and the final
        evaluation.

    Raises:
        ValueError: a bad recipe, data or time limit.
        FileExistsError: `out_dir` holds a finished run and `overwrite` is False.
    """
    recipe = get_recipe(recipe)
    time_limit = check_time_limit(time_limit)
    if time_limit is not None and keras.backend.backend() != "tensorflow":
        raise ValueError("`time_limit` needs the TensorFlow backend (the other trainers do not "
                         "see a learning rate changed between steps). Received: time_limit="
                         f"{time_limit!r} with backend {keras.backend.backend()!r}")
    steps = steps_per_epoch or _count_steps(train_data)
    num_classes = int(model.outputs[0].shape[-1])
    outputs = len(model.outputs)
    sparse_rank = len(model.outputs[0].shape) - 1  # rank of class-index labels: (B,) or (B, H, W)
    if recipe.bn_momentum is not None:
        set_bn_momentum(model, recipe.bn_momentum)
    # A model built under a tf.distribute strategy must be compiled under it too.
    strategy = getattr(model, "distribute_strategy", None)
    out = Path(out_dir) if out_dir is not None else None
    if (out is not None and _in_multi_worker_mode(strategy)
            and not strategy.extended.should_checkpoint):  # not the chief
        out = out / f"worker-{strategy.cluster_resolver.task_id}"
    resuming = out is not None and (out / "backup").exists()
    if out is not None and not resuming:
        _clear_finished_run(out, overwrite)

    def scope():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    timer = None
    if time_limit is not None:
        total, warmup = _schedule_steps(recipe, steps)
        timer = TimeLimit(time_limit, recipe.learning_rate if compile_model else None,
                          warmup_steps=warmup, total_steps=total)
    if compile_model:
        with scope():
            _compile(model, recipe, steps, outputs, timed=timer is not None)
    _build_optimizer(model, scope)
    train_targets = _with_targets(train_data, num_classes, outputs, sparse_rank)
    if steps_per_epoch is None:
        # One iterator for the whole run. Given a finite dataset, Keras creates a new iterator at
        # every epoch, and on the 2-core CPU that sometimes stalled an epoch's first step for
        # 10-40 s (docs/main_job.md); repeated, each pass still reshuffles and re-draws the
        # augmentation, and an epoch is still one pass.
        train_targets = train_targets.repeat()
        steps_per_epoch = steps
    val_targets = (_with_targets(val_data, num_classes, outputs, sparse_rank)
                   if val_data is not None else None)

    all_callbacks = [keras.callbacks.TerminateOnNaN()]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        metric = "mean_iou" if _is_segmentation(model) else "accuracy"
        monitor = f"val_{metric}" if val_data is not None else metric
        if outputs > 1:
            main = "predictions" if metric == "accuracy" else model.output_names[0]
            monitor = monitor.replace(metric, f"{main}_{metric}")
        all_callbacks += [
            # Two generations of backup: a kill during the write leaves a corrupt latest file,
            # and Keras then restores the previous one.
            ResumingBackup(str(out / "backup"), save_freq=backup_every_steps or "epoch",
                           double_checkpoint=True),
            AtomicCheckpoint(out / "best.keras", monitor=monitor),
            AtomicCheckpoint(out / "last.keras"),
            # A resumed run adds to its history; a new one starts it.
            keras.callbacks.CSVLogger(str(out / "history.csv"), append=resuming),
            keras.callbacks.TensorBoard(str(out / "logs")),
        ]
    all_callbacks += list(callbacks)
    if timer is not None:
        all_callbacks.append(timer)
    parts = _batch_splits(recipe, train_data, strategy)
    with (split_batch_step(model, parts),
          progressive_resizing(model, recipe.progressive_resizing, recipe.epochs,
                               _image_size(train_data)) as set_size,
          multi_worker_compat(model)):
        all_callbacks.insert(0, set_size)
        with fused_batchnorm(model, enabled=recipe.fused_bn is not False) as fused:
            if recipe.fused_bn is True and not fused and _batchnorm_layers(model):
                raise ValueError("`fused_bn=True` needs the TensorFlow backend and "
                                 "BatchNormalization layers over the last axis of 4-D inputs; "
                                 "this model has none. Use fused_bn='auto' or False.")
            phase_s, started = {}, time.perf_counter()
            history = model.fit(train_targets, validation_data=val_targets, epochs=recipe.epochs,
                                steps_per_epoch=steps_per_epoch, callbacks=all_callbacks,
                                verbose=verbose,
                                shuffle=False)  # the pipeline shuffles; Keras warns otherwise
            phase_s["fit"] = time.perf_counter() - started
        results = {"epochs": recipe.epochs, "recipe": dataclasses.asdict(recipe),
                   "batch_splits": parts}
        if timer is not None:
            trained = timer.steps_run
            results.update(time_limit_s=time_limit, stopped_at_step=timer.stopped_at_step,
                           steps_trained=trained, epochs_trained=round(trained / steps_per_epoch, 3),
                           fit_s=round(timer.elapsed_s, 1))
        if recipe.precise_bn_steps:
            started = time.perf_counter()
            with scope():
                results["precise_bn_batches"] = precise_batchnorm(model, train_data,
                                                                  recipe.precise_bn_steps)
            phase_s["precise_bn"] = time.perf_counter() - started
        if val_targets is not None:
            started = time.perf_counter()
            results.update({k: float(v) for k, v in model.evaluate(
                val_targets, verbose=0, return_dict=True).items()})
            phase_s["evaluation"] = time.perf_counter() - started
        results["phase_s"] = {k: round(v, 1) for k, v in phase_s.items()}
    if out is not None:
        save_atomically(model, out / "last.keras")  # with the re-estimated BN statistics
        _write_json_atomically(out / "results.json", results)
    history.results = results
    return history


def time_training_step(model, train_data, recipe: Recipe | str = "default", *, steps: int = 20,
                       warmup_steps: int = 5) -> float:
    """Seconds per training step of `model` on `train_data` with `recipe`, on this machine.

    Trains a copy of the model (`keras.models.clone_model`: same architecture, fresh weights)
    for `warmup_steps + steps` steps with `train` and times the last `steps` from a batch
    callback, so that tracing and the start of `fit` are left out. The model itself is not
    touched. Use it to size a run to a time budget (`kerascnn demo --time-budget`).

    Raises:
        ValueError: `steps` < 1 or `warmup_steps` < 1 (the first step includes tracing).
    """
    for name, value in (("steps", steps), ("warmup_steps", warmup_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    recipe = dataclasses.replace(get_recipe(recipe), epochs=1, precise_bn_steps=0)
    strategy = getattr(model, "distribute_strategy", None)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        copy = keras.models.clone_model(model)
    marks = {}

    class _Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == warmup_steps:
                marks["start"] = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch == warmup_steps + steps - 1:
                marks["end"] = time.perf_counter()

    # Repeated, so that a short data set does not run out within the timed steps.
    train(copy, train_data.repeat(), None, recipe, steps_per_epoch=warmup_steps + steps,
          callbacks=[_Timer()], verbose=0)
    return (marks["end"] - marks["start"]) / steps
