"""QAT coverage: does each engine turn each registered model into a fully integer TFLite file?

For every registered model (at its smallest input, 10 classes, alpha 0.35 for MobileNets, random
weights with random BN statistics): rewrite it with the engine, set the activation ranges on
random inputs, convert with `to_tflite(kind="qat_int8")`, and check that the file has only
builtin ops and no float tensor besides the float input and output; also compare its outputs with
the QAT Keras model. Each model runs in its own subprocess (memory, and isolation of tfmot).

Usage:
    .venv/bin/python benchmarks/qat_coverage.py [--engines native tfmot] [--models 'resnet*']
Writes docs/qat_coverage.md and docs/qat_coverage.json.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_CHILD = r"""
import json, sys, time, inspect
import numpy as np
sys.path.insert(0, {tests!r})
import kerascnn
from helpers import small_input, randomise
name, engine = {name!r}, {engine!r}
info = kerascnn.model_info(name)
kwargs = {{"classes": 10}}
params = inspect.signature(info.builder).parameters
if "alpha" in params and name.startswith("mobilenet"):
    kwargs["alpha"] = 0.35
shape = small_input(name)
if info.task == "segmentation":
    shape = (64, 64, shape[-1]) if shape[0] < 64 else shape
model = kerascnn.build(name, input_shape=shape, **kwargs)
randomise(model, 1)
x = np.random.default_rng(0).uniform(-1, 1, (4, *shape)).astype("float32")
start = time.perf_counter()
row = {{"model": name, "engine": engine, "task": info.task}}
try:
    if engine == "native":
        from kerascnn.quantization import calibrate, quantize_model
        from kerascnn.export import to_tflite
        qat_model = quantize_model(model)
        calibrate(qat_model, [x], steps=1)
        content = to_tflite(qat_model, kind="qat_int8", io_dtype="float32")
        reference = np.asarray(qat_model.predict(x, verbose=0))
    else:
        from kerascnn.quantization import tfmot_engine
        qat_model = tfmot_engine.quantize(model)
        qat_model(x, training=True)
        content = tfmot_engine.to_tflite(qat_model, io_dtype="float32")
        reference = np.asarray(qat_model(x, training=False))
    from kerascnn.export.runtime import TFLiteModel
    from kerascnn.quantization.checks import integer_report
    report = integer_report(content)
    out = TFLiteModel(content)(x)
    row.update(ok=report["fully_integer"], ops=report["ops"],
               float_tensors=len(report["float_tensors"]),
               requantize_ops=report["requantize_ops"],
               flex=[op for op in report["ops"] if op.startswith("Flex") or op == "CUSTOM"],
               top1_agreement=float(np.mean(out.argmax(-1) == reference.argmax(-1))),
               max_abs_diff=float(np.max(np.abs(out - reference))))
except Exception as err:
    row.update(ok=False, error=f"{{type(err).__name__}}: {{' '.join(str(err).split())[:300]}}")
row["seconds"] = round(time.perf_counter() - start, 1)
print("ROW " + json.dumps(row))
"""


def run_one(name: str, engine: str, timeout: int) -> dict:
    code = _CHILD.format(tests=str(ROOT / "tests"), name=name, engine=engine)
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"model": name, "engine": engine, "ok": False, "error": f"timeout ({timeout} s)"}
    for line in result.stdout.splitlines():
        if line.startswith("ROW "):
            return json.loads(line[4:])
    tail = " ".join(result.stderr.split()[-40:])
    return {"model": name, "engine": engine, "ok": False, "error": f"crashed: {tail[:300]}"}


def write_docs(rows: list, command: str):
    DOCS.mkdir(exist_ok=True)
    (DOCS / "qat_coverage.json").write_text(json.dumps(rows, indent=2) + "\n")
    engines = sorted({r["engine"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["model"], r["engine"]): r for r in rows}
    lines = ["# QAT coverage: fully integer, builtin-op TFLite files per engine", "",
             "Each model at its smallest input (segmentation models at 64x64), 10 classes, alpha 0.35 "
             "for MobileNets, random weights and BN statistics; rewritten for QAT, ranges set on "
             "random inputs, converted with `to_tflite(kind=\"qat_int8\")`. \"yes\" means builtin "
             "ops only and no float tensor other than the float input and output.", "",
             f"Command: `{command}`", ""]
    for engine in engines:
        done = [by[(m, engine)] for m in models if (m, engine) in by]
        lines.append(f"- {engine}: {sum(r['ok'] for r in done)} of {len(done)} models")
    lines += ["", "| model | " + " | ".join(engines) + " | native ops |",
              "|---|" + "---|" * len(engines) + "---|"]
    for m in models:
        cells = []
        for engine in engines:
            r = by.get((m, engine))
            if r is None:
                cells.append("not run")
            elif r["ok"]:
                cells.append(f"yes (agreement {r['top1_agreement']:.2f})")
            else:
                reason = r.get("error") or f"{r.get('float_tensors')} float tensors"
                cells.append("no: " + reason.replace("|", "/")[:160])
        native = by.get((m, "native"), {})
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {', '.join(native.get('ops', []))} |")
    (DOCS / "qat_coverage.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["native", "tfmot"],
                        choices=["native", "tfmot"])
    parser.add_argument("--models", default="*", help="shell-style pattern over registry names")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per model and engine")
    parser.add_argument("--missing", action="store_true",
                        help="run only the model/engine pairs that docs/qat_coverage.json lacks "
                             "(to finish an interrupted sweep)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import kerascnn

    names = [n for n in kerascnn.list_models() if fnmatch.fnmatch(n, args.models)]
    previous = []
    if (DOCS / "qat_coverage.json").exists():
        previous = json.loads((DOCS / "qat_coverage.json").read_text())
    done = {(r["model"], r["engine"]) for r in previous}
    if args.missing:  # keep every measured row, run the rest
        rows = list(previous)
        pairs = [(n, e) for n in names for e in args.engines if (n, e) not in done]
    else:  # keep the rows of models/engines not rerun
        rows = [r for r in previous if not (r["model"] in names and r["engine"] in args.engines)]
        pairs = [(n, e) for n in names for e in args.engines]
    command = ("python benchmarks/qat_coverage.py "
               + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    order = {n: i for i, n in enumerate(kerascnn.list_models())}
    for name, engine in pairs:
        start = time.perf_counter()
        row = run_one(name, engine, args.timeout)
        rows.append(row)
        print(f"{name:32s} {engine:7s} {'yes' if row['ok'] else 'NO '} "
              f"{time.perf_counter() - start:6.1f} s {row.get('error', '')[:120]}", flush=True)
        # Written after every model, so an interrupted sweep keeps what it measured.
        rows.sort(key=lambda r: (order.get(r["model"], 1e9), r["engine"]))
        write_docs(rows, command)


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
