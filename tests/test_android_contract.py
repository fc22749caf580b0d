"""The bundle contract with the Android app (android_demo/): every file, metadata key, dtype and
shape that android_demo/core's BundleMetadata reads is in the bundles the exporter writes, and
consistent with itself and with the TFLite files.

The keys below mirror BundleMetadata.java; a key the app starts reading belongs in APP_KEYS.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import kerascnn
from kerascnn.export import export, tensor_details

# Every metadata key the app reads (dotted paths); models.<format>.* are checked per TFLite file.
APP_KEYS = [
    "format_version", "input.shape", "input.layout", "input.pixel_range", "input.resize_method",
    "input.channels", "input.quantization_rounding", "input.normalization.scale",
    "input.normalization.offset", "input.normalization.channel_order", "output.classes",
    "output.activation", "labels_file", "class_names", "default_model", "models",
]
MODEL_KEYS = ["file", "size_bytes", "input.dtype", "input.shape", "input.scale", "input.zero_point",
              "output.dtype", "output.shape", "output.scale", "output.zero_point"]
DTYPE_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}
SUPPORTED_FORMAT_VERSION = 1  # BundleMetadata.SUPPORTED_FORMAT_VERSION


def _get(mapping, dotted):
    for part in dotted.split("."):
        assert isinstance(mapping, dict) and part in mapping, f"missing key {dotted!r}"
        mapping = mapping[part]
    return mapping


def _export(out, name, input_shape, formats, io_dtype="int8", resize_method="bilinear", **build):
    keras_model = kerascnn.build(name, input_shape=input_shape, classes=5, **build)
    representative = np.random.default_rng(0).uniform(-1, 1, (8, *input_shape)).astype("float32")
    export(keras_model, out, formats=formats, representative_data=representative, io_dtype=io_dtype,
           resize_method=resize_method, latency_runs=0,
           labels=["zero", "one", "T-shirt/top", "three", "four"])
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Small exports: 3- and 1-channel, float only, int8 and uint8 I/O, both resize methods."""
    root = tmp_path_factory.mktemp("android_contract")
    return {
        "rgb_int8": _export(root / "rgb_int8", "mobilenet_v2", (32, 32, 3),
                            ["keras", "tflite_float32", "tflite_int8"], alpha=0.35),
        "rgb_float": _export(root / "rgb_float", "mobilenet_v2", (32, 32, 3), ["tflite_float32"],
                             alpha=0.35),
        "gray_uint8": _export(root / "gray_uint8", "lenet5", (32, 32, 1),
                              ["tflite_float32", "tflite_int8"], io_dtype="uint8",
                              resize_method="nearest", classifier_activation=None),
    }


BUNDLES = ["rgb_int8", "rgb_float", "gray_uint8"]


@pytest.mark.parametrize("which", BUNDLES)
def test_metadata_has_every_key_the_app_reads(bundles, which):
    metadata = json.loads((bundles[which] / "metadata.json").read_text())
    for key in APP_KEYS:
        _get(metadata, key)
    tflite = {fmt: entry for fmt, entry in metadata["models"].items() if fmt.startswith("tflite_")}
    assert tflite, "the app needs at least one TFLite file"
    for fmt, entry in tflite.items():
        for key in MODEL_KEYS:
            _get(entry, key)


@pytest.mark.parametrize("which", BUNDLES)
def test_metadata_values_are_consistent(bundles, which):
    bundle = bundles[which]
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert isinstance(metadata["format_version"], int)
    assert 1 <= metadata["format_version"] <= SUPPORTED_FORMAT_VERSION
    assert metadata.get("task", "classification") == "classification"

    inp = metadata["input"]
    shape = inp["shape"]
    assert len(shape) == 4 and shape[0] == 1 and all(isinstance(d, int) and d > 0 for d in shape)
    assert inp["layout"] == "NHWC"
    assert inp["pixel_range"] == [0, 255]
    assert inp["resize_method"] in ("bilinear", "nearest")
    assert inp["quantization_rounding"] == "half_away_from_zero"
    channels = inp["channels"]
    assert channels == shape[3] and channels in (1, 3)
    norm = inp["normalization"]
    assert len(norm["scale"]) == channels and len(norm["offset"]) == channels
    assert all(math.isfinite(v) and v != 0 for v in norm["scale"])
    assert all(math.isfinite(v) for v in norm["offset"])
    assert norm["channel_order"] in (("L",) if channels == 1 else ("RGB", "BGR"))
    assert "crop" not in inp or inp["crop"] in ("none", "center")

    out = metadata["output"]
    assert isinstance(out["classes"], int) and out["classes"] > 0
    assert out["activation"] in ("softmax", "sigmoid", "none")
    assert len(metadata["class_names"]) == out["classes"]

    tflite = {fmt: e for fmt, e in metadata["models"].items() if fmt.startswith("tflite_")}
    assert metadata["default_model"] in tflite
    for fmt, entry in tflite.items():
        assert (bundle / entry["file"]).is_file(), entry["file"]
        assert entry["size_bytes"] == (bundle / entry["file"]).stat().st_size
        spec_in, spec_out = entry["input"], entry["output"]
        assert spec_in["shape"] == shape, fmt
        assert spec_out["shape"] == [1, out["classes"]], fmt
        for spec in (spec_in, spec_out):
            assert spec["dtype"] in ("float32", "int8", "uint8"), fmt
            if spec["dtype"] in DTYPE_RANGES:
                low, high = DTYPE_RANGES[spec["dtype"]]
                assert spec["scale"] > 0 and math.isfinite(spec["scale"]), fmt
                assert isinstance(spec["zero_point"], int) and low <= spec["zero_point"] <= high, fmt


