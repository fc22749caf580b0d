"""The degradation experiment (He et al., 2016, Fig. 6) on Fashion-MNIST padded to 32x32.

A deeper plain network (no shortcuts) trains to a *higher training error* than a shallower one:
not overfitting, an optimisation difficulty. With identity shortcuts the deeper network trains
better. This script trains plain20_cifar, plain56_cifar, resnet20_cifar and resnet56_cifar with
the same recipe (`cifar_resnet`: SGD 0.1, Nesterov, weight decay, warm-up + cosine, flips and
pad-and-crop) on the same subset, logs the training error along the way and the test error after
each epoch, and writes docs/degradation.md, .json and .png.

Usage (the committed results; the defaults):
    .venv/bin/python benchmarks/degradation.py
    .venv/bin/python benchmarks/degradation.py --train-samples 2000 --epochs 1   # smoke run

Fashion-MNIST's 28x28 images are zero-padded to 32x32 (2 pixels per side) and kept as one
channel. The training error plotted is the per-batch error of the training-mode forward pass
(augmented inputs), smoothed over 40 batches.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOCS = ROOT / "docs"
MODELS = ("plain20_cifar", "plain56_cifar", "resnet20_cifar", "resnet56_cifar")


def padded_fashion_mnist(split, limit=None, seed=0):
    from kerascnn.data import load_fashion_mnist

    images, labels = load_fashion_mnist(split)
    if limit is not None and limit < len(images):
        keep = np.random.default_rng(seed).permutation(len(images))[:limit]
        images, labels = images[keep], labels[keep]
    return np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None], labels.astype("int64")


def _batch_errors():
    import keras

    class BatchErrors(keras.callbacks.Callback):
        """Per-batch training error, recovered from Keras' running epoch mean of accuracy."""

        def __init__(self):
            super().__init__()
            self.errors, self._previous = [], 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._previous = 0.0

        def on_train_batch_end(self, batch, logs=None):
            mean = float(logs["accuracy"])
            self.errors.append(1.0 - (mean * (batch + 1) - self._previous * batch))
            self._previous = mean

    return BatchErrors()


