"""Fashion-MNIST from IDX files (Xiao et al., 2017, https://arxiv.org/abs/1708.07747).

The IDX format is four bytes of magic (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the raw array. NumPy reads it directly; no library
offers a reader that needs neither a download nor TensorFlow Datasets' own copy of the files.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")

# Where Debian's dataset-fashion-mnist package puts the files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) into a NumPy array.

    Raises:
        ValueError: when the file is not IDX or is shorter than its header says.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()}).")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - offset < expected:
        raise ValueError(f"{path} is truncated: the header promises {expected} bytes of data "
                         f"for shape {dims}, the file has {len(data) - offset}.")
    return np.frombuffer(data, dtype=dtype, count=int(np.prod(dims)), offset=offset).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {directory}. Install Debian's "
        "dataset-fashion-mnist package (apt-get install dataset-fashion-mnist) or pass the "
        "directory that holds the four IDX files.")


def load_fashion_mnist(split: str = "train", directory=None):
    """Loads Fashion-MNIST as uint8 arrays: images (N, 28, 28) and labels (N,).

    Args:
        split: "train" (60,000 images) or "test" (10,000).
        directory: folder with the IDX files; default: $KERASCNN_FASHION_MNIST_DIR or Debian's.

    Raises:
        ValueError: unknown split, or image and label counts that differ.
        FileNotFoundError: when the files are missing (the message says how to get them).
    """
    if split not in _FILES:
        raise ValueError(f"`split` must be one of {sorted(_FILES)}. Received: split={split!r}")
    directory = Path(directory or os.environ.get("KERASCNN_FASHION_MNIST_DIR", DEBIAN_DIR))
    images_stem, labels_stem = _FILES[split]
    images = read_idx(_find(directory, images_stem))
    labels = read_idx(_find(directory, labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split} files in {directory} do not match: images "
                         f"{images.shape}, labels {labels.shape}.")
    return images, labels
