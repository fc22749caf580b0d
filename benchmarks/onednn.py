"""Training step time with TensorFlow's own CPU kernels against its oneDNN kernels.

    .venv/bin/python benchmarks/onednn.py [--steps 30] [--repeats 2] [--out docs/onednn.md]

TensorFlow uses oneDNN by default only on CPUs with AVX-512 VNNI, BF16 or AMX; elsewhere
`TF_ENABLE_ONEDNN_OPTS=1` turns it on, and the `kerascnn` command and the benchmarks ask for it
(`kerascnn.env.prefer_onednn`). This measures what that buys: each model trains on random
in-memory data (no input pipeline) in a fresh process with the variable set to 0 and to 1, in
turn, `--repeats` times; after 5 warm-up steps, the median of `--steps` step times (from a batch
callback) is kept. Models: the main job's classifier and the segmentation benchmark's two models
as `benchmarks/segmentation.py` builds them. Run it alone: other jobs on the cores change the
timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# registry name -> (build kwargs, input size, batch, classes). The segmentation models also get
# the kwargs benchmarks/segmentation.py builds them with (its MODEL_KWARGS).
MODELS = {
    "mobilenet_v2": ({"alpha": 0.5, "output_stride": 16}, 32, 128, 10),
    "unet_mobilenet_v2": ({"alpha": 0.35}, 64, 32, 11),
    "deeplabv3_plus_mobilenet_v2": ({"alpha": 0.35}, 64, 32, 11),
}
LABELS = {
    "mobilenet_v2": "mobilenet_v2 (the main job's: alpha 0.5, 32x32, output stride 16), batch 128",
    "unet_mobilenet_v2": "unet_mobilenet_v2 (alpha 0.35, 64x64, decoder (96, 64, 48, 32, 16)), "
                         "batch 32",
    "deeplabv3_plus_mobilenet_v2": "deeplabv3_plus_mobilenet_v2 (alpha 0.35, 64x64, separable), "
                                   "batch 32",
}


def measure(name: str, steps: int) -> dict:
    """Runs in a fresh process: the median training step in ms, and whether oneDNN is on."""
    import time

    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    import kerascnn
    from kerascnn.training import fused_batchnorm

    kwargs, size, batch, classes = MODELS[name]
    segmentation = kerascnn.model_info(name).task == "segmentation"
    if segmentation:
        from segmentation import MODEL_KWARGS  # benchmarks/, on the path of this script's process

        kwargs = {**kwargs, **MODEL_KWARGS[name]}
    keras.utils.set_random_seed(0)
    model = kerascnn.build(name, input_shape=(size, size, 3), classes=classes, **kwargs)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3) if segmentation else
                  keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, (batch, size, size) if segmentation else (batch,))
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    stamps = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: stamps.append(time.perf_counter()))
    with fused_batchnorm(model):  # as kerascnn.training.train runs it
        model.fit(data, steps_per_epoch=5 + steps + 1, epochs=1, verbose=0, callbacks=[timer])
    times = [1000 * (b - a) for a, b in zip(stamps[5:], stamps[6:])]
    return {"ms": statistics.median(times), "onednn": bool(_pywrap_util_port.IsMklEnabled())}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_child(name: str, onednn: str, steps: int) -> dict:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, __file__, "--child", name, "--steps", str(steps)],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f"{name} with TF_ENABLE_ONEDNN_OPTS={onednn} failed:\n"
                           f"{run.stderr[-3000:]}")
    row = json.loads(lines[-1].split(" ", 1)[1])
    if row["onednn"] != (onednn == "1"):
        raise RuntimeError(f"TF_ENABLE_ONEDNN_OPTS={onednn} but TensorFlow reports oneDNN "
                           f"{'on' if row['onednn'] else 'off'}")
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "onednn.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag in ("steps", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1. Received: {getattr(args, flag)}")
    if args.child:
        print("RESULT", json.dumps(measure(args.child, args.steps)))
        return
    ms = {(name, v): [] for name in args.models for v in ("0", "1")}
    for _ in range(args.repeats):
        for name in args.models:
            for onednn in ("0", "1"):
                ms[name, onednn].append(run_child(name, onednn, args.steps)["ms"])
                print(name, f"TF_ENABLE_ONEDNN_OPTS={onednn}", f"{ms[name, onednn][-1]:.0f} ms",
                      flush=True)
    rows = ["# Training step time: TensorFlow's CPU kernels against oneDNN's", "",
            f"Command: `.venv/bin/python benchmarks/onednn.py --steps {args.steps} "
            f"--repeats {args.repeats}`. CPU: {cpu_name()}, "
            f"{os.cpu_count()} cores. Each model trains on random in-memory data in a fresh "
            "process per setting, the settings in turn; median step after 5 warm-up steps "
            "(`kerascnn.training.fused_batchnorm`, TensorFlow's default threads).", "",
            "| model | TF_ENABLE_ONEDNN_OPTS=0 (ms per step) | =1 (ms per step) | speed-up |",
            "|---|---:|---:|---:|"]
    results = {}
    for name in args.models:
        off, on = statistics.median(ms[name, "0"]), statistics.median(ms[name, "1"])
        results[name] = {"off_ms": ms[name, "0"], "on_ms": ms[name, "1"], "speedup": off / on}
        rows.append(f"| {LABELS[name]} | {off:.0f} ({', '.join(f'{v:.0f}' for v in ms[name, '0'])})"
                    f" | {on:.0f} ({', '.join(f'{v:.0f}' for v in ms[name, '1'])}) | "
                    f"{off / on:.2f}x |")
    rows += ["", "Runs in brackets. Without the variable, TensorFlow decides by the CPU: on this one "
             "(AVX2, no AVX-512) it keeps its own kernels, i.e. the =0 column. `kerascnn` and the "
             "benchmarks set =1 unless the variable is already set (kerascnn/env.py)."]
    Path(args.out).write_text("\n".join(rows) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
