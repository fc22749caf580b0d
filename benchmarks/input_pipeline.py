"""Input-pipeline throughput versus what MobileNetV2 consumes while training, on this machine.

The training pipeline is the one the Fashion-MNIST recipe uses: `load("fashion_mnist")` ->
`make_pipeline` for mobilenet_v2 at 32x32x3, batch 128, flip + pad-and-crop, cached in memory.
One warm-up epoch fills the cache; the next epochs are timed (images/s). The model side is
mobilenet_v2 (alpha 1.0, 32x32x3, 10 classes) trained with `model.fit` (Adam, sparse categorical
cross-entropy, steps_per_execution default) on batches taken from that pipeline and held in
memory, so its steps/s measure the model alone. The ratio of the two says how much headroom the
input pipeline has (the target is at least 5x). A last run feeds the live pipeline to `model.fit`.

Usage:
    PYTHONPATH=. python benchmarks/input_pipeline.py            # writes docs/input_pipeline.md
    PYTHONPATH=. python benchmarks/input_pipeline.py --quick    # a smoke run, prints only
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "input_pipeline.md"


def _load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def _busy_processes() -> list[str]:
    """Other processes using noticeable CPU right now (from `ps`), to note a busy machine."""
    import subprocess

    try:
        out = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True,
                             text=True, timeout=10).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return []
    busy = []
    for line in out:
        pid, pcpu, command = line.split(None, 2)
        if int(pid) != os.getpid() and float(pcpu) >= 20:
            busy.append(f"`{command.strip()[:70]}` ({float(pcpu):.0f} % CPU)")
    return busy


def measure_pipeline(dataset, epochs: int):
    """Seconds and images of a warm-up epoch, then images/s over `epochs` timed epochs."""
    start = time.perf_counter()
    warm_images = sum(int(x.shape[0]) for x, _ in dataset)
    warm_s = time.perf_counter() - start
    images, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _ in dataset:
            images += int(x.shape[0])
    seconds = time.perf_counter() - start
    return warm_images, warm_s, images, seconds


def measure_training(model, batches, steps: int, warmup_steps: int):
    """Steps/s of `model.fit` on in-memory batches (after a warm-up fit that traces the step)."""
    import tensorflow as tf

    xs = tf.concat([x for x, _ in batches], axis=0)
    ys = tf.concat([y for _, y in batches], axis=0)
    batch_size = int(batches[0][0].shape[0])
    # Same static batch shape as the pipeline (drop_remainder), so one traced train step serves both.
    data = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(batch_size, drop_remainder=True).repeat()
    if warmup_steps:
        model.fit(data, epochs=1, steps_per_epoch=warmup_steps, verbose=0)
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps / (time.perf_counter() - start)


def measure_end_to_end(model, dataset, steps: int, warmup_steps: int):
    """Steps/s of `model.fit` fed by the pipeline itself (after a warm-up on a first iterator)."""
    data = dataset.repeat()
    model.fit(data, epochs=1, steps_per_epoch=warmup_steps, verbose=0)
    start = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="10,000 images, 1 timed epoch, 10 training steps; prints, writes no doc")
    parser.add_argument("--epochs", type=int, default=2, help="timed pipeline epochs (default 2)")
    parser.add_argument("--steps", type=int, default=50, help="timed training steps (default 50)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=DOC, help=f"report (default {DOC})")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    import kerascnn
    from kerascnn.data import from_arrays, load_fashion_mnist, make_pipeline

    wall_start = time.perf_counter()
    input_shape, epochs, steps, warmup_steps = (32, 32, 3), args.epochs, args.steps, 5
    images, labels = load_fashion_mnist("train")
    if args.quick:
        images, labels, epochs, steps, warmup_steps = images[:10000], labels[:10000], 1, 10, 3
    info = kerascnn.model_info("mobilenet_v2")
    dataset = make_pipeline(from_arrays(images, labels), input_shape=input_shape,
                            preprocessing=info.preprocessing, training=True,
                            batch_size=args.batch_size, augment=("flip", "crop"), seed=0)
    load_before, busy_before = _load_average(), _busy_processes()

    warm_images, warm_s, timed_images, timed_s = measure_pipeline(dataset, epochs)
    pipeline_ips = timed_images / timed_s
    print(f"pipeline: warm-up epoch {warm_images} images in {warm_s:.1f} s "
          f"({warm_images / warm_s:.0f} images/s); cached epochs {pipeline_ips:.0f} images/s")

    keras.utils.set_random_seed(0)
    model = kerascnn.build("mobilenet_v2", input_shape=input_shape, classes=10, alpha=1.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    batches = list(dataset.take(min(steps, 60)))
    # In-memory runs before and after the live-pipeline run show how much the machine drifted.
    before = measure_training(model, batches, steps, warmup_steps)
    e2e = measure_end_to_end(model, dataset, steps, warmup_steps)
    after = measure_training(model, batches, steps, 0)
    steps_per_s = (before + after) / 2
    model_ips = steps_per_s * args.batch_size
    ratio = pipeline_ips / model_ips
    print(f"model.fit (in-memory batches): {before:.2f} and {after:.2f} steps/s, mean "
          f"{model_ips:.0f} images/s; pipeline / model = {ratio:.1f}x")
    print(f"model.fit fed by the live pipeline: {e2e:.2f} steps/s = {e2e * args.batch_size:.0f} images/s")
    load_after, busy_after = _load_average(), _busy_processes()
    print(f"load average before {load_before}, after {load_after}; cores: {os.cpu_count()}")

    if args.quick:
        return 0
    command = "PYTHONPATH=. python benchmarks/input_pipeline.py"
    others = sorted(set(busy_before) | set(busy_after))
    quiet = ("No other process used 20 % CPU or more when the runs started and ended." if not others
             else "**Other processes were running** (20 % CPU or more at the start or end): "
             + "; ".join(others) + ". Both sides shared the cores with them, so the absolute "
             "numbers are lower than on a quiet machine.")
    wall = time.perf_counter() - wall_start
    text = f"""# Input pipeline throughput

