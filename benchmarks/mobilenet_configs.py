"""Training speed (and optionally accuracy) of MobileNetV2 configurations on Fashion-MNIST.

The main job must train, quantize and export within 15 minutes on a 2-core CPU, so the width
(alpha), input size and output stride of its MobileNetV2 are chosen by measured seconds per
training step (and test accuracy for the candidates). Each configuration trains with
`kerascnn.training.train` and the `mobilenet_fashion_mnist` recipe on the offline Fashion-MNIST
pipeline; the first epoch includes tracing, so the step time is taken from the second.

Usage:
    .venv/bin/python benchmarks/mobilenet_configs.py                     # speed, 60 steps each
    .venv/bin/python benchmarks/mobilenet_configs.py --full --configs 0.5,32,16
    .venv/bin/python benchmarks/mobilenet_configs.py --configs 0.5,64,32 --threads 2,2
Results are printed and appended to docs/mobilenet_configs.json. Run it alone: other jobs on the
2 cores change the timings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

DEFAULT_CONFIGS = ("1.0,32,32", "0.5,64,32", "0.35,64,32", "0.35,96,32", "0.5,32,16",
                   "0.75,32,16", "0.35,32,8")


def parse_config(text: str) -> tuple:
    """'alpha,input_size,output_stride' -> (float, int, int)."""
    try:
        alpha, size, stride = text.split(",")
        return float(alpha), int(size), int(stride)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a configuration is 'alpha,input_size,output_stride', e.g. 0.5,32,16. "
            f"Received: {text!r}") from None


def measure(alpha, size, stride, *, steps, epochs, batch_size, full, fused_bn="auto",
            threads="cpu", batch_splits="auto"):
    """Trains one configuration; `fused_bn`, `batch_splits` and `threads` as in the recipe and
    `configure_for_hardware` (thread counts only take effect in a fresh process)."""
    import keras

    import kerascnn
    from kerascnn.data import load, pipeline_for
    from kerascnn.training import configure_for_hardware, get_recipe, train

    recipe = get_recipe("mobilenet_fashion_mnist", epochs=epochs, batch_size=batch_size,
                        fused_bn=fused_bn, batch_splits=batch_splits)
    hardware = configure_for_hardware(recipe, threads=threads)
    model = kerascnn.build("mobilenet_v2", input_shape=(size, size, 3), classes=10, alpha=alpha,
                           output_stride=None if stride == 32 else stride)
    train_data = pipeline_for(model, load("fashion_mnist", "train"), training=True,
                              augment=recipe.augment, batch_size=batch_size, seed=0)
    test_data = (pipeline_for(model, load("fashion_mnist", "test"), training=False,
                              batch_size=256) if full else None)
    seconds = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    history = train(model, train_data, test_data, recipe, steps_per_epoch=None if full else steps,
                    callbacks=[EpochTimer()], verbose=2 if full else 0)
    steps_done = len(train_data) if full else steps
    return {"alpha": alpha, "input_size": size, "output_stride": stride,
            "batch_size": batch_size,
            "threads": ("tensorflow default" if threads is None
                        else "unchanged" if hardware["threads"] is None
                        else ",".join(map(str, hardware["threads"]))),
            "parameters": int(model.count_params()),
            "batch_splits": history.results["batch_splits"], "epochs": epochs, "steps_per_epoch": steps_done,
            "epoch_seconds": [round(s, 1) for s in seconds],
            "step_ms": round(1000 * seconds[-1] / steps_done, 1),
            "test_accuracy": [round(float(v), 4) for v in history.history.get("val_accuracy", [])]}


def parse_threads(text: str):
    """'cpu' (`cpu_threads()`), 'default' (TensorFlow's own) or 'inter,intra'."""
    if text in ("cpu", "default"):
        return None if text == "default" else "cpu"
    try:
        inter, intra = (int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--threads is 'cpu', 'default' or 'inter,intra' (e.g. 2,1). Received: {text!r}"
        ) from None
    return inter, intra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", type=parse_config,
                        default=[parse_config(c) for c in DEFAULT_CONFIGS],
                        help="alpha,input_size,output_stride ...")
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch (speed mode)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (the last one is timed)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--full", action="store_true",
                        help="whole epochs with test accuracy after each")
    parser.add_argument("--threads", type=parse_threads, default="cpu",
                        help="TensorFlow thread counts: cpu (the default, cpu_threads()), "
                             "default (TensorFlow's) or inter,intra. TensorFlow fixes them when it "
                             "starts, so they apply to the first configuration of a run (the "
                             "row's 'threads' says 'unchanged' after it): compare thread "
                             "counts in separate runs")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    results = []
    for alpha, size, stride in args.configs:
        row = measure(alpha, size, stride, steps=args.steps, epochs=args.epochs,
                      batch_size=args.batch_size, full=args.full, threads=args.threads)
        print(json.dumps(row), flush=True)
        results.append(row)
    DOCS.mkdir(exist_ok=True)
    path = DOCS / "mobilenet_configs.json"
    previous = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps(previous + results, indent=2) + "\n")


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
