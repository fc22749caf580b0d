"""The main job: train a model, fine-tune it with QAT, export a phone bundle, and show the result.

`kerascnn demo` (and `run_demo`) does, on the built-in default (MobileNetV2 on Fashion-MNIST from
the offline IDX files):

1. train the float model with the data set's recipe (`kerascnn.training.train`);
2. fine-tune a quantization-aware copy (`kerascnn.quantization.qat`, native engine);
3. export the bundle the Android demo loads (`kerascnn.export.export`): model.keras, float32,
   float16, dynamic-range int8, post-training full int8 and QAT int8 TFLite files, labels,
   metadata and a report;
4. print a table: accuracy on the whole test set, size and latency of every variant.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from pathlib import Path

DEFAULT_MODEL = "mobilenet_v2"
DEFAULT_DATA = "fashion_mnist"
FORMATS = ("keras", "tflite_float32", "tflite_float16", "tflite_dynamic_int8", "tflite_int8",
           "tflite_qat_int8")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo trains; the defaults are the README's main job.

    Attributes:
        model: registry name.
        data: data source (see `kerascnn.data.load`).
        epochs: float training epochs; with a time budget, the most (the clock usually stops
            the training earlier: 11-13 epochs of the default fit the budget on the 2-core CPU).
        qat_epochs: QAT fine-tuning epochs.
        input_size: square input size.
        alpha: width multiplier (for models that take one; None: the model's default).
        output_stride: for models that take one (MobileNets, ResNets): the input-to-last-feature
            stride; 16 turns the last stride into a dilation, so a 32x32 input ends on 2x2 instead
            of 1x1 feature maps (None: the model's default of 32).
        batch_size: training batch size.
        learning_rate: peak learning rate of the float training (None: the recipe's).
        label_smoothing: cross-entropy label smoothing of the float training (None: the
            recipe's, 0.1 for Fashion-MNIST).
        steps_per_epoch: batches per float epoch (None: the whole training set); for smoke runs.
        qat_steps: batches per QAT epoch (None: the whole training set); QAT from a trained
            model needs a fraction of an epoch.
        qat_learning_rate: peak AdamW learning rate of the QAT fine-tuning (None: `qat`'s
            default, 1e-4). The demo's 1e-5: from a float model trained to convergence, whose
            post-training int8 file already matches it, every QAT step moves the weights away
            from that optimum. On one of three trained default models 50 steps at 1e-4 cost
            0.2-0.33 point of test accuracy (four draws), on the other two nothing; at 1e-5 no
            draw on the three moved it by more than 0.08 (docs/main_job.md).
        eval_samples: test images used for the accuracy table (None: the whole test set).
        out: bundle directory (default: export/bundles/<model>).
        run_dir: training run directory (checkpoints, logs) or None for none. A run killed
            part-way resumes from it; one that finished there is not trained over unless
            `overwrite_run_dir` (`kerascnn.training.train`'s `overwrite`).
        overwrite_run_dir: replace a finished run in `run_dir`.
        latency_runs: timed TFLite invocations per variant and thread count.
        seed: data-order and augmentation seed.
        time_budget: minutes the whole job may take on this machine (None: no limit). Before
            training, the demo times a few training steps on a copy of the model, sets aside
            the time of QAT and export (`plan_epochs`), and trains with the rest as a time
            limit (`train(..., time_limit=...)`): the learning rate anneals over that time and
            training stops when it is spent, so the job keeps its promise on a slower machine,
            or one whose speed changes during the run, at the cost of some accuracy. With
            progressive resizing (laid out over epochs) or when not even one epoch would fit,
            it trains the whole epochs that fit instead (at least one). The default, 14,
            leaves a minute of the 15 for start-up and for the phases after the clock-stopped
            training running slow (once a minute slower than usual in eight runs,
            docs/main_job.md).
        progressive_resizing: (fraction, size) pairs of the float training's progressive
            resizing (`kerascnn.training.progressive`): epochs before `fraction` of the run
            train at `size`, the rest at `input_size`. Empty: every epoch at `input_size`.
        flip_average: "auto", True or False: export a model that averages its prediction over
            each image and its mirror image (`kerascnn.layers.flip_averaged`; two passes per
            image in one TFLite invocation). QAT fine-tunes that model. "auto": on when the
            recipe trains with horizontal flips (Fashion-MNIST's does; digits would not).
    """

    model: str = DEFAULT_MODEL
    data: str = DEFAULT_DATA
    epochs: int = 30
    qat_epochs: int = 1
    input_size: int = 56
    alpha: float | None = 0.5
    output_stride: int | None = None
    batch_size: int = 128
    learning_rate: float | None = None
    label_smoothing: float | None = None
    steps_per_epoch: int | None = None
    qat_steps: int | None = 50
    qat_learning_rate: float | None = 1e-5
    eval_samples: int | None = None
    out: str | None = None
    run_dir: str | None = None
    overwrite_run_dir: bool = False
    latency_runs: int = 50
    seed: int = 0
    time_budget: float | None = 14.0
    progressive_resizing: tuple = ()
    flip_average: str | bool = "auto"

    def __post_init__(self):
        positive = ("epochs", "input_size", "batch_size", "steps_per_epoch", "qat_steps",
                    "eval_samples")
        for name in positive + ("qat_epochs", "latency_runs"):
            value = getattr(self, name)
            if value is None and name not in ("epochs", "input_size", "batch_size", "qat_epochs",
                                              "latency_runs"):
                continue
            low = 1 if name in positive else 0
            if not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
        if self.flip_average not in ("auto", True, False):
            raise ValueError("`flip_average` must be 'auto', True or False. "
                             f"Received: flip_average={self.flip_average!r}")
        if not isinstance(self.overwrite_run_dir, bool):
            raise ValueError("`overwrite_run_dir` must be True or False. "
                             f"Received: overwrite_run_dir={self.overwrite_run_dir!r}")
        rate = self.qat_learning_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not 0 < rate < 1):
            raise ValueError("`qat_learning_rate` must be a number between 0 and 1 (exclusive) "
                             f"or None. Received: qat_learning_rate={rate!r}")
        budget = self.time_budget
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not budget > 0):
            raise ValueError("`time_budget` must be a positive number of minutes or None. "
                             f"Received: time_budget={budget!r}")


