"""The ``kerascnn`` command line.

    kerascnn list [PATTERN] [--task T]          the registered models, one row each
    kerascnn summary [NAME] [--input-size N]    layer table, parameters and feature maps of a model
    kerascnn export MODEL_OR_CHECKPOINT [--out DIR] [--quantize int8] [--calibration SOURCE]
                                                  the phone bundle: TFLite files, metadata, report
    kerascnn train MODEL --data SOURCE [--epochs N] [--out DIR]
                                                  train with a recipe, resumable; writes runs/MODEL
    kerascnn evaluate CHECKPOINT --data SOURCE  accuracy of a .keras checkpoint on a test split
    kerascnn info NAME [--input-size N]         parameters, MACs, memory, depth, receptive field
    kerascnn compare NAME... [--out DIR]        comparison table and bubble chart

``python -m kerascnn`` runs the same commands. A bad model name or argument value prints one line
to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import importlib
import inspect
import math
import os
import re
import sys

from kerascnn.env import prefer_onednn

# Must be set before TensorFlow is imported (through keras) to take effect.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
prefer_onednn()  # TensorFlow's faster CPU kernels where it leaves them off (kerascnn/env.py)

from kerascnn import __version__, registry  # noqa: E402  (after the environment is set)
from kerascnn.analysis.cli import add_commands as add_analysis_commands  # noqa: E402

DEFAULT_MODEL = "mobilenet_v2"
_DATASETS = {"imagenet": "ImageNet", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def published_top1(info: registry.ModelInfo) -> str:
    """Formats a model's published top-1 accuracy, e.g. "71.8 (ImageNet)", or "" when unknown.

    Args:
        info: the model's registry entry; keys of `info.published_accuracy` ending in "_top1"
            name the dataset ("imagenet_top1", "cifar10_top1", ...).

    Returns:
        The accuracies joined by ", ", or an empty string.
    """
    results = []
    for key, value in info.published_accuracy.items():
        if key.endswith("_top1"):
            dataset = key[: -len("_top1")]
            results.append(f"{value} ({_DATASETS.get(dataset, dataset)})")
    return ", ".join(results)


def natural_key(name: str) -> list:
    """Sort key that orders numbers by value: resnet18 < resnet34 < resnet101."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def build_model(name: str, **kwargs):
    """Builds a registered model without downloading anything.

    Passes ``weights=None`` when the builder takes a `weights` argument and the caller did not.

    Args:
        name: a registry key.
        **kwargs: further builder arguments.

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: an unknown name or a bad argument value.
        TypeError: an argument the builder does not take.
    """
    info = registry.model_info(name)
    if "weights" in _builder_params(info):
        kwargs.setdefault("weights", None)
    return registry.build(info.name, **kwargs)


def format_shape(shape) -> str:
    """(None, 112, 112, 32) -> "112x112x32"; unknown dimensions print as "?"."""
    return "x".join("?" if d is None else str(d) for d in tuple(shape)[1:]) or "scalar"


def _builder_params(info: registry.ModelInfo):
    return inspect.signature(info.builder).parameters


def import_keras_quietly() -> None:
    """Imports keras (and its backend) with the C-level stderr muted during the import.

    TensorFlow 2.21 prints oneDNN notices at import time, before TF_CPP_MIN_LOG_LEVEL applies.
    Python errors raised by the import are still shown. Set TF_CPP_MIN_LOG_LEVEL=0 to see the
    notices.
    """
    if "keras" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        importlib.import_module("keras")
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                importlib.import_module("keras")
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # rich's 80-column default for pipes would wrap the layer table
    return console


def _cmd_list(args) -> int:
    from rich.table import Table

    names = sorted(registry.list_models(args.pattern, task=args.task), key=natural_key)
    if not names:
        print(f"No registered model matches {args.pattern!r}.", file=sys.stderr)
        return 1
    table = Table(title=f"{len(names)} models")
    for column in ("Name", "Family", "Task", "Default input", "Published top-1"):
        table.add_column(column)
    for name in names:
        info = registry.model_info(name)
        table.add_row(name, info.family, info.task, "x".join(map(str, info.default_input_shape)),
                      published_top1(info))
    _console().print(table)
    return 0


