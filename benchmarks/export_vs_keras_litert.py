"""Full-int8 MobileNetV2 (alpha 1.0, 224x224): kerascnn's export against Keras's own LiteRT export.

    python benchmarks/export_vs_keras_litert.py [--runs 300] [--out docs/export_vs_keras_litert.md]

Both sides get the same network and weights (keras.applications MobileNetV2's random weights
copied into kerascnn's mobilenet_v2), the same 100 calibration images (Fashion-MNIST, resized to
224 and normalised to [-1, 1]), the same full-integer settings (int8 ops, int8 input and output)
and the same interpreter (ai-edge-litert, XNNPACK) and thread count. Keras's export goes through
`model.export(format="litert", ...)`, which keeps a dynamic batch and always enables Flex ops;
ours traces a frozen batch-1 function with builtin ops only. Invocations alternate between the
two models, --runs each, and the ratio of the medians is reported (target: at most 1.03).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from kerascnn.env import prefer_onednn

prefer_onednn()  # before TensorFlow is imported: its faster CPU kernels (kerascnn/env.py)

import tensorflow as tf

import keras
import kerascnn
from kerascnn.data import load_fashion_mnist, to_model_input
from kerascnn.export import TFLiteModel, tflite_ops, to_tflite


def interleaved(first: TFLiteModel, second: TFLiteModel, runs: int, warmup: int = 20):
    zeros = [np.zeros(m.input_shape, np.float32) for m in (first, second)]
    for model, x in zip((first, second), zeros):
        model._set_input(x)
        for _ in range(warmup):
            model.interpreter.invoke()
    times = ([], [])
    for _ in range(runs):
        for i, model in enumerate((first, second)):
            start = time.perf_counter()
            model.interpreter.invoke()
            times[i].append((time.perf_counter() - start) * 1000)
    return [statistics.median(t) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", default="docs/export_vs_keras_litert.md")
    args = parser.parse_args(argv)

    reference = keras.applications.MobileNetV2(weights=None)
    ours = kerascnn.build("mobilenet_v2")
    ours.set_weights(reference.get_weights())
    images, _ = load_fashion_mnist("train")
    calibration = to_model_input(images[:100], (224, 224, 3), kerascnn.model_info("mobilenet_v2").preprocessing)

    ours_content = to_tflite(ours, "int8", representative_data=calibration, calibration_steps=100)

    def representative():
        for sample in calibration:
            yield [sample[None]]

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "keras_litert_int8.tflite")
        reference.export(path, format="litert", verbose=False,
                         optimizations=[tf.lite.Optimize.DEFAULT],
                         representative_dataset=representative,
                         inference_input_type=tf.int8, inference_output_type=tf.int8,
                         target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                        tf.lite.OpsSet.SELECT_TF_OPS]})
        keras_content = Path(path).read_bytes()

    lines = ["# Full-int8 MobileNetV2 224: kerascnn export vs Keras's LiteRT export", "",
             f"Command: `python benchmarks/export_vs_keras_litert.py --runs {args.runs}` (same "
             "weights, calibration images, int8 settings and interpreter; invocations interleaved).",
             "", "| threads | kerascnn median (ms) | Keras export median (ms) | ratio (kerascnn / Keras) |",
             "|---:|---:|---:|---:|"]
    ratios = {}
    for threads in (1, 2):
        a, b = interleaved(TFLiteModel(ours_content, threads), TFLiteModel(keras_content, threads),
                           args.runs)
        ratios[threads] = a / b
        lines.append(f"| {threads} | {a:.3f} | {b:.3f} | {a / b:.3f} |")
    x = calibration[:20]
    agree = np.mean(TFLiteModel(ours_content)(x).argmax(-1) == TFLiteModel(keras_content)(x).argmax(-1))
    lines += ["", f"- kerascnn file: {len(ours_content) / 1024:.0f} KiB, ops: {', '.join(tflite_ops(ours_content))}",
              f"- Keras file: {len(keras_content) / 1024:.0f} KiB, ops: {', '.join(tflite_ops(keras_content))}",
              f"- input shape: kerascnn {TFLiteModel(ours_content).input_shape}, Keras "
              f"{TFLiteModel(keras_content).input_shape} (Keras's signature has a dynamic batch; "
              "the interpreter resolves it to 1)",
              f"- top-1 agreement of the two files on 20 calibration images: {agree:.2f}",
              "", "Target: median ratio at most 1.03 "
              f"({'met' if max(ratios.values()) <= 1.03 else 'NOT met'} at "
              f"{', '.join(f'{t} thread(s): {r:.3f}' for t, r in ratios.items())})."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