# What the stages after the float training cost, in training steps of the same model (measured
# on two 2-core machines whose step times differ 2x, docs/main_job.md "Time budget"): a QAT
# step, tracing and calibration included, costs about 3.2 float steps at 32x32 and 3.6 at 56x56
# (flip-averaged QAT steps count twice: 357 steps' time for 50 of them in the nineteenth
# session's run; 4.7-5.1 before the QAT step was traced once and calibration traced), the
# export about 230-300 steps at 32x32 and 460 at 56x56, and what the float training does
# after its clock stops (its last validation, precise BN, the test set's one-pass score) about
# 160 at 56x56. Forward-only evaluation batches cost about a third of a training step. The
# machines changed speed between and within runs: the same step timed 98, 115 and 140 ms in
# three runs, and whole runs went 0-17 % slower per step than the 20 steps timed before them,
# once up to 55 % (98 ms timed, epochs at 106-149 ms per step, slowest at the end).
# STEP_MARGIN covers the usual drift, not the worst. The values below round these up.
QAT_STEP_COST = 4.0
EXPORT_COST = 470
TRAIN_OVERHEAD_COST = 160
EVAL_BATCH_COST = 0.4
STEP_MARGIN = 1.15
# Test images scored after each float epoch, for the progress line only: all 10,000 took 4-5 s
# of each 55-60 s epoch of the default, these about 1 s; the table scores all of them once.
MONITOR_IMAGES = 2560


