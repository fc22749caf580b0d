"""The ``kerascnn`` command line.

    kerascnn list [PATTERN] [--task T]          the registered models, one row each
    kerascnn summary [NAME] [--input-size N]    layer table, parameters and feature maps of a model

``python -m kerascnn`` runs the same commands. A bad model name or argument value prints one line
to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import re
import sys

# Must be set before TensorFlow is imported (through keras) to take effect.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kerascnn import __version__, registry  # noqa: E402  (after the environment is set)

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
    except (ValueError, TypeError) as err:
        print(f"kerascnn: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
