"""Running exported models with the LiteRT interpreter (ai-edge-litert): predictions and latency."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from kerascnn.export.convert import _interpreter


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Float -> integer with TFLite's rule: round half away from zero, add the zero point, clamp.

    The Android app applies the same rule (metadata.json names it), so both sides agree exactly.
    """
    info = np.iinfo(dtype)
    scaled = np.asarray(values, dtype=np.float64) / scale
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (values.astype(np.float32) - zero_point) * scale


class TFLiteModel:
    """A callable over a .tflite file: normalises raw pixels when it knows the bundle's
    preprocessing, quantizes them if the file has integer input, runs the interpreter at the file's
    fixed batch size, and returns float outputs (probabilities for a classifier).
    """

    def __init__(self, content: bytes, num_threads: int | None = None, preprocessing=None):
        self.content = content
        self.preprocessing = preprocessing
        self.interpreter = _interpreter(content, num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch_size = int(self.input["shape"][0])

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.input["shape"])

    def _set_input(self, batch: np.ndarray):
        dtype = np.dtype(self.input["dtype"])
        if dtype != np.float32:
            scale, zero_point = self.input["quantization"]
            batch = quantize(batch, scale, zero_point, dtype)
        self.interpreter.set_tensor(self.input["index"], batch.astype(dtype, copy=False))

    def _get_output(self) -> np.ndarray:
        out = self.interpreter.get_tensor(self.output["index"])
        if np.dtype(self.output["dtype"]) != np.float32:
            scale, zero_point = self.output["quantization"]
            out = dequantize(out, scale, zero_point)
        return out

    def normalize(self, pixels) -> np.ndarray:
        """Raw pixels in [0, 255] (RGB, or L for one channel) -> model input, as metadata.json says."""
        p = self.preprocessing
        x = np.asarray(pixels, dtype=np.float32)
        if p["channel_order"] == "BGR":
            x = x[..., ::-1]
        return x * np.asarray(p["scale"], np.float32) + np.asarray(p["offset"], np.float32)

    def __call__(self, images) -> np.ndarray:
        """Runs the model. With bundle metadata, `images` are raw pixels in [0, 255]; without it,
        they are model inputs (already normalised)."""
        images = np.asarray(images, dtype=np.float32)
        if self.preprocessing is not None:
            images = self.normalize(images)
        if images.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"Expected inputs of shape (N, {', '.join(map(str, self.input_shape[1:]))}). "
                             f"Received: {images.shape}")
        outputs = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            real = len(batch)
            if real < self.batch_size:  # pad the last batch to the fixed size
                batch = np.concatenate([batch, np.repeat(batch[-1:], self.batch_size - real, 0)])
            self._set_input(batch)
            self.interpreter.invoke()
            outputs.append(self._get_output()[:real])
        return np.concatenate(outputs)

    def latency_ms(self, runs: int = 50, warmup: int = 5) -> float:
        """Median wall time of one invoke() in milliseconds, on a zero input."""
        zeros = np.zeros(self.input_shape, dtype=np.float32)
        self._set_input(zeros)
        for _ in range(warmup):
            self.interpreter.invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append((time.perf_counter() - start) * 1000.0)
        return statistics.median(times)


def load_tflite(path, num_threads: int | None = None) -> TFLiteModel:
    """Loads an exported model as a callable returning float outputs (probabilities for a
    classifier).

    Args:
        path: an export bundle directory (its default model), or a .tflite file. When a
            metadata.json lies next to the file, the callable takes raw pixels in [0, 255] and
            applies the bundle's normalisation, as the phone app does; otherwise it takes model
            inputs.
        num_threads: interpreter threads (None: the runtime's default).

    Raises:
        FileNotFoundError: nothing at `path`.
    """
    path = Path(path)
    metadata_path = (path if path.is_dir() else path.parent) / "metadata.json"
    metadata = json.loads(metadata_path.read_text()) if metadata_path.exists() else None
    if path.is_dir():
        if metadata is None:
            raise FileNotFoundError(f"{path} is not an export bundle: it has no metadata.json.")
        path = path / metadata["models"][metadata["default_model"]]["file"]
    if not path.exists():
        raise FileNotFoundError(f"No TFLite model at {path}.")
    preprocessing = metadata["input"]["normalization"] if metadata else None
    return TFLiteModel(path.read_bytes(), num_threads=num_threads, preprocessing=preprocessing)