def plan_epochs(budget_s: float, spent_s: float, step_s: float, *, epochs: int,
                steps_per_epoch: int, eval_batches: int, qat_steps: int,
                schedule=(), stage_step_s=None, full_size: int | None = None) -> dict:
    """How many whole float epochs fit a time budget, given the measured seconds per step.

    Args:
        budget_s: seconds the whole job may take.
        spent_s: seconds already spent (loading, building, timing the step).
        step_s: seconds per float training step at the full input size on this machine
            (`time_training_step`).
        epochs: epochs asked for (the most the plan gives).
        steps_per_epoch, eval_batches: training steps and test batches per epoch.
        qat_steps: QAT fine-tuning steps in all (0: none).
        schedule: the run's progressive-resizing schedule, (fraction, size) pairs; the early
            epochs then cost `stage_step_s[size]` per step.
        stage_step_s: {size: seconds per training step at that size}.
        full_size: the input size, which the epochs after the schedule train at.

    Returns:
        {"epochs": whole epochs that fit with the step time raised by `STEP_MARGIN`, at least
        1 and at most `epochs`; "epoch_s" (the average epoch of that plan), "reserve_s" (QAT,
        export and fixed overheads), "estimate_s" (the whole job with that many epochs);
        "fits": whether even that estimate is within the budget; "train_s": the seconds left
        for a training stopped by the clock (`train(..., time_limit=...)`), and
        "epochs_in_time": the epochs expected in them at the timed step}.
    """
    from kerascnn.training.progressive import stage_epochs

    step_s *= STEP_MARGIN
    stage_step_s = {size: s * STEP_MARGIN for size, s in (stage_step_s or {}).items()}

    def training_s(n):
        return (sum(count * steps_per_epoch * stage_step_s.get(size, step_s)
                    for size, count in stage_epochs(schedule, n, full_size))
                + n * EVAL_BATCH_COST * eval_batches * step_s)

    reserve_s = step_s * (QAT_STEP_COST * qat_steps + EXPORT_COST + TRAIN_OVERHEAD_COST)
    chosen = 1
    for n in range(epochs, 0, -1):
        if spent_s + reserve_s + training_s(n) <= budget_s:
            chosen = n
            break
    estimate = spent_s + reserve_s + training_s(chosen)
    # The time a time-limited training may take: what the budget leaves after the reserve and
    # one more validation pass (a run stopped by the clock still validates its last epoch).
    train_s = budget_s - spent_s - reserve_s - EVAL_BATCH_COST * eval_batches * step_s
    return {"epochs": chosen, "epoch_s": round(training_s(chosen) / chosen, 1),
            "reserve_s": round(reserve_s, 1), "estimate_s": round(estimate, 1),
            "fits": estimate <= budget_s, "train_s": round(max(train_s, 0.0), 1),
            "epochs_in_time": round(max(train_s, 0.0) * STEP_MARGIN * chosen
                                    / training_s(chosen), 1)}


def _stage(index, total, text):
    print(f"\n[{index}/{total}] {text}", flush=True)


def _arrays(dataset, limit=None):
    import numpy as np

    xs, ys = [], []
    count = 0
    for x, y in dataset:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        count += len(xs[-1])
        if limit is not None and count >= limit:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (x, y) if limit is None else (x[:limit], y[:limit])


