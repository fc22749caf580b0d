"""Writes the golden vectors that android_demo/core's Java tests compare against.

The phone app does its own pre- and post-processing (pixels -> input tensor, output tensor ->
ranked labels) in android_demo/core, a plain Java module. These fixtures pin it to the Python
pipeline: for three small exported bundles (RGB float/int8, grayscale with nearest resize and a
logits output, BGR "caffe" normalisation with uint8 I/O) and a few raw RGB images at sizes other
than the model's, they hold

- the raw pixels (images.json; every array is little-endian bytes, zlib-compressed, base64),
- the bundle's metadata.json and labels.txt,
- the model input that `kerascnn.data.to_model_input` makes (float32) and its quantization by
  `kerascnn.export.runtime.quantize` for the integer file,
- the LiteRT interpreter's raw output for that input (float32, or int8/uint8 before dequantizing),
  the dequantized scores, the confidences the app shows and the top-3 class indices,

plus small resize cases straight from `keras.ops.image.resize` (resize.json), including
`crop_to_aspect_ratio=True` for the center-crop policy.

Usage (from the repository root, about a minute):

    PYTHONPATH=. python scripts/make_android_golden.py [--out DIR]

Default DIR: android_demo/core/src/test/resources/golden. Re-running with the same versions of
TensorFlow/Keras/LiteRT rewrites the same files; the Java tests read whatever is there.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "android_demo" / "core" / "src" / "test" / "resources" / "golden"
TOP_K = 3


def _blob(array: np.ndarray) -> str:
    """The array's little-endian bytes (float32 as IEEE 754, int8/uint8 as bytes), zlib-compressed
    and base64-encoded: the fixtures stay small and java.util.zip reads them."""
    array = np.ascontiguousarray(array)
    if array.dtype.itemsize > 1:
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return base64.b64encode(zlib.compress(array.tobytes(), 9)).decode("ascii")


def make_images() -> dict[str, np.ndarray]:
    """Raw RGB uint8 images (H, W, 3); none but one has the models' 32x32 size, so resizing runs
    both ways (down from 45x37, up from 20x24) and with an aspect ratio other than 1."""
    rng = np.random.default_rng(20240609)
    images = {"random_45x37": rng.integers(0, 256, (45, 37, 3), dtype=np.uint8)}

    h, w = 45, 37
    y, x = np.mgrid[0:h, 0:w]
    structured = np.zeros((h, w, 3), np.uint8)
    structured[..., 0] = np.round(x * 255 / (w - 1))                 # horizontal ramp, 0..255
    structured[..., 1] = np.round(y * 255 / (h - 1))                 # vertical ramp
    structured[..., 2] = np.where(((x // 4) + (y // 4)) % 2, 255, 0)  # 4-pixel checkerboard
    structured[10:20, 8:30] = (250, 20, 5)                           # a saturated red patch
    images["structured_45x37"] = structured

    h, w = 20, 24
    y, x = np.mgrid[0:h, 0:w]
    small = np.zeros((h, w, 3), np.uint8)
    small[..., 0] = np.where((x + y) % 6 < 3, 230, 15)               # diagonal stripes
    small[..., 1] = (x * 11 + y * 3) % 256
    small[..., 2] = 255 - np.round(y * 255 / (h - 1))
    images["small_20x24"] = small

    y, x = np.mgrid[0:32, 0:32]
    radius = np.hypot(y - 15.5, x - 12.0)
    exact = np.zeros((32, 32, 3), np.uint8)
    exact[..., 0] = np.round(127.5 + 127.5 * np.cos(radius / 2.0))  # rings
    exact[..., 1] = (x * y) % 256
    exact[..., 2] = np.where(x > y, 200, 40)
    images["exact_32x32"] = exact
    return images


def _models():
    """(name, builder, export kwargs, images) of the three golden bundles."""
    import kerascnn
    from kerascnn.data import FASHION_MNIST_CLASSES
    from kerascnn.registry import preprocessing_caffe

    return [
        ("mobilenet_v2_rgb",
         lambda: _varied(kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), classes=10,
                                        alpha=0.35)),
         dict(labels=list(FASHION_MNIST_CLASSES), io_dtype="int8", resize_method="bilinear"),
         ["random_45x37", "structured_45x37"]),
        # A logits output (activation "none": the app applies softmax), nearest resize and the
        # RGB -> L conversion.
        ("lenet5_gray",
         lambda: kerascnn.build("lenet5", input_shape=(32, 32, 1), classes=10,
                                classifier_activation=None),
         dict(io_dtype="int8", resize_method="nearest"),
         ["structured_45x37", "small_20x24", "exact_32x32"]),
        # BGR channel order with mean subtraction (keras.applications' caffe convention), uint8 I/O.
        ("resnet18_bgr",
         lambda: kerascnn.build("resnet18", input_shape=(32, 32, 3), classes=10),
         dict(preprocessing=preprocessing_caffe(), io_dtype="uint8", resize_method="bilinear"),
         ["structured_45x37", "small_20x24"]),
    ]


def _varied(model):
    """Random BatchNormalization scales and shifts: a freshly built MobileNetV2 outputs ~0.1 for every
    class (its pooled features are ~1e-7), and a ranking of equal scores tests little (ties are
    tested with the other bundles)."""
    import keras

    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0.0, 0.5, beta.shape).astype("float32"), mean, variance])
    return model


def _calibration(images, input_shape, prep, resize_method, count=64):
    """Model inputs for int8 calibration: the golden images plus random ones, preprocessed."""
    from kerascnn.data import to_model_input

    rng = np.random.default_rng(7)
    raw = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(count)]
    raw += [np.asarray(_resize_uint8(img, (40, 40))) for img in images.values()]
    return to_model_input(np.stack(raw), input_shape, prep, resize_method)


def _resize_uint8(image, size):
    """Nearest-neighbour resize in NumPy (only to stack calibration images of one size)."""
    h, w = image.shape[:2]
    ys = (np.arange(size[0]) * h // size[0])
    xs = (np.arange(size[1]) * w // size[1])
    return image[ys][:, xs]


def _floats(values) -> list[float]:
    """float32 values as the shortest decimals that read back (as double, then float) to the same
    float32: exact, and half as long as the doubles' repr."""
    return [float(str(np.float32(v)))
            for v in np.asarray(values, np.float32).reshape(-1)]


