"""The export bundle: one directory with every format a phone or a server needs, and what it must
know to feed them (metadata.json, labels.txt), plus a report of what was checked.

Layout (files at the top level):

    model.keras                  formats=["keras"]
    saved_model/                 formats=["saved_model"]
    model_float32.tflite         formats=["tflite_float32"]   (and _float16, _dynamic_int8,
    model_int8.tflite            formats=["tflite_int8"]       _int8, _qat_int8)
    labels.txt                   one class name per line
    metadata.json                input shape/dtype, normalisation, resize method, quantization
                                 parameters of each file, class names, source model, version
    report.json, report.md       size, ops, Keras-vs-TFLite agreement, latency at 1 and 2 threads

The bundle is written into a temporary sibling directory and swapped in only when complete: a
failed export leaves no partial files and the previous bundle untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kerascnn.export.convert import frozen_once, tensor_details, tflite_ops, to_tflite
from kerascnn.export.runtime import TFLiteModel

FORMATS = ("keras", "saved_model", "tflite_float32", "tflite_float16", "tflite_dynamic_int8",
           "tflite_int8", "tflite_qat_int8")
FILES = {"keras": "model.keras", "saved_model": "saved_model",
         **{f: f"model_{f.removeprefix('tflite_')}.tflite" for f in FORMATS if f.startswith("tflite_")}}
METADATA_VERSION = 1
# Which TFLite file the app loads by default: the most integer one present.
_DEFAULT_ORDER = ("tflite_qat_int8", "tflite_int8", "tflite_dynamic_int8", "tflite_float16",
                  "tflite_float32")
ROUNDING = "half_away_from_zero"


def _check_formats(formats):
    if isinstance(formats, str):
        formats = [formats]
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"`formats` must be a non-empty list of {list(FORMATS)}. Received: {formats!r}")
    return formats


def classifier_only(model):
    """GoogLeNet-style models with auxiliary outputs export only their main classifier."""
    if len(model.outputs) == 1:
        return model
    from kerascnn.models.googlenet import strip_auxiliary_heads

    return strip_auxiliary_heads(model)


def preprocessing_for(model, preprocessing=None) -> dict:
    """The input normalisation to record for `model`, matched to its number of input channels.

    Args:
        model: the Keras model.
        preprocessing: a `Preprocessing`, its dict, or None: the registry's for a registered
            model name, else identity (scale 1, offset 0).

    A registered 3-channel design built for 1-channel input (e.g. Fashion-MNIST) gets the
    per-channel values averaged into one, with channel order "L".

    Raises:
        ValueError: when the given preprocessing has a different number of channels than the
            model and cannot be reduced to it.
    """
    channels = int(model.inputs[0].shape[-1])
    if preprocessing is None:
        from kerascnn.registry import _REGISTRY, _ensure_loaded

        _ensure_loaded()
        info = _REGISTRY.get(model.name)
        preprocessing = info.preprocessing if info is not None else None
    if preprocessing is None:
        return {"scale": [1.0] * channels, "offset": [0.0] * channels, "channels": channels,
                "channel_order": "RGB" if channels == 3 else "L", "mode": "none"}
    prep = dict(preprocessing if isinstance(preprocessing, dict) else preprocessing.as_dict())
    prep["scale"], prep["offset"] = list(prep["scale"]), list(prep["offset"])
    if len(prep["scale"]) == channels:
        prep.setdefault("channels", channels)
        prep.setdefault("channel_order", "RGB" if channels == 3 else "L")
        return prep
    if channels == 1:
        prep.update(scale=[sum(prep["scale"]) / len(prep["scale"])],
                    offset=[sum(prep["offset"]) / len(prep["offset"])], channels=1,
                    channel_order="L")
        return prep
    raise ValueError(f"The preprocessing has {len(prep['scale'])} channels; the model takes "
                     f"{channels}. Pass `preprocessing` with one scale and offset per channel.")


def _labels(labels, classes):
    if labels is None:
        return [f"class_{i}" for i in range(classes)]
    labels = [str(label) for label in labels]
    if len(labels) != classes:
        raise ValueError(f"`labels` has {len(labels)} names; the model has {classes} classes.")
    if any("\n" in label for label in labels):
        raise ValueError("Class names in `labels` cannot contain line breaks.")
    return labels


def _as_arrays(data, limit):
    """(inputs, labels or None) from arrays, an (x, y) tuple or a tf.data.Dataset of batches."""
    if data is None:
        return None, None
    if isinstance(data, (tuple, list)) and len(data) == 2 and not np.isscalar(data[0]):
        x, y = data
        return np.asarray(x, np.float32)[:limit], None if y is None else np.asarray(y)[:limit]
    if isinstance(data, np.ndarray):
        return data.astype(np.float32)[:limit], None
    xs, ys = [], []
    for item in data:
        x, y = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
        xs.append(np.asarray(x, np.float32))
        if y is not None:
            ys.append(np.asarray(y))
        if sum(len(b) for b in xs) >= limit:
            break
    x = np.concatenate(xs)[:limit]
    return x, (np.concatenate(ys)[:limit] if ys else None)


def _agreement(keras_probs, tflite_probs, labels):
    result = {
        "samples": int(len(keras_probs)),
        "top1_agreement": float(np.mean(keras_probs.argmax(-1) == tflite_probs.argmax(-1))),
        "max_abs_diff": float(np.max(np.abs(keras_probs - tflite_probs))),
    }
    if labels is not None:
        labels = labels.reshape(-1)
        result["keras_accuracy"] = float(np.mean(keras_probs.argmax(-1) == labels))
        result["tflite_accuracy"] = float(np.mean(tflite_probs.argmax(-1) == labels))
    return result


def export(model, out_dir, formats=("keras", "tflite_float32", "tflite_int8"), *,
           representative_data=None, labels=None, validation_data=None, preprocessing=None,
           io_dtype="int8", allow_flex=False, resize_method="bilinear", source_model=None,
           validation_samples=500, latency_runs=50, threads=(1, 2), qat_model=None) -> dict:
    """Exports a classifier as a bundle directory (see the module docstring for its layout).

    Args:
        model: a Keras classifier with a fixed input size; GoogLeNet's auxiliary heads are
            dropped. A QAT model (from kerascnn.quantization) exports with "tflite_qat_int8".
        out_dir: the bundle directory; replaced atomically if it exists.
        formats: any of `FORMATS`.
        representative_data: model inputs for int8 calibration (array, tf.data.Dataset or
            iterable of batches, as `to_tflite` takes); needed for "tflite_int8".
        labels: class names, one per output; default class_0, class_1, ...
        validation_data: held-out (inputs, labels) or inputs, preprocessed as the model expects;
            when given, the report compares every TFLite file with Keras on them.
        preprocessing: a `kerascnn.registry.Preprocessing` or dict; default: the registry's for a
            registered model name, else identity.
        io_dtype: input/output type of the integer files: "int8", "uint8" or "float32".
        allow_flex: permit TensorFlow (Flex) ops in TFLite files.
        resize_method: how the app resizes camera frames ("bilinear" or "nearest").
        source_model: name recorded in the metadata (default: the model's name).
        validation_samples: at most this many held-out samples are compared.
        latency_runs: timed runs per file and thread count (0 skips latency).
        threads: interpreter thread counts to time.
        qat_model: the quantization-aware twin of `model` (from `kerascnn.quantization.qat`):
            "tflite_qat_int8" is converted from it, and its agreement is measured against it,
            while the other formats come from the float `model`. Without it, a
            "tflite_qat_int8" export needs `model` itself to be a QAT model.

    Returns:
        The report as a dict (also written as report.json and report.md).

    Raises:
        ValueError: bad arguments; `FlexOpsError` (a ValueError) if a TFLite file would need Flex.
    """
    formats = _check_formats(formats)
    if resize_method not in ("bilinear", "nearest"):
        raise ValueError(f"`resize_method` must be 'bilinear' or 'nearest'. Received: {resize_method!r}")
    model = classifier_only(model)
    if len(model.outputs[0].shape) != 2:
        raise ValueError(f"Export bundles are for classifiers with (batch, classes) output; "
                         f"{model.name!r} outputs {tuple(model.outputs[0].shape)}.")
    classes = int(model.outputs[0].shape[-1])
    class_names = _labels(labels, classes)
    prep = preprocessing_for(model, preprocessing)
    val_x, val_y = _as_arrays(validation_data, validation_samples)
    keras_probs = model.predict(val_x, verbose=0, batch_size=64) if val_x is not None else None
    if qat_model is not None:
        qat_model = classifier_only(qat_model)
        if tuple(qat_model.inputs[0].shape[1:]) != tuple(model.inputs[0].shape[1:]):
            raise ValueError("`qat_model` must take the same input as `model`. Received input "
                             f"shapes {tuple(qat_model.inputs[0].shape[1:])} and "
                             f"{tuple(model.inputs[0].shape[1:])}.")
    qat_probs = (qat_model.predict(val_x, verbose=0, batch_size=64)
                 if qat_model is not None and val_x is not None else keras_probs)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        entries, report_models = {}, {}
        with frozen_once():  # the float model is frozen once for its four formats
            for fmt in formats:
                target = staging / FILES[fmt]
                if fmt == "keras":
                    model.save(target)
                    entries[fmt] = {"file": target.name, "size_bytes": target.stat().st_size}
                    continue
                if fmt == "saved_model":
                    model.export(str(target), format="tf_saved_model", verbose=False)
                    entries[fmt] = {"file": target.name}
                    continue
                from_qat = fmt == "tflite_qat_int8" and qat_model is not None
                content = to_tflite(qat_model if from_qat else model, fmt.removeprefix("tflite_"),
                                    representative_data=representative_data, io_dtype=io_dtype,
                                    allow_flex=allow_flex)
                target.write_bytes(content)
                details = tensor_details(content)
                entries[fmt] = {"file": target.name, "size_bytes": len(content), **details}
                runner = TFLiteModel(content)
                info = {"file": target.name, "size_bytes": len(content), "ops": tflite_ops(content),
                        "input": details["input"], "output": details["output"]}
                if keras_probs is not None:
                    reference = qat_probs if from_qat else keras_probs
                    info["agreement"] = _agreement(reference, runner(val_x), val_y)
                    info["agreement"]["reference"] = "qat_model" if from_qat else "model"
                if latency_runs:
                    info["latency_ms"] = {str(t): round(TFLiteModel(content, num_threads=t)
                                                        .latency_ms(runs=latency_runs), 3)
                                          for t in threads}
                report_models[fmt] = info
        tflite_formats = [f for f in _DEFAULT_ORDER if f in entries]
        from kerascnn.layers.flip_average import wrapped_classifier  # imports keras

        metadata = {
            "format_version": METADATA_VERSION,
            "kerascnn_version": _version(),
            "source_model": source_model or model.name,
            "task": "classification",
            "input": {
                "shape": [1, *[int(d) for d in model.inputs[0].shape[1:]]],
                "layout": "NHWC",
                "pixel_range": [0, 255],
                "resize_method": resize_method,
                "crop": "none",  # the whole frame is resized to the input size
                "normalization": {k: prep[k] for k in ("scale", "offset", "channel_order", "mode")},
                "channels": int(model.inputs[0].shape[-1]),
                "quantization_rounding": ROUNDING,
            },
            "output": {"classes": classes, "activation": _output_activation(model),
                       # each prediction is the mean over the image and its mirror image
                       "flip_averaged": wrapped_classifier(model) is not None},
            "labels_file": "labels.txt",
            "class_names": class_names,
            "default_model": tflite_formats[0] if tflite_formats else None,
            "models": entries,
        }
        (staging / "labels.txt").write_text("\n".join(class_names) + "\n")
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        report = {"source_model": metadata["source_model"], "kerascnn_version": metadata["kerascnn_version"],
                  "input_shape": metadata["input"]["shape"], "classes": classes,
                  "keras_parameters": int(model.count_params()), "tflite": report_models}
        if keras_probs is not None and val_y is not None:
            report["keras_accuracy"] = float(np.mean(keras_probs.argmax(-1) == val_y.reshape(-1)))
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (staging / "report.md").write_text(report_markdown(report))
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


def _swap_in(staging: Path, out_dir: Path):
    """Replaces `out_dir` by `staging` with two renames, so that at every moment one complete
    bundle is in place (or, between the renames, the old one is kept under a backup name)."""
    backup = None
    if out_dir.exists():
        backup = out_dir.with_name(f".{out_dir.name}.previous-{os.getpid()}")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(out_dir, backup)
    try:
        os.replace(staging, out_dir)
    except BaseException:
        if backup is not None:
            os.replace(backup, out_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _output_activation(model) -> str:
    """"softmax", "sigmoid" or "none", read from the last layer or else the classifier layer
    (of a flip-averaged model: its classifier's, whose mean of two outputs keeps their kind)."""
    from kerascnn.layers.flip_average import wrapped_classifier

    inner = wrapped_classifier(model)
    if inner is not None:
        return _output_activation(inner)
    candidates = [model.layers[-1]]
    if any(layer.name == "predictions" for layer in model.layers):
        candidates.append(model.get_layer("predictions"))
    for layer in candidates:
        name = getattr(getattr(layer, "activation", None), "__name__", None)
        if name in ("softmax", "sigmoid", "linear"):
            return "none" if name == "linear" else name
    return "none"


def _version():
    from kerascnn import __version__

    return __version__


def report_markdown(report: dict) -> str:
    """The report as a Markdown table, one row per TFLite file."""
    lines = [f"# Export report: {report['source_model']}", "",
             f"Input {report['input_shape']}, {report['classes']} classes, "
             f"{report['keras_parameters']:,} Keras parameters, kerascnn {report['kerascnn_version']}.", ""]
    if "keras_accuracy" in report:
        lines += [f"Keras accuracy on the held-out samples: {report['keras_accuracy']:.4f}", ""]
    lines += ["| file | size (KiB) | in/out dtype | ops | top-1 agreement | max abs diff | accuracy | "
              "latency 1 thread (ms) | latency 2 threads (ms) |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for info in report["tflite"].values():
        agreement = info.get("agreement", {})
        latency = info.get("latency_ms", {})
        lines.append(
            f"| {info['file']} | {info['size_bytes'] / 1024:.1f} | {info['input']['dtype']}/"
            f"{info['output']['dtype']} | {len(info['ops'])} | "
            f"{agreement.get('top1_agreement', float('nan')):.4f} | "
            f"{agreement.get('max_abs_diff', float('nan')):.2e} | "
            f"{agreement.get('tflite_accuracy', float('nan')):.4f} | "
            f"{latency.get('1', float('nan'))} | {latency.get('2', float('nan'))} |")
    lines += ["", "Ops per file:", ""]
    lines += [f"- {info['file']}: {', '.join(info['ops'])}" for info in report["tflite"].values()]
    return "\n".join(lines) + "\n"