def run_demo(config: DemoConfig = DemoConfig(), verbose="auto") -> dict:
    """Runs the main job and returns its summary (also written to <out>/demo.json).

    Args:
        config: what to train and where to write.
        verbose: Keras progress-bar setting for training.

    Returns:
        A dict with the accuracies, sizes, latencies, timings and the bundle path.

    Raises:
        ValueError: unknown model or data source, or bad settings (named in the message).
    """
    import keras
    import numpy as np

    from kerascnn import build, model_info
    from kerascnn.data import load, pipeline_for
    from kerascnn.data.fashion_mnist import FASHION_MNIST_CLASSES
    from kerascnn.export import export
    from kerascnn.export.bundle import classifier_only
    from kerascnn.layers import flip_averaged
    from kerascnn.quantization import qat
    from kerascnn.training import configure_for_hardware, get_recipe, train

    started = time.perf_counter()
    info = model_info(config.model)  # raises with did-you-mean for an unknown name
    recipe_name = "mobilenet_fashion_mnist" if config.data == DEFAULT_DATA else "default"
    overrides = {"epochs": config.epochs, "batch_size": config.batch_size}
    for name in ("learning_rate", "label_smoothing"):
        if getattr(config, name) is not None:
            overrides[name] = getattr(config, name)
    if config.progressive_resizing:
        overrides["progressive_resizing"] = config.progressive_resizing
    recipe = get_recipe(recipe_name, **overrides)
    configure_for_hardware(recipe, threads="cpu")
    train_source, test_source = load(config.data, "train"), load(config.data, "test")
    class_names = list(getattr(train_source, "class_names", None) or [])
    if not class_names and config.data == DEFAULT_DATA:
        class_names = list(FASHION_MNIST_CLASSES)
    if not class_names:
        raise ValueError(f"The classes of data source {config.data!r} are unknown.")
    if config.input_size < info.min_input_size:
        raise ValueError(f"{config.model} needs an input of at least {info.min_input_size}x"
                         f"{info.min_input_size}. Received: input_size={config.input_size}")
    kwargs = {"input_shape": (config.input_size, config.input_size,
                              info.default_input_shape[-1]),
              "classes": len(class_names)}
    if config.alpha is not None and "alpha" in inspect.signature(info.builder).parameters:
        kwargs["alpha"] = config.alpha
    if (config.output_stride is not None
            and "output_stride" in inspect.signature(info.builder).parameters):
        kwargs["output_stride"] = config.output_stride
    model = build(config.model, **kwargs)
    flip = ("flip" in recipe.augment) if config.flip_average == "auto" else config.flip_average
    pipe = dict(batch_size=config.batch_size, seed=config.seed)
    train_data = pipeline_for(model, train_source, training=True, augment=recipe.augment, **pipe)
    calib_data = pipeline_for(model, train_source, training=False, **pipe)
    test_data = pipeline_for(model, test_source, training=False, **pipe)
    # Each epoch's progress line scores the first batches of the test set; the table all of it.
    monitor_data = test_data.take(-(-MONITOR_IMAGES // config.batch_size))
    out = Path(config.out or Path("export") / "bundles" / config.model)
    timings = {}
    plan = None
    # Progressive resizing trains a twin built for any input size (the step timing uses it too).
    twin = _any_size_twin(model, info, kwargs) if recipe.progressive_resizing else None
    time_limit = None
    if config.time_budget is not None and config.epochs > 1:
        plan = _fit_to_budget(config, model, twin, train_data, monitor_data, recipe, started,
                              qat_images=2 if flip else 1)
        if recipe.progressive_resizing or plan["epochs_in_time"] < 1:
            # Stages are laid out over the epochs, so those runs are cut to whole epochs.
            if plan["epochs"] < recipe.epochs:
                print(f"{plan['step_ms']:.0f} ms per training step here: {config.epochs} epochs "
                      f"would not fit {config.time_budget:g} minutes, training {plan['epochs']} "
                      f"(about {plan['estimate_s'] / 60:.1f} minutes in all). --time-budget 0 "
                      f"trains all {config.epochs}.", flush=True)
                recipe = dataclasses.replace(recipe, epochs=plan["epochs"])
        else:
            time_limit = plan["train_s"]

    what = f"{recipe.epochs} epoch{'s' if recipe.epochs != 1 else ''}"
    if time_limit is not None:
        what = (f"up to {what}, stopping after {time_limit / 60:.1f} minutes (about "
                f"{plan['epochs_in_time']:g} epochs at {plan['step_ms']:.0f} ms per step)")
    _stage(1, 4, f"Training {config.model} ({model.count_params():,} parameters) at "
                 f"{config.input_size}x{config.input_size} on {config.data} for {what}")
    t = time.perf_counter()
    trained = twin if twin is not None else model
    history = train(trained, train_data, monitor_data, recipe, out_dir=config.run_dir,
                    overwrite=config.overwrite_run_dir,
                    steps_per_epoch=config.steps_per_epoch, verbose=verbose,
                    time_limit=time_limit)
    epochs_trained = history.results.get("epochs_trained", recipe.epochs)
    if trained is not model:
        model.set_weights(trained.get_weights())  # the fixed-size model is the one exported
    # After precise BN, on the table's test images (GoogLeNet: its main output).
    test_x, test_y = _arrays(test_data, config.eval_samples)
    one_pass_accuracy = float(np.mean(
        classifier_only(model).predict(test_x, batch_size=256, verbose=0).argmax(-1) == test_y))
    timings["train_s"] = time.perf_counter() - t
    if "fit_s" in history.results:  # the clock-stopped part; the rest is set-up, precise BN, tests
        timings["fit_s"] = history.results["fit_s"]
    for phase, seconds in history.results.get("phase_s", {}).items():
        timings[f"train_{phase}_s"] = seconds  # fit (with its last validation), precise BN, ...
    if flip:  # same weights; each image and its mirror image, averaged
        model = flip_averaged(classifier_only(model))

    _stage(2, 4, f"Quantization-aware fine-tuning ({config.qat_epochs} epoch(s), native engine"
                 f"{', flip-averaged model' if flip else ''})")
    t = time.perf_counter()
    # No validation here: the export evaluates the QAT model on the test set.
    qat_model = qat(model, train_data, None, epochs=config.qat_epochs, recipe=recipe,
                    learning_rate=config.qat_learning_rate, steps_per_epoch=config.qat_steps,
                    verbose=verbose)
    timings["qat_s"] = time.perf_counter() - t
    qat_history = getattr(qat_model, "history", None)
    for phase, seconds in getattr(qat_history, "results", {}).get("phase_s", {}).items():
        timings[f"qat_{phase}_s"] = seconds  # the rewrite, calibration, fit

    _stage(3, 4, f"Exporting the bundle to {out}")
    t = time.perf_counter()
    calib_x, _ = _arrays(calib_data.take(4))
    report = export(model, out, formats=FORMATS, qat_model=qat_model,
                    representative_data=calib_x, labels=class_names,
                    validation_data=(test_x, test_y), validation_samples=len(test_x),
                    latency_runs=config.latency_runs, source_model=config.model)
    timings["export_s"] = time.perf_counter() - t
    # Keras accuracies on the same test images as the TFLite files.
    float_accuracy = report.get("keras_accuracy")
    qat_accuracy = report["tflite"]["tflite_qat_int8"]["agreement"].get("keras_accuracy")
    del history
    timings["total_s"] = time.perf_counter() - started

    summary = {
        "model": config.model, "data": config.data, "config": dataclasses.asdict(config),
        "parameters": int(model.count_params()), "test_samples": int(len(test_x)),
        "keras_float_accuracy": float_accuracy, "keras_qat_accuracy": qat_accuracy,
        "flip_average": bool(flip), "keras_float_one_pass_accuracy": one_pass_accuracy,
        "variants": {
            fmt: {"file": entry["file"], "size_bytes": entry["size_bytes"],
                  "accuracy": entry.get("agreement", {}).get("tflite_accuracy"),
                  "top1_agreement": entry.get("agreement", {}).get("top1_agreement"),
                  "latency_ms": entry.get("latency_ms", {})}
            for fmt, entry in report["tflite"].items()},
        "epochs_trained": epochs_trained, "epochs_asked": config.epochs,
        "time_limit_s": time_limit, "time_plan": plan,
        "bundle": str(out), "timings": {k: round(v, 1) for k, v in timings.items()},
        "backend": keras.backend.backend(),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    _stage(4, 4, "Result")
    print(format_summary(summary), flush=True)
    return summary


def _any_size_twin(model, info, kwargs):
    """The same architecture built for any input size, with `model`'s weights (progressive
    resizing trains on several sizes; TFLite files need the fixed one)."""
    from kerascnn import build

    shape = kwargs["input_shape"]
    twin = build(info.name, **{**kwargs, "input_shape": (None, None, shape[-1])})
    twin.set_weights(model.get_weights())
    return twin


def _fit_to_budget(config, model, twin, train_data, test_data, recipe, started,
                   qat_images=1) -> dict:
    """Times the training step on this machine and plans the epochs that fit the budget.

    With progressive resizing, the step is also timed at each smaller size, on `twin` (the
    model built for any input size) fed the training batches resized to that size. A QAT step
    of a flip-averaged model runs `qat_images` = 2 images per image and costs twice as much.
    """
    import tensorflow as tf

    from kerascnn.training import time_training_step
    from kerascnn.training.train import _count_steps

    print(f"Timing the training step on this machine for the {config.time_budget:g}-minute "
          "budget (--time-budget) ...", flush=True)
    schedule = recipe.progressive_resizing
    plain = dataclasses.replace(recipe, progressive_resizing=())
    step_s = time_training_step(model, train_data, plain)
    stage_step_s = {size: time_training_step(
        twin, train_data.map(lambda x, y, s=size: (tf.image.resize(x, (s, s)), y)), plain)
        for _, size in schedule}
    steps_per_epoch = config.steps_per_epoch or _count_steps(train_data)
    qat_steps = qat_images * config.qat_epochs * (config.qat_steps or steps_per_epoch)
    plan = plan_epochs(60 * config.time_budget, time.perf_counter() - started, step_s,
                       epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                       eval_batches=_count_steps(test_data), qat_steps=qat_steps,
                       schedule=schedule, stage_step_s=stage_step_s,
                       full_size=config.input_size)
    plan.update(step_ms=round(1000 * step_s, 1), budget_s=60 * config.time_budget,
                epochs_asked=config.epochs,
                stage_step_ms={str(size): round(1000 * s, 1) for size, s in stage_step_s.items()})
    if not plan["fits"]:
        print(f"Warning: even one epoch is estimated at {plan['estimate_s'] / 60:.1f} minutes, "
              f"over the {config.time_budget:g}-minute budget.", flush=True)
    return plan


def format_summary(summary: dict) -> str:
    """The demo's result table as text."""
    flip = summary.get("flip_average")
    suffix = " (flip-averaged)" if flip else ""
    rows = [("Keras float" + suffix, None, summary["keras_float_accuracy"], None, None),
            ("Keras QAT" + suffix, None, summary["keras_qat_accuracy"], None, None)]
    if flip:
        rows.insert(0, ("Keras float, one pass", None,
                        summary.get("keras_float_one_pass_accuracy"), None, None))
    for fmt, v in summary["variants"].items():
        rows.append((v["file"], v["size_bytes"], v["accuracy"], v["latency_ms"].get("1"),
                     v["latency_ms"].get("2")))

    def cell(value, pattern):
        return "-" if value is None else pattern.format(value)

    header = ("model", "size (KiB)", "test accuracy", "latency 1 thr (ms)", "latency 2 thr (ms)")
    lines = [" | ".join(header), " | ".join("-" * len(h) for h in header)]
    for name, size, acc, l1, l2 in rows:
        lines.append(" | ".join([name, cell(size and size / 1024, "{:.1f}"), cell(acc, "{:.4f}"),
                                 cell(l1, "{:.3f}"), cell(l2, "{:.3f}")]))
    t = summary["timings"]
    lines += ["", f"{summary['model']} on {summary['data']}, {summary['parameters']:,} parameters, "
                  f"{summary['test_samples']} test images.",
              *([f"Every file averages its prediction over each image and its mirror image "
                 "(two passes, in its latency; --flip-average off exports one pass)."]
                if flip else []),
              f"Time: training {t['train_s']:.0f} s, QAT {t['qat_s']:.0f} s, export "
              f"{t['export_s']:.0f} s, total {t['total_s']:.0f} s.",
              f"Bundle: {summary['bundle']} (copy it to android_demo/app/src/main/assets/bundle/)"]
    plan = summary.get("time_plan")
    if plan and summary.get("epochs_trained", plan["epochs_asked"]) < plan["epochs_asked"]:
        lines.insert(-1, f"Epochs: {round(summary['epochs_trained'], 1):g} of "
                         f"{plan['epochs_asked']}, to "
                         f"fit the {plan['budget_s'] / 60:g}-minute budget at "
                         f"{plan['step_ms']:.0f} ms per timed training step (--time-budget 0 "
                         "trains them all).")
    return "\n".join(lines)