def _layer_output_shape(layer) -> str:
    try:
        output = layer.output
    except (AttributeError, ValueError):  # a layer called more than once has no single output
        return "multiple"
    if isinstance(output, (list, tuple)):
        return ", ".join(format_shape(t.shape) for t in output)
    return format_shape(output.shape)


def _cmd_summary(args) -> int:
    from rich.table import Table

    info = registry.model_info(args.name)
    kwargs = {}
    if args.input_size is not None:
        kwargs["input_shape"] = (args.input_size, args.input_size, info.default_input_shape[-1])
    if args.alpha is not None:
        kwargs["alpha"] = args.alpha
    head_kwargs = {} if args.classes is None else {"classes": args.classes}
    model = build_model(info.name, **kwargs, **head_kwargs)

    console = _console()
    console.print(f"[bold]{info.name}[/bold] ({info.family}, {info.task})")
    console.print(f"Paper: {info.paper}", highlight=False)
    table = Table(title=f"{model.name}: {len(model.layers)} layers")
    table.add_column("Layer", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    table.add_column("Output shape", no_wrap=True)
    table.add_column("Params", justify="right")
    for layer in model.layers:
        table.add_row(layer.name, type(layer).__name__, _layer_output_shape(layer),
                      f"{layer.count_params():,}")
    console.print(table)

    total = model.count_params()
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    console.print(f"Total params: {total:,}   Trainable: {trainable:,}   "
                  f"Non-trainable: {total - trainable:,}")
    _print_feature_maps(console, info, kwargs)
    return 0


def _print_feature_maps(console, info: registry.ModelInfo, kwargs: dict) -> None:
    from rich.table import Table

    if "features_only" not in _builder_params(info):
        console.print("Feature maps: this model has no features_only option.")
        return
    kwargs = {"input_shape": tuple(info.default_input_shape), **kwargs}
    try:
        features = build_model(info.name, features_only=True, **kwargs)
    except (TypeError, ValueError) as err:
        console.print(f"Feature maps: not available ({_one_line(err)})")
        return
    outputs = features.output
    if not isinstance(outputs, dict):
        outputs = {f"output{i}": t for i, t in enumerate(outputs if isinstance(outputs, (list, tuple))
                                                             else [outputs])}
    console.print("Feature maps (features_only=True):")
    table = Table()
    for column in ("Level", "Stride", "Shape"):
        table.add_column(column, justify="right" if column == "Stride" else "left")
    for level, tensor in outputs.items():
        match = re.fullmatch(r"P(\d+)", level)
        table.add_row(level, str(2 ** int(match.group(1))) if match else "?", format_shape(tensor.shape))
    console.print(table)


QUANTIZE_CHOICES = {"none": None, "float16": "tflite_float16", "dynamic": "tflite_dynamic_int8",
                    "int8": "tflite_int8"}
PREPROCESSING_CHOICES = ("registry", "tf", "torch", "caffe", "none")


def load_images(source: str, split: str = "train"):
    """Images (N, H, W[, C]) in [0, 255] and labels (or None) from a data source name.

    Args:
        source: "fashion_mnist" (offline IDX files), a .npy file of images, or a .npz file with
            arrays "x" (images) and optionally "y" (labels).
        split: for named data sets, "train" or "test".
    """
    import numpy as np

    if source == "fashion_mnist":
        from kerascnn.data import load_fashion_mnist

        return load_fashion_mnist(split)
    if source.endswith(".npy") and os.path.exists(source):
        return np.load(source), None
    if source.endswith(".npz") and os.path.exists(source):
        data = np.load(source)
        return data["x"], (data["y"] if "y" in data else None)
    raise ValueError("A data source must be 'fashion_mnist', an existing .npy file of images or "
                     f"an .npz file with 'x' (and 'y'). Received: {source!r}")


def _preprocessing(choice: str, model):
    from kerascnn.export.bundle import preprocessing_for
    from kerascnn.registry import preprocessing_caffe, preprocessing_tf, preprocessing_torch

    channels = int(model.inputs[0].shape[-1])
    if choice == "registry":
        from kerascnn.registry import _REGISTRY, _ensure_loaded

        _ensure_loaded()
        if model.name not in _REGISTRY:
            raise ValueError(f"{model.name!r} is not a registered model name, so its input "
                             f"normalisation is unknown: pass --preprocessing "
                             f"{'|'.join(PREPROCESSING_CHOICES[1:])}.")
        return preprocessing_for(model)
    factories = {"none": None, "tf": lambda: preprocessing_tf(channels),
                 "torch": preprocessing_torch, "caffe": preprocessing_caffe}
    factory = factories[choice]
    return preprocessing_for(model, factory() if factory else {
        "scale": [1.0] * channels, "offset": [0.0] * channels, "mode": "none"})


def _cmd_export(args) -> int:
    import numpy as np

    from kerascnn.data import FASHION_MNIST_CLASSES, to_model_input
    from kerascnn.export import export

    source = args.model
    if source.endswith(".keras"):
        if not os.path.exists(source):
            raise ValueError(f"Checkpoint not found. Received: {source!r}")
        model = _load_checkpoint(source)
        name = os.path.splitext(os.path.basename(source))[0]
    else:
        info = registry.model_info(source)
        kwargs = {}
        if args.input_size:
            kwargs["input_shape"] = (args.input_size, args.input_size, info.default_input_shape[-1])
        for key in ("classes", "alpha", "weights"):
            if getattr(args, key) is not None:
                kwargs[key] = getattr(args, key)
        model = build_model(info.name, **kwargs)
        name = info.name
    prep = _preprocessing(args.preprocessing, model)
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    formats = ["keras", "tflite_float32"] + [QUANTIZE_CHOICES[q] for q in args.quantize
                                             if QUANTIZE_CHOICES[q]]
    representative = validation = None
    if "tflite_int8" in formats:
        if not args.calibration:
            raise ValueError("--quantize int8 needs --calibration SOURCE (e.g. fashion_mnist): "
                             "a few hundred images to measure activation ranges.")
        images, _ = load_images(args.calibration, "train")
        rng = np.random.default_rng(0)
        picked = rng.choice(len(images), size=min(args.calibration_samples, len(images)), replace=False)
        representative = to_model_input(images[picked], input_shape, prep)
    if args.validation:
        images, labels = load_images(args.validation, "test")
        validation = (to_model_input(images[:args.validation_samples], input_shape, prep),
                      None if labels is None else labels[:args.validation_samples])
    labels = None
    if args.labels == "fashion_mnist":
        labels = FASHION_MNIST_CLASSES
    elif args.labels:
        with open(args.labels) as f:
            labels = [line.rstrip("\n") for line in f if line.strip()]
    out = args.out or os.path.join("export", "bundles", name)
    report = export(model, out, formats=formats, representative_data=representative,
                    validation_data=validation, labels=labels, preprocessing=prep,
                    io_dtype=args.io_dtype, allow_flex=args.allow_flex, source_model=name,
                    latency_runs=args.latency_runs)
    from kerascnn.export.bundle import report_markdown

    print(report_markdown(report))
    print(f"Bundle written to {out}")
    return 0


def _cmd_train(args) -> int:
    from kerascnn.data import load, pipeline_for
    from kerascnn.training import configure_for_hardware, get_recipe, get_strategy, train

    overrides = {key: getattr(args, key)
                 for key in ("epochs", "batch_size", "learning_rate", "weight_decay",
                             "label_smoothing", "batch_splits")
                 if getattr(args, key) is not None}
    recipe = get_recipe(args.recipe, **overrides)
    # Before the model is built: the dtype policy and thread counts apply from then on.
    hardware = configure_for_hardware(recipe, threads="cpu")
    # Also before any TensorFlow op runs: MultiWorkerMirroredStrategy sets up collective ops.
    strategy = get_strategy(args.strategy)
    info = registry.model_info(args.model)
    train_source = load(args.data, "train")
    classes = args.classes or len(getattr(train_source, "class_names", []) or []) or None
    if classes is None:
        raise ValueError(f"The number of classes of {args.data!r} is unknown: pass --classes N.")
    size = args.input_size
    if size is None:  # the data's own size, at least what the architecture accepts
        height = int(train_source.element_spec[0].shape[0] or info.default_input_shape[0])
        size = max(height, info.min_input_size)
    kwargs = {"input_shape": (size, size, info.default_input_shape[-1]), "classes": classes}
    if args.alpha is not None:
        kwargs["alpha"] = args.alpha
    with strategy.scope():
        model = build_model(info.name, **kwargs)
    train_data = pipeline_for(model, train_source, training=True, batch_size=recipe.batch_size,
                              augment=recipe.augment, mixup_alpha=recipe.mixup_alpha,
                              cutmix_alpha=recipe.cutmix_alpha, num_classes=classes, seed=args.seed)
    val_data = pipeline_for(model, load(args.data, "test"), training=False,
                            batch_size=recipe.batch_size)
    out = args.out or os.path.join("runs", info.name)
    print(f"Training {info.name} at {size}x{size} on {args.data} ({classes} classes) for "
          f"{recipe.epochs} epochs; GPU: {hardware['gpu']}, mixed precision: "
          f"{hardware['mixed_precision']}, replicas: {strategy.num_replicas_in_sync}; run "
          f"directory {out} (rerun the same command to resume)")
    if args.time_limit is not None and not args.time_limit > 0:
        raise ValueError(f"--time-limit must be a positive number of minutes. Received: "
                         f"{args.time_limit:g}")
    history = train(model, train_data, val_data, recipe, out_dir=out,
                    steps_per_epoch=args.steps_per_epoch, backup_every_steps=args.backup_every,
                    overwrite=args.overwrite,
                    time_limit=None if args.time_limit is None else 60 * args.time_limit)
    print(json.dumps(history.results, indent=2))
    return 0


def _cmd_evaluate(args) -> int:
    import keras

    from kerascnn.data import load, pipeline_for

    if not os.path.exists(args.checkpoint):
        raise ValueError(f"Checkpoint not found. Received: {args.checkpoint!r}")
    model = _load_checkpoint(args.checkpoint)
    data = pipeline_for(model, load(args.data, args.split), training=False,
                        batch_size=args.batch_size)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    if args.steps:
        data = data.take(args.steps)
    results = model.evaluate(data, verbose=1, return_dict=True)
    print(json.dumps({k: float(v) for k, v in results.items()}, indent=2))
    return 0


def _cmd_qat(args) -> int:
    import keras

    from kerascnn.data import load, pipeline_for
    from kerascnn.data.fashion_mnist import FASHION_MNIST_CLASSES
    from kerascnn.demo import _arrays
    from kerascnn.export import export
    from kerascnn.quantization import qat

    if not args.checkpoint.endswith(".keras") or not os.path.exists(args.checkpoint):
        raise ValueError("CHECKPOINT must be an existing .keras file (e.g. runs/MODEL/best.keras). "
                         f"Received: {args.checkpoint!r}")
    for flag in ("epochs", "steps", "batch_size", "validation_samples"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1. Received: {value}")
    model = _load_checkpoint(args.checkpoint)
    name = args.name or model.name
    source = load(args.data, "train")
    class_names = list(getattr(source, "class_names", None) or [])
    if not class_names and args.data == "fashion_mnist":
        class_names = list(FASHION_MNIST_CLASSES)
    registered = name if name in registry.list_models() else None
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    kwargs = dict(input_shape=shape, batch_size=args.batch_size, seed=0)
    train_data = pipeline_for(registered or model, source, training=True, augment=("flip",),
                              **kwargs)
    test_data = pipeline_for(registered or model, load(args.data, "test"), training=False,
                             **kwargs)
    print(f"QAT fine-tuning {args.checkpoint} ({args.engine} engine, {args.epochs} epoch(s)"
          f"{f' of {args.steps} steps' if args.steps else ''}) on {args.data}", flush=True)
    qat_model = qat(model, train_data, test_data, epochs=args.epochs, engine=args.engine,
                    learning_rate=args.learning_rate, steps_per_epoch=args.steps)
    out = args.out or os.path.join("export", "bundles", f"{name}_qat")
    test_x, test_y = _arrays(test_data, args.validation_samples)
    if args.engine == "tfmot":  # a tf_keras model: converted here, written next to the bundle
        from kerascnn.quantization import tfmot_engine

        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "model_tfmot_qat_int8.tflite")
        content = tfmot_engine.to_tflite(qat_model)
        tmp = path + ".partial"
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
        print(f"Wrote {path} ({len(content) / 1024:.1f} KiB)")
        return 0
    report = export(model, out, formats=["keras", "tflite_float32", "tflite_qat_int8"],
                    qat_model=qat_model, labels=class_names or None,
                    validation_data=(test_x, test_y), validation_samples=len(test_x),
                    source_model=name, latency_runs=args.latency_runs)
    print(json.dumps({fmt: info.get("agreement", {}) for fmt, info in report["tflite"].items()},
                     indent=2))
    print(f"Bundle: {out}")
    return 0


def _load_checkpoint(path):
    """A saved .keras model; kerascnn's own layers (fake quantization, flip averaging,
    deformable convolution) are registered first so that models using them load."""
    import keras

    import kerascnn.layers  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(path)


def _cmd_demo(args) -> int:
    from kerascnn.demo import DemoConfig, run_demo

    fields = {f: getattr(args, f) for f in ("model", "data", "epochs", "qat_epochs", "input_size",
                                            "alpha", "output_stride", "batch_size",
                                            "learning_rate", "label_smoothing",
                                            "steps_per_epoch",
                                            "qat_steps", "qat_learning_rate", "eval_samples",
                                            "out", "latency_runs", "seed",
                                            "progressive_resizing")
              if getattr(args, f) is not None}
    if args.flip_average is not None:
        fields["flip_average"] = {"auto": "auto", "on": True, "off": False}[args.flip_average]
    if args.time_budget is not None:
        fields["time_budget"] = args.time_budget or None  # 0: no budget
    elif args.epochs is not None:
        fields["time_budget"] = None  # the epochs asked for, however long they take
    run_demo(DemoConfig(**fields))
    return 0


def _resize_schedule_arg(text: str):
    """--progressive-resizing: 'F:S,F:S,...' or 'none'."""
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple((float(f), int(s)) for f, s in (part.split(":") for part in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "--progressive-resizing is 'none' or fraction:size pairs such as '0.4:32,0.7:48'. "
            f"Received: {text!r}") from None


def _batch_splits_arg(text: str):
    """--batch-splits: 'auto' or a positive integer (the recipe checks the value)."""
    try:
        return text if text == "auto" else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--batch-splits is 'auto' or a positive integer. Received: {text!r}") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kerascnn", description="Keras 3 CNN model zoo.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("list", help="list the registered models")
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN",
                   help="shell-style wildcard, e.g. 'resnet*' (default: all)")
    p.add_argument("--task", choices=registry.TASKS, help="only models for this task")
    p.set_defaults(func=_cmd_list)

    p = commands.add_parser("summary", help="build a model and print its layers, parameters and "
                                            "feature maps")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL, metavar="NAME",
                   help=f"registry name (default: {DEFAULT_MODEL})")
    p.add_argument("--input-size", type=int, metavar="N", help="square input of N x N pixels")
    p.add_argument("--classes", type=int, metavar="N", help="number of classes of the classifier")
    p.add_argument("--alpha", type=float, metavar="A", help="width multiplier (MobileNets)")
    p.set_defaults(func=_cmd_summary)

    p = commands.add_parser("export", help="export a model or .keras checkpoint as a phone bundle "
                                           "(TFLite files, labels, metadata, report)")
    p.add_argument("model", metavar="MODEL_OR_CHECKPOINT",
                   help="a registry name (built with --weights, random by default) or a .keras file")
    p.add_argument("--out", metavar="DIR", help="bundle directory (default: export/bundles/<model>)")
    p.add_argument("--quantize", nargs="+", default=["int8"], choices=sorted(QUANTIZE_CHOICES),
                   help="TFLite variants besides float32 (default: int8)")
    p.add_argument("--calibration", metavar="SOURCE",
                   help="images for int8 calibration: fashion_mnist, a .npy or an .npz file")
    p.add_argument("--calibration-samples", type=int, default=300, metavar="N")
    p.add_argument("--validation", metavar="SOURCE",
                   help="held-out images (and labels) to compare TFLite with Keras on")
    p.add_argument("--validation-samples", type=int, default=500, metavar="N")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line (or fashion_mnist)")
    p.add_argument("--preprocessing", default="registry", choices=PREPROCESSING_CHOICES,
                   help="input normalisation (default: the registry's for the model name)")
    p.add_argument("--io-dtype", default="int8", choices=["int8", "uint8", "float32"],
                   help="input/output type of the integer files")
    p.add_argument("--allow-flex", action="store_true",
                   help="permit TensorFlow (Flex) ops; a stock phone interpreter cannot run them")
    p.add_argument("--latency-runs", type=int, default=50, metavar="N")
    p.add_argument("--input-size", type=int, metavar="N", help="square input (registry models)")
    p.add_argument("--classes", type=int, metavar="N", help="classes (registry models)")
    p.add_argument("--alpha", type=float, metavar="A", help="width multiplier (MobileNets)")
    p.add_argument("--weights", metavar="W", help="None, imagenet or a weights file (registry models)")
    p.set_defaults(func=_cmd_export)
    p = commands.add_parser("train", help="train a registered model on a data source with a recipe")
    p.add_argument("model", metavar="MODEL", help="registry name")
    p.add_argument("--data", default="fashion_mnist", metavar="SOURCE",
                   help="fashion_mnist (offline), tfds:NAME, or an image folder (default: fashion_mnist)")
    p.add_argument("--recipe", default="default", help="recipe name (kerascnn.training.RECIPES)")
    p.add_argument("--epochs", type=int, metavar="N")
    p.add_argument("--batch-size", type=int, metavar="N")
    p.add_argument("--learning-rate", type=float, metavar="LR")
    p.add_argument("--weight-decay", type=float, metavar="WD")
    p.add_argument("--label-smoothing", type=float, metavar="E")
    p.add_argument("--batch-splits", type=_batch_splits_arg, metavar="N",
                   help="run each batch as N parts side by side on the CPU cores (auto: 2 on a "
                        "CPU-only machine with 2+ cores and batches of 64+; 1: no split)")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="square input (default: the data's size, at least the model's minimum)")
    p.add_argument("--classes", type=int, metavar="N", help="default: from the data source")
    p.add_argument("--alpha", type=float, metavar="A", help="width multiplier (MobileNets)")
    p.add_argument("--steps-per-epoch", type=int, metavar="N", help="default: the whole data set")
    p.add_argument("--time-limit", type=float, metavar="MIN",
                   help="stop after MIN minutes of training, with the learning rate annealed "
                        "over that time (or the epochs, if they end first)")
    p.add_argument("--backup-every", type=int, metavar="STEPS",
                   help="back up every STEPS steps as well as every epoch")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in the run directory (without it, a finished "
                        "run there is an error; an unfinished one resumes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategy", default="auto",
                   choices=["auto", "default", "mirrored", "multi_worker"],
                   help="tf.distribute strategy: auto = MirroredStrategy over several local GPUs, "
                        "else none; multi_worker reads the cluster from TF_CONFIG, every worker "
                        "runs the same command (default: auto)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/MODEL)")
    p.set_defaults(func=_cmd_train)

    p = commands.add_parser("evaluate", help="evaluate a .keras checkpoint on a data source")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .keras file (e.g. runs/MODEL/best.keras)")
    p.add_argument("--data", default="fashion_mnist", metavar="SOURCE")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=256, metavar="N")
    p.add_argument("--steps", type=int, metavar="N", help="evaluate only N batches")
    p.set_defaults(func=_cmd_evaluate)
    p = commands.add_parser("qat", help="fine-tune a trained float .keras checkpoint with "
                                        "quantization-aware training and export the int8 bundle")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a trained float .keras file")
    p.add_argument("--data", default="fashion_mnist", metavar="SOURCE",
                   help="the data the model was trained on (default: fashion_mnist)")
    p.add_argument("--engine", default="native", choices=["native", "tfmot"])
    p.add_argument("--epochs", type=int, default=1, metavar="N")
    p.add_argument("--steps", type=int, metavar="N", help="batches per epoch (default: all)")
    p.add_argument("--batch-size", type=int, default=128, metavar="N")
    p.add_argument("--learning-rate", type=float, metavar="LR", help="default 1e-4 (AdamW)")
    p.add_argument("--validation-samples", type=int, default=2000, metavar="N")
    p.add_argument("--latency-runs", type=int, default=20, metavar="N")
    p.add_argument("--name", help="model name in the bundle (default: the model's)")
    p.add_argument("--out", metavar="DIR", help="bundle directory (default: export/bundles/NAME_qat)")
    p.set_defaults(func=_cmd_qat)

    p = commands.add_parser("demo", help="the main job: train, QAT fine-tune and export a phone "
                                         "bundle, then print accuracy, size and latency")
    p.add_argument("--model", metavar="NAME", help=f"registry name (default: {DEFAULT_MODEL})")
    p.add_argument("--data", metavar="SOURCE",
                   help="fashion_mnist (offline, default), tfds:NAME or an image folder")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="float training epochs (default: up to 30, as many as the time budget "
                        "allows; given explicitly, all N are trained unless --time-budget is "
                        "given too)")
    p.add_argument("--time-budget", type=float, metavar="MIN",
                   help="minutes the whole job may take: the training step is timed first, "
                        "QAT and export set aside, and the training anneals over and stops at "
                        "the time left (default: 14 when --epochs is not given; 0: no budget)")
    p.add_argument("--qat-epochs", type=int, metavar="N", help="QAT fine-tuning epochs (0: none)")
    p.add_argument("--input-size", type=int, metavar="N", help="square input size")
    p.add_argument("--alpha", type=float, metavar="A", help="width multiplier (MobileNets)")
    p.add_argument("--output-stride", type=int, metavar="S", choices=[8, 16, 32],
                   help="last-feature stride for models that take one (16: 2x2 maps at 32x32)")
    p.add_argument("--batch-size", type=int, metavar="N")
    p.add_argument("--learning-rate", type=float, metavar="LR",
                   help="peak learning rate (default: the recipe's)")
    p.add_argument("--label-smoothing", type=float, metavar="E",
                   help="label smoothing of the float training (default: the recipe's)")
    p.add_argument("--steps-per-epoch", type=int, metavar="N",
                   help="batches per training epoch (default: all; small values for a smoke run)")
    p.add_argument("--progressive-resizing", type=_resize_schedule_arg, metavar="F:S,...",
                   help="train the first epochs on smaller images: '0.4:32,0.7:48' trains "
                        "epochs before 40%% of the run at 32x32, before 70%% at 48x48, the rest "
                        "at --input-size ('none': off)")
    p.add_argument("--flip-average", choices=["auto", "on", "off"],
                   help="export a model that averages its prediction over each image and its "
                        "mirror image (two passes per image; auto: when the recipe trains with "
                        "flips, as Fashion-MNIST's does)")
    p.add_argument("--qat-steps", type=int, metavar="N", help="batches per QAT epoch")
    p.add_argument("--qat-learning-rate", type=float, metavar="LR",
                   help="peak AdamW learning rate of the QAT fine-tuning (default: 1e-5)")
    p.add_argument("--eval-samples", type=int, metavar="N",
                   help="test images for the table (default: the whole test set)")
    p.add_argument("--latency-runs", type=int, metavar="N")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", metavar="DIR", help="bundle directory (default: export/bundles/MODEL)")
    p.set_defaults(func=_cmd_demo)
    add_analysis_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line.

    Args:
        argv: the arguments without the program name; `sys.argv[1:]` when None.

    Returns:
        The exit status: 0 on success, 1 when `list` matches nothing, 2 on a usage error.
    """
    args = _parser().parse_args(argv)
    import_keras_quietly()  # the model modules import keras when the registry is first used
    try:
        return args.func(args)
    except (ValueError, TypeError, FileExistsError) as err:
        print(f"kerascnn: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