Command: `{command}` ({wall / 60:.1f} minutes here).

The training pipeline of the Fashion-MNIST recipe (`kerascnn.data.load("fashion_mnist")` ->
`make_pipeline` for mobilenet_v2 at 32x32x3, batch {args.batch_size}, augment flip + pad-and-crop,
in-memory cache) against what MobileNetV2 (alpha 1.0, 32x32x3, 10 classes) consumes in
`model.fit` (Adam, steps_per_execution 1) on batches of that pipeline held in memory.

| measurement | result |
| --- | --- |
| pipeline, warm-up epoch (decode, resize to 32x32, fill the cache) | {warm_images / warm_s:,.0f} images/s ({warm_s:.1f} s for {warm_images:,} images) |
| pipeline, cached epochs (shuffle, augment, normalise, batch) | **{pipeline_ips:,.0f} images/s** ({epochs} epochs, {timed_s:.1f} s) |
| MobileNetV2 `model.fit`, in-memory batches ({steps} steps, run before and after the next row) | {before:.2f} and {after:.2f} steps/s, mean {steps_per_s:.2f} = **{model_ips:,.0f} images/s** |
| `model.fit` fed by the live pipeline ({steps} steps) | {e2e:.2f} steps/s = {e2e * args.batch_size:,.0f} images/s |
| ratio pipeline (cached epochs) / model (mean) | **{ratio:.1f}x** (target: at least 5x) |

Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},
TensorFlow {tf.__version__}, Keras {keras.__version__}. Load average (1, 5, 15 min) before the runs
{load_before}, after {load_after}. {quiet}

The pipeline runs on the same cores as the training step, so in `model.fit` its work is not free:
at {ratio:.1f}x it costs about {100 / ratio:.0f} % of the model's CPU time per image. The live-pipeline
row includes that cost, a new iterator (the 10,000-image shuffle buffer fills first) and any change
in the machine's load between the rows.
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    sys.exit(main())
