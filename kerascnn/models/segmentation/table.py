"""Regenerates the model table of docs/segmentation_models.md.

Builds every registered segmentation model at 512x512x3 with 21 classes (`weights=None`), counts
its parameters and multiply-accumulates (`kerascnn.analysis.count_macs`), and writes a Markdown
table between the ``<!-- segmentation-table -->`` and ``<!-- /segmentation-table -->`` markers.

Usage:
    .venv/bin/python -m kerascnn.models.segmentation.table            # rewrite the doc in place
    .venv/bin/python -m kerascnn.models.segmentation.table --check    # exit 1 if out of date
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import pathlib
import sys

BEGIN, END = "<!-- segmentation-table -->", "<!-- /segmentation-table -->"
DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "segmentation_models.md"
SIZE, CLASSES = 512, 21


def _backbone(name: str, classifiers) -> str:
    """The classification model that `name` is built on (the longest registered suffix)."""
    parts = name.split("_")
    for i in range(1, len(parts)):
        suffix = "_".join(parts[i:])
        if suffix in classifiers:
            return suffix
    return "-"


def _input_rule(name: str, model, builder) -> str:
    """Which input sizes a model takes: a multiple of its largest stride, fixed or any."""
    if "aspp_pool_resize" in {layer.name for layer in model.layers}:
        stride = inspect.signature(builder).parameters["output_stride"].default
        return f"fixed, multiple of {stride}"
    multiple = 16 if name == "unet" or name.startswith("lraspp") else 32
    return f"any multiple of {multiple}"


def segmentation_table() -> str:
    """The Markdown table: one row per registered segmentation model."""
    import keras

    import kerascnn
    from kerascnn.analysis import count_macs

    classifiers = set(kerascnn.list_models(task="classification"))
    rows = ["| Model | Family | Backbone | Parameters | Trainable | GMACs | Inputs |",
            "|---|---|---|---:|---:|---:|---|"]
    for name in kerascnn.list_models(task="segmentation"):
        info = kerascnn.model_info(name)
        model = kerascnn.build(name, input_shape=(SIZE, SIZE, 3), classes=CLASSES, weights=None)
        macs = count_macs(model)
        if macs.uncounted:
            raise RuntimeError(f"{name}: layers without a MAC rule: {macs.uncounted}")
        trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
        rows.append(f"| `{name}` | {info.family} | {_backbone(name, classifiers)} "
                    f"| {model.count_params():,} | {trainable:,} | {macs.total / 1e9:.2f} "
                    f"| {_input_rule(name, model, info.builder)} |")
        keras.backend.clear_session()
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is out of date")
    parser.add_argument("--doc", type=pathlib.Path, default=DOC)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    text = args.doc.read_text()
    if BEGIN not in text or END not in text:
        print(f"{args.doc}: markers {BEGIN} ... {END} not found", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    updated = f"{head}{BEGIN}\n{segmentation_table()}\n{END}{tail}"
    if args.check:
        return 0 if updated == text else 1
    args.doc.write_text(updated)
    print(args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
