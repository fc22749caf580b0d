"""What QAT fine-tuning costs a converged model, by learning rate: several draws per rate.

Loads a trained Fashion-MNIST classifier (for example the `model.keras` of a `kerascnn demo`
bundle, flip-averaged or not), then for each learning rate and data-order seed runs the demo's
QAT (`kerascnn.quantization.qat`, native engine, `--steps` AdamW steps with the
`mobilenet_fashion_mnist` recipe's batch, augmentation and label smoothing) and measures the Keras
QAT model and its full-int8 TFLite file (what the bundle ships) on the 10,000 test images:
accuracy, the file's change against the float model and the share of images on which the file
and the float model predict the same class. Rate 0 is calibration only (the ranges are set, no
step is taken). Results go to docs/qat_learning_rate.md and .json.

Usage:
    .venv/bin/python benchmarks/qat_learning_rate.py \
        --checkpoint export/bundles/mobilenet_v2/model.keras \
        --learning-rates 0 1e-5 1e-4 --seeds 1 2 --steps 50
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


def _predict(model, x):
    return model.predict(x, batch_size=256, verbose=0).argmax(-1)


def measure(checkpoint, learning_rates, seeds, steps, test_images=None):
    import keras

    import kerascnn.layers  # noqa: F401  (registers the flip-averaging layers)
    from kerascnn.data import load, pipeline_for
    from kerascnn.export import to_tflite
    from kerascnn.export.runtime import TFLiteModel
    from kerascnn.layers.flip_average import wrapped_classifier
    from kerascnn.quantization import qat
    from kerascnn.training import configure_for_hardware, get_recipe

    recipe = get_recipe("mobilenet_fashion_mnist")
    configure_for_hardware(recipe, threads="cpu")
    model = keras.saving.load_model(checkpoint, compile=False)
    # The pipeline is chosen by the network's name, which a flip-averaged wrapper does not carry.
    network = wrapped_classifier(model) or model
    test = pipeline_for(network, load("fashion_mnist", "test"), training=False, batch_size=256)
    x, y = (np.concatenate(part) for part in zip(*[(np.asarray(a), np.asarray(b))
                                                   for a, b in test]))
    x, y = x[:test_images], y[:test_images]
    float_pred = _predict(model, x)
    float_accuracy = float(np.mean(float_pred == y))
    print(f"float: {float_accuracy:.4f}", flush=True)
    train_source = load("fashion_mnist", "train")  # read once; each draw builds its pipeline
    draws = []
    for rate in learning_rates:
        for seed in seeds:
            data = pipeline_for(network, train_source, training=True,
                                augment=recipe.augment, batch_size=recipe.batch_size, seed=seed)
            start = time.perf_counter()
            quantized = qat(model, data, None, epochs=1 if rate > 0 else 0, recipe=recipe,
                            learning_rate=rate if rate > 0 else None, steps_per_epoch=steps,
                            verbose=0)
            seconds = time.perf_counter() - start
            keras_pred = _predict(quantized, x)
            file_pred = TFLiteModel(to_tflite(quantized, kind="qat_int8"))(x).argmax(-1)
            draw = {"learning_rate": rate, "seed": seed,
                    "keras_accuracy": float(np.mean(keras_pred == y)),
                    "accuracy": float(np.mean(file_pred == y)),
                    "agreement": float(np.mean(file_pred == float_pred)),
                    "qat_seconds": round(seconds, 1)}
            draw["change"] = draw["accuracy"] - float_accuracy
            print(json.dumps(draw), flush=True)
            draws.append(draw)
            if rate == 0:
                break  # one draw: the seed would only change which batches set the ranges
    return {"checkpoint": str(checkpoint), "float_accuracy": float_accuracy, "steps": steps,
            "test_images": len(y), "batch_size": recipe.batch_size, "draws": draws}


def write_docs(result, command):
    DOCS.mkdir(exist_ok=True)
    (DOCS / "qat_learning_rate.json").write_text(json.dumps({**result, "command": command},
                                                            indent=2) + "\n")
    lines = ["# What QAT fine-tuning costs a converged model, by learning rate", "",
             f"Checkpoint `{result['checkpoint']}`: Keras float test accuracy "
             f"{100 * result['float_accuracy']:.2f} % ({result['test_images']:,} test images). "
             "Each draw: "
             f"`qat(..., steps_per_epoch={result['steps']})` (native engine, AdamW, batch "
             f"{result['batch_size']}, the recipe's flips and label smoothing) with one data-order "
             "seed, then its full-int8 TFLite file in the LiteRT interpreter; \"change\" and "
             "\"agreement\" are the file's against the float model. Rate 0: calibration only.",
             f"Command: `{command}`", "",
             "| learning rate | seed | Keras QAT | QAT int8 file | change | agreement with float "
             "| QAT seconds |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for d in result["draws"]:
        lines.append(f"| {d['learning_rate']:g} | {d['seed']} | "
                     f"{100 * d['keras_accuracy']:.2f} % | {100 * d['accuracy']:.2f} % | "
                     f"{100 * d['change']:+.2f} | {100 * d['agreement']:.2f} % | "
                     f"{d['qat_seconds']} |")
    lines += ["", "| learning rate | draws | mean change | worst change |", "|---:|---:|---:|---:|"]
    for rate in dict.fromkeys(d["learning_rate"] for d in result["draws"]):
        changes = [d["change"] for d in result["draws"] if d["learning_rate"] == rate]
        lines.append(f"| {rate:g} | {len(changes)} | {100 * np.mean(changes):+.2f} | "
                     f"{100 * min(changes):+.2f} |")
    (DOCS / "qat_learning_rate.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained float .keras file")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.0, 1e-5, 1e-4],
                        help="QAT peak learning rates (0: calibration only)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=50, help="QAT steps per draw")
    parser.add_argument("--test-images", type=int, help="the first N test images (default: all)")
    args = parser.parse_args(argv)
    if (any(rate < 0 for rate in args.learning_rates) or args.steps < 1
            or (args.test_images is not None and args.test_images < 1)):
        parser.error(f"learning rates must be >= 0, --steps and --test-images >= 1. Received: "
                     f"--learning-rates {args.learning_rates} --steps {args.steps} "
                     f"--test-images {args.test_images}")
    result = measure(args.checkpoint, args.learning_rates, args.seeds, args.steps,
                     args.test_images)
    command = "python benchmarks/qat_learning_rate.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    write_docs(result, command)


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
