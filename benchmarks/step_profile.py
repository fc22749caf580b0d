"""Where a training step's time goes: TensorFlow's profiler over MobileNetV2 training steps,
summed by op type.

    .venv/bin/python benchmarks/step_profile.py [--configs 0.5,32,16 0.5,64,32] [--steps 10]
        [--out docs/step_profile.md]

Each configuration ('alpha,input_size,output_stride', as in `benchmarks/mobilenet_configs.py`)
runs in its own process with the main job's settings (`configure_for_hardware(threads="cpu")`, the
fused BN kernel, batch 128, SGD) on random inputs held in memory, so the input pipeline is not
in the trace. After warm-up steps (the step time is taken over steps 10-40 of a
fit call), `--steps` steps are traced with `tf.profiler` and the
trace's op events are summed per op type over all of TensorFlow's compute threads. The table
reports milliseconds of compute per step and the wall time per step; the threads' busy time over
the wall time is the number of cores kept busy on average. Run it alone: other jobs on the
cores change the timings.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Op types grouped for the summary table (prefixes as TensorFlow's oneDNN build names them).
GROUPS = {
    "batch norm": ("FusedBatchNorm",),
    "convolution (dense, incl. 1x1)": ("Conv2D",),
    "depthwise convolution": ("DepthwiseConv2d",),
    "ReLU6": ("Relu6",),
}


def _group(op: str) -> str:
    bare = op.removeprefix("_MklNative").removeprefix("_Mkl")
    for group, prefixes in GROUPS.items():
        if any(bare.startswith(p) for p in prefixes):
            return group
    return "other"


def profile(alpha: float, size: int, stride: int, steps: int) -> dict:
    """Runs in a fresh process: per-op milliseconds of compute per step, and the wall time."""
    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    import kerascnn
    from kerascnn.training import configure_for_hardware, get_recipe
    from kerascnn.training.fused_bn import fused_batchnorm

    hardware = configure_for_hardware(get_recipe("mobilenet_fashion_mnist"), threads="cpu")
    model = kerascnn.build("mobilenet_v2", input_shape=(size, size, 3), classes=10, alpha=alpha,
                           output_stride=None if stride == 32 else stride)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((128, size, size, 3), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    with tempfile.TemporaryDirectory() as logdir, fused_batchnorm(model):
        model.fit(data, steps_per_epoch=10, epochs=1, verbose=0)  # tracing
        stamps = []
        timer = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: stamps.append(time.perf_counter()))
        model.fit(data, steps_per_epoch=40, epochs=1, verbose=0, callbacks=[timer])
        # Steps 10-40 of a running fit: no start-up cost of the fit call in the figure.
        wall_ms = 1000 * (stamps[-1] - stamps[9]) / (len(stamps) - 10)
        tf.profiler.experimental.start(logdir)
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(next(Path(logdir).rglob("*.xplane.pb")).read_bytes())
    per_op = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's op threads
                continue
            for event in line.events:
                op = names.get(event.metadata_id, "?").split(":")[-1]
                per_op[op] += event.duration_ps / 1e9 / steps
    # "Process" is the executor's busy span around the ops it runs (op overhead included).
    busy = per_op.pop("Process", 0.0)
    return {"alpha": alpha, "input_size": size, "output_stride": stride,
            "threads": list(hardware["threads"] or []), "wall_ms": round(wall_ms, 1),
            "busy_ms": round(busy, 1),
            "ops_ms": {op: round(ms, 2) for op, ms in per_op.most_common()}}


def _table(row: dict) -> list[str]:
    groups = collections.Counter()
    for op, ms in row["ops_ms"].items():
        groups[_group(op)] += ms
    compute = sum(groups.values())
    lines = [f"### alpha {row['alpha']}, {row['input_size']}x{row['input_size']}, output stride "
             f"{row['output_stride']} (threads inter/intra {row['threads']})", "",
             f"Wall time {row['wall_ms']:.1f} ms per step. TensorFlow's compute threads were "
             f"busy {row['busy_ms']:.1f} ms per step in total, i.e. "
             f"{row['busy_ms'] / row['wall_ms']:.2f} cores on average; the ops themselves "
             f"account for {compute:.1f} ms.",
             "", "| op group | ms per step | share of compute |", "|---|---:|---:|"]
    for group, ms in groups.most_common():
        lines.append(f"| {group} | {ms:.1f} | {100 * ms / compute:.0f} % |")
    lines += ["", "Largest op types: " + ", ".join(
        f"{op.removeprefix('_MklNative')} {ms:.1f}" for op, ms in list(row["ops_ms"].items())[:8])
        + " (ms per step).", ""]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["0.5,32,16", "0.5,64,32"],
                        help="alpha,input_size,output_stride ...")
    parser.add_argument("--steps", type=int, default=10, help="traced steps")
    parser.add_argument("--out", default=str(ROOT / "docs" / "step_profile.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        alpha, size, stride = args.child.split(",")
        print(json.dumps(profile(float(alpha), int(size), int(stride), args.steps)))
        return
    rows = []
    for config in args.configs:
        done = subprocess.run([sys.executable, __file__, "--child", config, "--steps",
                               str(args.steps)], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "ops_ms"}), flush=True)
    lines = ["# Training step profile: where the time goes on this CPU", "",
             f"Command: `.venv/bin/python benchmarks/step_profile.py --configs "
             f"{' '.join(args.configs)} --steps {args.steps}`. MobileNetV2 training steps (batch "
             "128, SGD, fused BN kernel, the main job's thread counts) on random in-memory "
             "inputs, traced with `tf.profiler`; op time summed over TensorFlow's compute "
             "threads.", ""]
    for row in rows:
        lines += _table(row)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
