"""Latency of .tflite files with the LiteRT interpreter (XNNPACK on CPU).

    python export/benchmark_tflite.py export/bundles/mobilenet_v2/model_int8.tflite --threads 1 2

Prints the median of --runs invocations per file and thread count, after --warmup runs.
"""

import argparse
import sys
from pathlib import Path

from kerascnn.export import TFLiteModel, tflite_ops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help=".tflite files")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)
    print("| file | size (KiB) | ops | " + " | ".join(f"{t} thread(s) (ms)" for t in args.threads) + " |")
    print("|---|---:|---:|" + "---:|" * len(args.threads))
    for path in args.files:
        if not path.exists():
            print(f"benchmark_tflite: no file {path}", file=sys.stderr)
            return 2
        content = path.read_bytes()
        times = [TFLiteModel(content, num_threads=t).latency_ms(args.runs, args.warmup)
                 for t in args.threads]
        print(f"| {path.name} | {len(content) / 1024:.1f} | {len(tflite_ops(content))} | "
              + " | ".join(f"{t:.3f}" for t in times) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
