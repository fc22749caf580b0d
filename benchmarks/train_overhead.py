"""Training speed of `kerascnn.training.train` against a plain `model.fit`.

    python benchmarks/train_overhead.py [--rounds 3] [--steps 60] [--out docs/train_overhead.md]

Plain side: keras.applications MobileNetV2 (alpha 1.0, 32x32x3, 10 classes, random weights)
compiled with Adam and fed NumPy arrays by `model.fit`. kerascnn side: kerascnn's mobilenet_v2 of
the same size through `train()` with its tf.data pipeline (augmentation off, cached), checkpoints,
backups, CSV and TensorBoard logging on. Same batch (128) and data (Fashion-MNIST resized to 32x32,
grayscale copied to RGB). The two alternate for `--rounds` rounds of one `--steps`-step epoch each;
per-step wall times are recorded by a callback, skipping each call's first 10 steps (tracing),
and the median step times are compared (target: kerascnn images/s at least 0.97 of plain).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from kerascnn.env import prefer_onednn

prefer_onednn()  # before TensorFlow is imported: its faster CPU kernels (kerascnn/env.py)

import keras
import kerascnn
from kerascnn.data import from_arrays, load_fashion_mnist, pipeline_for, to_model_input
from kerascnn.training import Recipe, train


class StepTimes(keras.callbacks.Callback):
    def __init__(self, skip=10):
        super().__init__()
        self.skip, self.times, self._start, self._seen = skip, [], None, 0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._seen += 1
        if self._seen > self.skip:
            self.times.append(time.perf_counter() - self._start)

    def on_train_begin(self, logs=None):
        self._seen = 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="docs/train_overhead.md")
    args = parser.parse_args(argv)
    n = args.steps * args.batch_size
    images, labels = load_fashion_mnist("train")
    images, labels = images[:n], labels[:n].astype("int64")
    prep = kerascnn.model_info("mobilenet_v2").preprocessing
    x = to_model_input(images, (32, 32, 3), prep)

    plain = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)
    plain.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    ours = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), classes=10)
    assert ours.count_params() == plain.count_params()
    data = pipeline_for(ours, from_arrays(images, labels), training=True,
                        batch_size=args.batch_size, augment=("none",), seed=0)
    recipe = Recipe(optimizer="adamw", learning_rate=1e-3, epochs=1, batch_size=args.batch_size,
                    warmup_epochs=0, label_smoothing=0.0, precise_bn_steps=0)

    plain_times, ours_times = StepTimes(), StepTimes()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            plain.fit(x, labels, batch_size=args.batch_size, epochs=1, verbose=0,
                      callbacks=[plain_times], shuffle=True)
            train(ours, data, None, recipe, out_dir=Path(tmp) / f"round{r}", verbose=0,
                  callbacks=[ours_times])
    plain_ms = statistics.median(plain_times.times) * 1000
    ours_ms = statistics.median(ours_times.times) * 1000
    plain_ips, ours_ips = args.batch_size / plain_ms * 1000, args.batch_size / ours_ms * 1000
    ratio = ours_ips / plain_ips
    lines = ["# Training speed: kerascnn.train vs plain model.fit", "",
             f"Command: `python benchmarks/train_overhead.py --rounds {args.rounds} --steps "
             f"{args.steps}` (CPU, 2 cores). MobileNetV2 1.0 at 32x32x3, batch {args.batch_size}, "
             "augmentation off on both sides, runs interleaved; median step time over "
             f"{len(plain_times.times)} / {len(ours_times.times)} steps.", "",
             "| side | median step (ms) | images/s |", "|---|---:|---:|",
             f"| plain `model.fit` on keras.applications MobileNetV2, NumPy arrays | {plain_ms:.1f} | {plain_ips:.0f} |",
             f"| `kerascnn.training.train` on kerascnn mobilenet_v2, tf.data pipeline, checkpoints and logs | {ours_ms:.1f} | {ours_ips:.0f} |",
             "", f"Ratio kerascnn / plain: **{ratio:.3f}** (target at least 0.97: "
             f"{'met' if ratio >= 0.97 else 'NOT met'})."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