def cpu_seconds() -> float:
    """User + system CPU time of this process (TensorFlow's threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(name, train_xy, test_xy, epochs, batch_size, seed):
    import keras

    import kerascnn
    from kerascnn.data import from_arrays, pipeline_for
    from kerascnn.training import get_recipe, train

    keras.utils.set_random_seed(seed)
    recipe = get_recipe("cifar_resnet", epochs=epochs, batch_size=batch_size)
    model = kerascnn.build(name, input_shape=(32, 32, 1), classes=10)
    train_data = pipeline_for(model, from_arrays(*train_xy), training=True,
                              augment=recipe.augment, batch_size=batch_size, seed=seed)
    test_data = pipeline_for(model, from_arrays(*test_xy), training=False, batch_size=256)
    errors = _batch_errors()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    history = train(model, train_data, test_data, recipe, callbacks=[errors], verbose=0)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    return {"model": name, "layers": int(re.search(r"\d+", name).group()),
            "shortcuts": name.startswith("resnet"), "parameters": int(model.count_params()),
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "batch_errors": [round(e, 4) for e in errors.errors],
            "epoch_train_error": [round(1 - a, 4) for a in history.history["accuracy"]],
            "epoch_test_error": [round(1 - a, 4) for a in history.history["val_accuracy"]],
            "final_test_error": round(1 - history.results["accuracy"], 4)}


def smooth(values, window=40):
    values = np.asarray(values, dtype=float)
    if len(values) < window:
        return values
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot(results, steps_per_epoch, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, shortcuts, title in ((axes[0], False, "plain"), (axes[1], True, "ResNet")):
        for r in (r for r in results if r["shortcuts"] == shortcuts):
            style = "-" if r["layers"] > 20 else "--"
            color = "tab:red" if r["layers"] > 20 else "tab:blue"
            curve = smooth(r["batch_errors"])
            x = (np.arange(len(curve)) + (len(r["batch_errors"]) - len(curve))) / steps_per_epoch
            ax.plot(x, 100 * curve, style, color=color, lw=1.2,
                    label=f"{r['layers']}-layer, training")
            epochs = np.arange(1, len(r["epoch_test_error"]) + 1)
            ax.plot(epochs, 100 * np.asarray(r["epoch_test_error"]), "o" + style, color=color,
                    lw=2.2, ms=4, label=f"{r['layers']}-layer, test")
        ax.set_title(f"{title} networks")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, None)
    fig.suptitle("Fashion-MNIST (padded to 32x32): training error (thin) and test error (thick)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(results, args, total_seconds, total_cpu, path):
    by_name = {r["model"]: r for r in results}
    lines = ["# The degradation experiment on Fashion-MNIST", "",
             f"Command: `.venv/bin/python benchmarks/degradation.py --train-samples "
             f"{args.train_samples} --epochs {args.epochs}` (2-core CPU, TensorFlow backend). "
             f"{args.train_samples:,} training images (a fixed random subset), the whole test "
             f"set (10,000), 28x28 zero-padded to 32x32, one channel; recipe `cifar_resnet` "
             f"(SGD 0.1 Nesterov, weight decay 2.5e-4, warm-up + cosine, flips and pad-and-crop), "
             f"{args.epochs} epoch(s), batch {args.batch_size}, seed {args.seed}. Total: "
             f"{total_cpu / 60:.1f} CPU-minutes (user + system time of the process), "
             f"{total_seconds / 60:.1f} min wall time.", "",
             "![training and test error](degradation.png)", "",
             "| model | parameters | training error, last epoch | final test error | wall time | CPU time |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {100 * r['epoch_train_error'][-1]:.2f} % "
                     f"| {100 * r['final_test_error']:.2f} % | {r['seconds'] / 60:.1f} min "
                     f"| {r['cpu_seconds'] / 60:.1f} CPU-min |")
    lines += ["", "The final test error is measured after training's precise-BN re-estimation of "
              "the BN statistics; the per-epoch test errors in the figure are before it.", "",
              "Training error / test error per epoch (%; training error: the mean over the "
              "epoch's batches in training mode):", ""]
    for r in results:
        lines.append(f"- {r['model']}: " + ", ".join(
            f"{100 * e:.1f} / {100 * t:.1f}"
            for e, t in zip(r["epoch_train_error"], r["epoch_test_error"])))
    verdict = []
    if {"plain20_cifar", "plain56_cifar"} <= set(by_name):
        p20, p56 = (by_name[n]["epoch_train_error"][-1] for n in ("plain20_cifar", "plain56_cifar"))
        verdict.append(f"plain56's last-epoch training error is {100 * p56:.2f} % against "
                       f"plain20's {100 * p20:.2f} % ("
                       + ("higher: the degradation problem" if p56 > p20 else
                          "not higher: no degradation at this budget") + ")")
    if {"resnet20_cifar", "resnet56_cifar"} <= set(by_name):
        r20, r56 = (by_name[n]["epoch_train_error"][-1] for n in ("resnet20_cifar", "resnet56_cifar"))
        verdict.append(f"resnet56's is {100 * r56:.2f} % against resnet20's {100 * r20:.2f} % ("
                       + ("lower: with shortcuts depth helps" if r56 < r20 else
                          "not lower at this budget") + ")")
    if verdict:
        lines += ["", "Result: " + "; ".join(verdict) + "."]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--train-samples", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(DOCS / "degradation"),
                        help="path prefix of the .md, .json and .png results")
    args = parser.parse_args(argv)

    from kerascnn.training import configure_for_hardware

    configure_for_hardware(threads="cpu")
    train_xy = padded_fashion_mnist("train", args.train_samples, args.seed)
    test_xy = padded_fashion_mnist("test")
    results, started, cpu_started = [], time.perf_counter(), cpu_seconds()
    for name in args.models:
        result = run_one(name, train_xy, test_xy, args.epochs, args.batch_size, args.seed)
        results.append(result)
        print(f"{name}: training error per epoch {result['epoch_train_error']}, test error "
              f"{result['final_test_error']}, {result['seconds']:.0f} s", flush=True)
    total, total_cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(
        {"args": vars(args), "total_seconds": round(total, 1),
         "total_cpu_seconds": round(total_cpu, 1), "results": results}, indent=1))
    plot(results, len(train_xy[1]) // args.batch_size, out.with_suffix(".png"))
    write_markdown(results, args, total, total_cpu, out.with_suffix(".md"))
    print(f"Wrote {out.with_suffix('.md')}, .json and .png ({total / 60:.1f} min, "
          f"{total_cpu / 60:.1f} CPU-min)")


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
