"""Seconds per training step of `kerascnn.train` with and without the fused BN kernel, the CPU
thread counts and split-batch steps.

    .venv/bin/python benchmarks/training_step.py [--steps 150] [--repeats 2] [--out docs/training_step.md]

Each configuration runs in its own process (TensorFlow's thread counts are fixed once its runtime
has started): MobileNetV2 (alpha 0.5; 32x32 with output stride 16, the main job's model, and
64x64 with output stride 32) trains as `benchmarks/mobilenet_configs.py` trains a configuration
(`train()`, the `mobilenet_fashion_mnist` recipe, the Fashion-MNIST pipeline) for two epochs of
`--steps` steps; the second epoch is timed (the first includes tracing). The configurations run
in turn, `--repeats` times. Run it alone: other jobs on the cores change the timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# name: (input size, output stride, fused_bn, threads, batch_splits, what the row shows)
CONFIGS = {
    "keras_bn": (32, 16, False, None, 1, "Keras BatchNormalization, TensorFlow's default threads"),
    "fused_bn": (32, 16, True, None, 1, "fused BN kernel (`recipe.fused_bn`)"),
    "fused_bn_cpu_threads": (32, 16, True, "cpu", 1, "fused BN kernel + "
                             "`configure_for_hardware(threads=\"cpu\")`"),
    "split2": (32, 16, True, "cpu", 2, "the same + batches split in 2 parts "
               "(`recipe.batch_splits`)"),
    "64_cpu_threads": (64, 32, True, "cpu", 1, "64x64, output stride 32: fused BN kernel + "
                       "CPU threads"),
    "64_split2": (64, 32, True, "cpu", 2, "64x64, output stride 32: the same + batches split "
                  "in 2 parts"),
}
# Each row's speed is given against this row of the same input size.
BASELINES = {"keras_bn": "keras_bn", "fused_bn": "keras_bn", "fused_bn_cpu_threads": "keras_bn",
             "split2": "keras_bn", "64_cpu_threads": "64_cpu_threads",
             "64_split2": "64_cpu_threads"}


def measure(name: str, steps: int) -> float:
    """Runs in a fresh process: seconds for the second epoch of `steps` steps."""
    from mobilenet_configs import measure as measure_config

    size, stride, fused_bn, threads, splits, _ = CONFIGS[name]
    row = measure_config(0.5, size, stride, steps=steps, epochs=2, batch_size=128, full=False,
                         fused_bn=fused_bn, threads=threads, batch_splits=splits)
    assert row["batch_splits"] == splits, row
    return row["epoch_seconds"][-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "training_step.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT", json.dumps(measure(args.child, args.steps)))
        return
    seconds = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name in CONFIGS:
            run = subprocess.run([sys.executable, __file__, "--child", name, "--steps",
                                  str(args.steps)], capture_output=True, text=True, cwd=ROOT)
            lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
            if run.returncode != 0 or not lines:
                raise RuntimeError(f"{name} failed:\n{run.stderr[-3000:]}")
            seconds[name].append(json.loads(lines[-1].split(" ", 1)[1]))
            print(name, f"{seconds[name][-1]:.1f} s", flush=True)
    rows = ["# Training step time: fused BN kernel, CPU thread counts, split batches", "",
            f"Command: `.venv/bin/python benchmarks/training_step.py --steps {args.steps} "
            f"--repeats {args.repeats}`. MobileNetV2 alpha 0.5, batch 128, "
            "`kerascnn.training.train` with the `mobilenet_fashion_mnist` recipe and the "
            f"Fashion-MNIST pipeline; the second of two {args.steps}-step epochs is timed, each "
            "configuration in its own process, in turn. 32x32 rows use output stride 16 (the "
            "main job's model). Speed is against the first row of the same input size.", "",
            "| configuration | seconds per 100 steps (median) | runs | speed |",
            "|---|---:|---|---:|"]
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, values in seconds.items():
        rows.append(f"| {CONFIGS[name][-1]} | {100 * medians[name] / args.steps:.1f} | "
                    f"{', '.join(f'{100 * v / args.steps:.1f}' for v in values)} | "
                    f"{medians[BASELINES[name]] / medians[name]:.2f}x |")
    Path(args.out).write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