@pytest.mark.parametrize("which", BUNDLES)
def test_labels_file_matches_class_names(bundles, which):
    bundle = bundles[which]
    metadata = json.loads((bundle / "metadata.json").read_text())
    text = (bundle / metadata["labels_file"]).read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert len(lines) == metadata["output"]["classes"] == len(metadata["class_names"])
    assert lines == metadata["class_names"]


@pytest.mark.parametrize("which", BUNDLES)
def test_metadata_matches_the_tflite_files(bundles, which):
    """What the app allocates and quantizes with must be what the interpreter has."""
    bundle = bundles[which]
    metadata = json.loads((bundle / "metadata.json").read_text())
    for fmt, entry in metadata["models"].items():
        if not fmt.startswith("tflite_"):
            continue
        details = tensor_details((bundle / entry["file"]).read_bytes())
        for side in ("input", "output"):
            assert entry[side]["dtype"] == details[side]["dtype"], (fmt, side)
            assert entry[side]["shape"] == details[side]["shape"], (fmt, side)
            assert entry[side]["zero_point"] == details[side]["zero_point"], (fmt, side)
            assert entry[side]["scale"] == details[side]["scale"], (fmt, side)


def test_bundles_cover_what_the_app_must_handle(bundles):
    """The fixtures above exercise both channel counts, every I/O dtype and both resize methods."""
    seen = {"channels": set(), "dtypes": set(), "resize": set(), "default": set()}
    for which in BUNDLES:
        metadata = json.loads((bundles[which] / "metadata.json").read_text())
        seen["channels"].add(metadata["input"]["channels"])
        seen["resize"].add(metadata["input"]["resize_method"])
        seen["default"].add(metadata["default_model"])
        for fmt, entry in metadata["models"].items():
            if fmt.startswith("tflite_"):
                seen["dtypes"].add(entry["input"]["dtype"])
    assert seen == {"channels": {1, 3}, "dtypes": {"float32", "int8", "uint8"},
                    "resize": {"bilinear", "nearest"}, "default": {"tflite_int8", "tflite_float32"}}


def test_default_model_is_the_most_integer_file(bundles):
    assert json.loads((bundles["rgb_int8"] / "metadata.json").read_text())["default_model"] == "tflite_int8"
    assert json.loads((bundles["rgb_float"] / "metadata.json").read_text())["default_model"] == "tflite_float32"


def test_app_needs_only_metadata_labels_and_tflite_files(bundles):
    """copyBundle (android_demo/app/build.gradle.kts) copies metadata.json, labels.txt and *.tflite:
    every file metadata.json names for the app must be among them."""
    bundle = bundles["rgb_int8"]
    metadata = json.loads((bundle / "metadata.json").read_text())
    copied = {"metadata.json", "labels.txt"} | {p.name for p in bundle.glob("*.tflite")}
    assert metadata["labels_file"] in copied
    for fmt, entry in metadata["models"].items():
        if fmt.startswith("tflite_"):
            assert entry["file"] in copied and Path(entry["file"]).name == entry["file"]


def test_one_channel_build_of_a_three_channel_model_gets_one_channel_normalization(tmp_path):
    bundle = _export(tmp_path / "mobilenet_gray", "mobilenet_v2", (32, 32, 1), ["tflite_float32"],
                     alpha=0.35)
    metadata = json.loads((bundle / "metadata.json").read_text())
    norm = metadata["input"]["normalization"]
    assert len(norm["scale"]) == len(norm["offset"]) == metadata["input"]["channels"] == 1
    assert norm["channel_order"] == "L"
