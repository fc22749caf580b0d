"""Export sweep: every registered classification model to float32 and full-int8 TFLite.

    python benchmarks/export_sweep.py [--out docs/export_sweep.md] [--pattern '*']

Each model is built at its minimum input size (at least 32x32; the defaults would take hours on a
2-core CPU for the large models) with 1000 classes (10 for the CIFAR and LeNet models), converted
with builtin ops only and a fixed batch of 1, and timed with the LiteRT interpreter (1 thread,
median of 20 runs). int8 calibration uses 16 random inputs in the model's input range: enough to
show that conversion succeeds with builtin int8 ops, not to measure accuracy (the export tests and
the QAT benchmark do that on real data). Goal: no model needs Flex.
"""

import argparse
import gc
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from kerascnn.env import prefer_onednn

prefer_onednn()  # before TensorFlow is imported: its faster CPU kernels (kerascnn/env.py)

import keras
import kerascnn
from kerascnn.export import FlexOpsError, TFLiteModel, tflite_ops, to_tflite


def sweep_one(name):
    info = kerascnn.model_info(name)
    size = max(info.min_input_size, 32)
    model = kerascnn.build(name, input_shape=(size, size, info.default_input_shape[-1]))
    row = {"model": name, "input": f"{size}x{size}x{info.default_input_shape[-1]}",
           "params": model.count_params()}
    channels = info.default_input_shape[-1]
    calibration = np.random.default_rng(0).uniform(-1, 1, (16, size, size, channels)).astype("float32")
    for kind in ("float32", "int8"):
        start = time.perf_counter()
        try:
            content = to_tflite(model, kind, representative_data=calibration, calibration_steps=16)
        except FlexOpsError as err:
            row[kind] = {"error": f"Flex: {err}"}
            continue
        except Exception as err:  # record and go on: the sweep reports every model
            row[kind] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            continue
        ops = tflite_ops(content)
        row[kind] = {"size_kib": len(content) / 1024, "ops": len(ops),
                     "builtin_only": not any(o.startswith("Flex") or o == "CUSTOM" for o in ops),
                     "latency_ms": TFLiteModel(content, num_threads=1).latency_ms(runs=20, warmup=3),
                     "convert_s": time.perf_counter() - start}
    del model
    keras.backend.clear_session()
    gc.collect()
    return row


def to_markdown(rows, seconds):
    lines = ["# Export sweep: every classification model to builtin-op TFLite", "",
             "Command: `python benchmarks/export_sweep.py` (CPU, LiteRT interpreter, 1 thread, "
             f"median of 20 runs; {seconds / 60:.1f} minutes in all). Inputs are each model's "
             "minimum size (at least 32x32), batch 1; int8 is full-integer (int8 input and output) "
             "calibrated on random inputs, so it shows that conversion works, not accuracy.", "",
             "| model | input | parameters | float32 KiB | float32 ops | float32 ms | int8 KiB | "
             "int8 ops | int8 ms | builtin ops only |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    failures = 0
    for r in rows:
        f, q = r.get("float32", {}), r.get("int8", {})
        ok = f.get("builtin_only") and q.get("builtin_only")
        failures += not ok

        def cell(d, key, fmt):
            return fmt.format(d[key]) if key in d else "error"

        lines.append(f"| `{r['model']}` | {r['input']} | {r['params']:,} | {cell(f, 'size_kib', '{:.0f}')} | "
                     f"{cell(f, 'ops', '{}')} | {cell(f, 'latency_ms', '{:.2f}')} | "
                     f"{cell(q, 'size_kib', '{:.0f}')} | {cell(q, 'ops', '{}')} | "
                     f"{cell(q, 'latency_ms', '{:.2f}')} | {'yes' if ok else 'NO'} |")
    lines += ["", f"Models that need Flex or failed to convert: {failures} of {len(rows)}."]
    errors = [(r["model"], k, r[k]["error"]) for r in rows for k in ("float32", "int8")
              if "error" in r.get(k, {})]
    if errors:
        lines += ["", "Errors:", ""] + [f"- `{m}` {k}: {e}" for m, k, e in errors]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/export_sweep.md")
    parser.add_argument("--pattern", default="*")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for name in kerascnn.list_models(args.pattern, task="classification"):
        try:
            rows.append(sweep_one(name))
        except Exception:
            traceback.print_exc()
            rows.append({"model": name, "input": "?", "params": 0,
                         "float32": {"error": "build failed"}, "int8": {"error": "build failed"}})
        print(f"{name}: done ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    Path(args.out).write_text(to_markdown(rows, time.perf_counter() - start))
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