def _run_raw(runner, tensor: np.ndarray) -> np.ndarray:
    """The interpreter's output tensor for an input already in the file's dtype (no dequantize)."""
    interpreter = runner.interpreter
    interpreter.set_tensor(runner.input["index"], tensor[None])
    interpreter.invoke()
    return interpreter.get_tensor(runner.output["index"])[0].copy()


def _ranking(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k highest scores; equal scores keep the lower index first."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits.astype(np.float64) - np.max(logits))
    return (z / z.sum()).astype(np.float32)


def make_model_golden(name, build, export_kwargs, image_names, images, workdir) -> dict:
    import keras
    from kerascnn.data import to_model_input
    from kerascnn.export import TFLiteModel, export
    from kerascnn.export.bundle import _preprocessing_for  # the normalisation export() records
    from kerascnn.export.runtime import dequantize, quantize

    keras.utils.set_random_seed(0)
    model = build()
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    bundle = Path(workdir) / name
    prep = _preprocessing_for(model, export_kwargs.get("preprocessing"))
    representative = _calibration(images, input_shape, prep, export_kwargs["resize_method"])
    export(model, bundle, formats=["tflite_float32", "tflite_int8"], representative_data=representative,
           latency_runs=0, **export_kwargs)
    metadata = json.loads((bundle / "metadata.json").read_text())
    labels_txt = (bundle / "labels.txt").read_text()
    norm = metadata["input"]["normalization"]
    activation = metadata["output"]["activation"]

    runners = {fmt: TFLiteModel((bundle / entry["file"]).read_bytes())
               for fmt, entry in metadata["models"].items()}
    cases = []
    for image_name in image_names:
        normalized = to_model_input(images[image_name][None], input_shape, norm,
                                    metadata["input"]["resize_method"])[0]
        case = {"image": image_name, "normalized_f32": _blob(normalized), "inputs": {}, "outputs": {}}
        for fmt, entry in metadata["models"].items():
            spec_in, spec_out = entry["input"], entry["output"]
            if spec_in["dtype"] == "float32":
                tensor = normalized.astype(np.float32)  # the input is `normalized_f32` itself
            else:
                tensor = quantize(normalized, spec_in["scale"], spec_in["zero_point"], spec_in["dtype"])
                case["inputs"][fmt] = {"dtype": spec_in["dtype"], "data": _blob(tensor)}
            raw = _run_raw(runners[fmt], tensor)
            if spec_out["dtype"] == "float32":
                scores = raw.astype(np.float32)
                raw_list = _floats(scores)
            else:
                scores = dequantize(raw, spec_out["scale"], spec_out["zero_point"])
                raw_list = [int(v) for v in raw]
            # What TFLiteModel returns for the same input must be what the app ranks.
            np.testing.assert_array_equal(runners[fmt](normalized[None])[0], scores)
            confidences = _softmax(scores) if activation == "none" else scores
            case["outputs"][fmt] = {
                "raw": raw_list,
                "scores": _floats(scores),
                "confidences": _floats(confidences),
                f"top{TOP_K}": _ranking(scores, TOP_K),
            }
        cases.append(case)
        tops = {fmt: out[f"top{TOP_K}"][0] for fmt, out in case["outputs"].items()}
        print(f"{name}/{image_name}: top-1 per file {tops}")
    return {"name": name, "metadata": metadata, "labels_txt": labels_txt, "cases": cases}


def make_resize_golden() -> dict:
    """keras.ops.image.resize on small uint8-valued float images: both methods, scale up and down,
    and crop_to_aspect_ratio=True (the center crop the app can apply before resizing)."""
    import keras

    rng = np.random.default_rng(3)
    cases = []
    for (h, w, c), (oh, ow) in [((5, 7, 3), (3, 4)), ((3, 2, 3), (7, 5)), ((1, 1, 3), (2, 3)),
                                ((6, 4, 1), (4, 4)), ((4, 9, 3), (3, 3)), ((9, 4, 2), (5, 6)),
                                ((13, 11, 1), (8, 8))]:
        image = rng.integers(0, 256, (h, w, c)).astype(np.float32)
        expected = {}
        for method in ("bilinear", "nearest"):
            for crop in (False, True):
                out = keras.ops.convert_to_numpy(keras.ops.image.resize(
                    image[None], (oh, ow), interpolation=method, crop_to_aspect_ratio=crop))[0]
                expected[f"{method}/{'center' if crop else 'none'}"] = _floats(out)
        cases.append({"height": h, "width": w, "channels": c, "out_height": oh, "out_width": ow,
                      "input": [int(v) for v in image.reshape(-1)], "expected": expected})
    return {"cases": cases}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="fixture directory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    images = make_images()
    written = []

    def write(filename, data):
        path = out / filename
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        written.append(path)

    write("images.json", {name: {"height": int(img.shape[0]), "width": int(img.shape[1]),
                                 "rgb": _blob(img)} for name, img in images.items()})
    names = []
    with tempfile.TemporaryDirectory(prefix="kerascnn-golden-") as workdir:
        for name, build, kwargs, image_names in _models():
            write(f"{name}.json", make_model_golden(name, build, kwargs, image_names, images, workdir))
            names.append(name)
    write("resize.json", make_resize_golden())
    write("index.json", {"bundles": names, "top_k": TOP_K, "generated_by": "scripts/make_android_golden.py"})
    for path in written:
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
