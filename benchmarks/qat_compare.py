"""Float vs post-training int8 vs tfmot QAT vs native QAT, from one float checkpoint.

On Fashion-MNIST, for each model: load (or train) a float model, then give every path the same
extra training budget of `--steps` batches:

- float: the float model fine-tuned for the steps (same optimizer and learning rate as QAT);
- PTQ int8: that fine-tuned float model converted to full int8 with calibration (no training);
- tfmot QAT: `qat(engine="tfmot")` for the steps, then its int8 TFLite file;
- native QAT: `qat(engine="native")` for the steps, then its int8 TFLite file.

Accuracies are on the whole test set (10,000 images); the int8 rows are the TFLite files run by
the LiteRT interpreter. Results go to docs/qat_benchmark.md and .json.

Usage:
    .venv/bin/python benchmarks/qat_compare.py --model mobilenet_v2 \
        --checkpoint export/bundles/mobilenet_v2/model.keras --steps 300
    .venv/bin/python benchmarks/qat_compare.py --model resnet20_cifar --epochs 4 --steps 300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOCS = ROOT / "docs"


def _arrays(dataset):
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


def _tflite_accuracy(content, x, y):
    from kerascnn.export.runtime import TFLiteModel

    return float(np.mean(TFLiteModel(content)(x).argmax(-1) == y))


def compare(model_name, checkpoint, epochs, steps, input_size, alpha, batch_size, seed):
    import keras

    import kerascnn
    from kerascnn.data import load, pipeline_for
    from kerascnn.export import to_tflite
    from kerascnn.quantization import qat, qat_recipe
    from kerascnn.training import get_recipe, train

    recipe_name = "cifar_resnet" if model_name.endswith("_cifar") else "mobilenet_fashion_mnist"
    # The float training uses the data set's recipe; every fine-tuning path uses `qat_recipe`
    # (AdamW 1e-4: SGD's rates make frozen-BN fine-tuning diverge).
    recipe = get_recipe(recipe_name, batch_size=batch_size, epochs=max(epochs, 1))
    timings = {}
    if checkpoint:
        model = keras.saving.load_model(checkpoint)
    else:
        kwargs = {"input_shape": (input_size, input_size, 3), "classes": 10}
        if alpha is not None:
            kwargs["alpha"] = alpha
        model = kerascnn.build(model_name, **kwargs)
    train_data = pipeline_for(model_name, load("fashion_mnist", "train"), training=True,
                              input_shape=model.input_shape[1:], batch_size=batch_size,
                              augment=recipe.augment, seed=seed)
    test_data = pipeline_for(model_name, load("fashion_mnist", "test"), training=False,
                             input_shape=model.input_shape[1:], batch_size=256)
    x_test, y_test = _arrays(test_data)
    if not checkpoint:
        start = time.perf_counter()
        train(model, train_data, None, recipe, verbose=2)
        timings["float_training_s"] = time.perf_counter() - start
    checkpoint_accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test))
    weights = model.get_weights()
    fine = qat_recipe(recipe, epochs=1)
    rows = {}

    start = time.perf_counter()  # float: the same extra steps, the same optimizer settings
    float_model = keras.models.clone_model(model)
    float_model.set_weights(weights)
    train(float_model, train_data, None, dataclasses_replace(fine, precise_bn_steps=100,
                                                             bn_momentum=0.99),
          steps_per_epoch=steps, verbose=0)
    acc = float(np.mean(float_model.predict(x_test, verbose=0).argmax(-1) == y_test))
    rows["float (Keras)"] = {"accuracy": acc, "seconds": time.perf_counter() - start}

    start = time.perf_counter()
    calibration = np.concatenate([np.asarray(x) for x, _ in train_data.take(4)])
    content = to_tflite(float_model, kind="int8", representative_data=calibration)
    rows["PTQ full int8 (TFLite)"] = {"accuracy": _tflite_accuracy(content, x_test, y_test),
                                      "size_bytes": len(content),
                                      "seconds": time.perf_counter() - start}

    for engine in ("tfmot", "native"):
        source = keras.models.clone_model(model)
        source.set_weights(weights)
        start = time.perf_counter()
        try:
            qat_model = qat(source, train_data, None, epochs=1, engine=engine, recipe=recipe,
                            steps_per_epoch=steps, verbose=0)
            if engine == "tfmot":
                from kerascnn.quantization import tfmot_engine

                content = tfmot_engine.to_tflite(qat_model)
            else:
                content = to_tflite(qat_model, kind="qat_int8")
            rows[f"{engine} QAT int8 (TFLite)"] = {
                "accuracy": _tflite_accuracy(content, x_test, y_test),
                "size_bytes": len(content), "seconds": time.perf_counter() - start}
        except Exception as err:  # report the engine's failure in the table
            rows[f"{engine} QAT int8 (TFLite)"] = {"error": f"{type(err).__name__}: {err}"[:300]}
    return {"model": model_name, "checkpoint": checkpoint, "checkpoint_accuracy":
            checkpoint_accuracy, "steps": steps, "batch_size": batch_size,
            "learning_rate": fine.learning_rate, "rows": rows,
            "timings": {k: round(v, 1) for k, v in timings.items()}}


def dataclasses_replace(recipe, **changes):
    import dataclasses

    return dataclasses.replace(recipe, **changes)


def write_docs(results, command):
    DOCS.mkdir(exist_ok=True)
    path = DOCS / "qat_benchmark.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing.update({r["model"]: {**r, "command": command} for r in results})
    path.write_text(json.dumps(existing, indent=2) + "\n")
    lines = ["# Float, post-training int8 and QAT int8 on Fashion-MNIST", "",
             "Same float checkpoint and the same extra training budget for every path; test "
             "accuracy on all 10,000 test images (int8 rows: the TFLite file in the LiteRT "
             "interpreter). Target: native QAT within 0.5 point of float and not more than 0.2 "
             "point below tfmot.", ""]
    for model, r in existing.items():
        lines += [f"## {model}", "",
                  f"Checkpoint accuracy {r['checkpoint_accuracy']:.4f}; extra budget {r['steps']} "
                  f"steps of batch {r['batch_size']} at learning rate {r['learning_rate']:g}.",
                  f"Command: `{r['command']}`", "",
                  "| path | test accuracy | file size (KiB) |", "|---|---:|---:|"]
        for name, row in r["rows"].items():
            if "error" in row:
                lines.append(f"| {name} | failed: {row['error'][:150]} | |")
            else:
                size = f"{row['size_bytes'] / 1024:.1f}" if "size_bytes" in row else ""
                lines.append(f"| {name} | {row['accuracy']:.4f} | {size} |")
        lines.append("")
    (DOCS / "qat_benchmark.md").write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--checkpoint", help="a trained float .keras file (else train here)")
    parser.add_argument("--epochs", type=int, default=4, help="float epochs without --checkpoint")
    parser.add_argument("--steps", type=int, default=300, help="extra training steps per path")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = compare(args.model, args.checkpoint, args.epochs, args.steps, args.input_size,
                     args.alpha, args.batch_size, args.seed)
    print(json.dumps(result, indent=2))
    command = "python benchmarks/qat_compare.py " + " ".join(argv if argv is not None
                                                              else sys.argv[1:])
    write_docs([result], command)


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
