"""tf.data sources: NumPy arrays, Fashion-MNIST IDX files, TensorFlow Datasets, image folders.

Every source yields `(image, label)` pairs: image uint8 (H, W, C), label int64 scalar (float arrays
given to `from_arrays` stay float32). They do no resizing to a model's size, normalisation or
batching: `kerascnn.data.make_pipeline` does that for a given model. Datasets from `load`,
`from_fashion_mnist`, `from_tfds` and `from_image_folder` carry a `class_names` attribute when the
names are known (like `keras.utils.image_dataset_from_directory`); transformations drop it.

Fashion-MNIST from Debian's dataset-fashion-mnist package is the offline default: this machine
cannot download TFDS datasets, so `from_tfds` only reads data that was prepared beforehand.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerascnn.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

logger = logging.getLogger("kerascnn.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _with_class_names(dataset, class_names):
    if class_names is not None:
        dataset.class_names = list(class_names)
    return dataset


def from_arrays(images, labels) -> tf.data.Dataset:
    """A dataset of (image, label) pairs from in-memory arrays.

    Args:
        images: (N, H, W) or (N, H, W, C) array, uint8, or float with values in [0, 255].
        labels: (N,) integer class indices (an (N, 1) array is flattened).

    Returns:
        A `tf.data.Dataset` of (image (H, W, C), label int64). uint8 and other integer images are
        yielded as uint8; float images as float32 (not rounded).

    Raises:
        ValueError: wrong ranks, counts that differ, non-integer labels or float values outside
            [0, 255].

    Example:
        >>> ds = from_arrays(np.zeros((4, 28, 28), np.uint8), np.arange(4))
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"`images` must be (N, H, W) or (N, H, W, C). Received shape {images.shape}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"`labels` must be ({len(images)},) class indices, one per image. "
                         f"Received shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"`labels` must be integer class indices. Received dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if np.issubdtype(images.dtype, np.floating):
        if images.size and (images.min() < 0 or images.max() > 255):
            raise ValueError("Float `images` must hold pixel values in [0, 255]. Received values in "
                             f"[{images.min()}, {images.max()}]")
        images = images.astype(np.float32)
    elif images.dtype != np.uint8:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise ValueError(f"Integer `images` must hold values in [0, 255]. Received values in "
                             f"[{images.min()}, {images.max()}]")
        images = images.astype(np.uint8)
    return tf.data.Dataset.from_tensor_slices((images, labels))


def from_fashion_mnist(split: str = "train", directory=None) -> tf.data.Dataset:
    """Fashion-MNIST as (image (28, 28, 1) uint8, label int64), read from IDX files; no download.

    Args:
        split: "train" (60,000 images) or "test" (10,000).
        directory: folder with the four IDX(.gz) files; default $KERASCNN_FASHION_MNIST_DIR or
            Debian's /usr/share/datasets/fashion-mnist (`apt-get install dataset-fashion-mnist`).

    Raises:
        ValueError: unknown split or inconsistent files.
        FileNotFoundError: missing files (the message says how to get them).
    """
    images, labels = load_fashion_mnist(split, directory)
    return _with_class_names(from_arrays(images[..., None], labels), FASHION_MNIST_CLASSES)


def from_tfds(name: str, split: str = "train", data_dir=None, download: bool = False) -> tf.data.Dataset:
    """A TensorFlow Datasets dataset by name, as supervised (image, label int64) pairs.

    Args:
        name: a TFDS name, e.g. "cifar10", "fashion_mnist", "oxford_flowers102" (optionally with a
            version, "cifar10:3.0.2").
        split: a TFDS split string ("train", "test", "train[:90%]", ...).
        data_dir: folder with prepared TFDS data; default $TFDS_DATA_DIR or ~/tensorflow_datasets.
        download: try `download_and_prepare` first. Machines without internet (this project's)
            cannot download; prepare the data elsewhere and copy it (see Raises).

    Returns:
        A `tf.data.Dataset` of (image uint8 (H, W, C), label int64); images of datasets with
        varying sizes (oxford_flowers102) have shape (None, None, 3).

    Raises:
        ImportError: when tensorflow-datasets is not installed.
        ValueError: unknown dataset name, or a dataset without (image, label) supervised keys.
        FileNotFoundError: the data is not prepared in `data_dir` (and download is off or failed);
            the message names the folder searched and how to prepare it.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("`from_tfds` needs tensorflow-datasets: pip install tensorflow-datasets. "
                          "For the offline default use kerascnn.data.from_fashion_mnist().") from e
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"TensorFlow Datasets has no dataset named {name!r} "
                         f"(see tfds.list_builders()). Received: name={name!r}") from e
    supervised = builder.info.supervised_keys
    if not supervised or len(supervised) != 2:
        raise ValueError(f"TFDS dataset {name!r} has no (image, label) supervised keys "
                         f"(supervised_keys={supervised!r}); it cannot be used for classification.")
    dataset = prepared_tfds(builder, name, split, data_dir=data_dir, download=download,
                            offline_hint="kerascnn.data.from_fashion_mnist() (Debian's "
                                         "dataset-fashion-mnist package)",
                            as_supervised=True)
    dataset = dataset.map(lambda image, label: (image, tf.cast(label, tf.int64)),
                          num_parallel_calls=tf.data.AUTOTUNE)
    label_feature = builder.info.features[supervised[1]]
    return _with_class_names(dataset, getattr(label_feature, "names", None))


def _jpeg_truncated(data: bytes) -> bool:
    """True when JPEG bytes lack the end-of-image marker FFD9 (trailing zero padding allowed)."""
    return not data.rstrip(b"\x00").endswith(b"\xff\xd9")


def check_image_file(path) -> str | None:
    """Why an image file cannot be used, or None when it decodes.

    The file must be non-empty and decode with `tf.io.decode_image` (eagerly). A JPEG must also
    end with the end-of-image marker FFD9 (trailing zero bytes allowed). TF 2.21's decoder
    rejected every truncated JPEG we tried (baseline and progressive, cut every 7 bytes), but
    libjpeg can fill a truncated scan with grey and only warn (what `decode_jpeg`'s
    `try_recover_truncated` turns on), so the marker check keeps detection independent of the
    decoder's tolerance. JPEGs with data appended after the marker (e.g. "motion photos") are
    reported as truncated too; re-save them to use them.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"unreadable: {e}"
    if not data:
        return "empty file"
    if data[:2] == b"\xff\xd8" and _jpeg_truncated(data):
        return "truncated JPEG (no end-of-image marker FFD9)"
    try:
        image = tf.io.decode_image(data, expand_animations=False)
    except (tf.errors.OpError, ValueError) as e:
        message = getattr(e, "message", str(e)).strip().splitlines()
        return f"not a decodable image: {message[-1] if message else type(e).__name__}"
    if image.shape.rank != 3 or min(image.shape) == 0:
        return f"decoded to an empty image of shape {tuple(image.shape)}"
    return None


def from_image_folder(directory, *, image_size=None, class_names=None,
                      extensions=IMAGE_EXTENSIONS, report=None, resize_method="bilinear"):
    """A labelled dataset from a folder with one sub-folder of images per class.

    Every file with an image extension is checked up front (see `check_image_file`): empty,
    truncated or undecodable files (a text file named x.jpg) are skipped, listed in one logged
    warning and appended to `report` as (path, reason); they never stop the pipeline. Files
    with other extensions and hidden files are ignored. Sub-folders of a class folder are
    searched too.

    Args:
        directory: root folder, laid out as `directory/<class name>/<image files>`.
        image_size: (height, width) to resize every image to here (bilinear, rounded back to
            uint8); None keeps each image's own size (shape (None, None, 3)) and leaves resizing
            to `make_pipeline`, which then works in float and rounds nothing.
        class_names: class sub-folders to use, in label order; default: all sub-folders, sorted.
        extensions: file name endings (case-insensitive) that count as images.
        report: a list to which (path, reason) is appended for each skipped file.
        resize_method: interpolation for `image_size` ("bilinear", "nearest", "area", ...).

    Returns:
        (dataset, class_names): the dataset yields (image uint8 (H, W, 3), label int64), files in
        class order then path order. Grayscale and palette images become RGB (channel repeated),
        alpha is dropped (decode_image with channels=3); `make_pipeline` converts to grayscale for
        1-channel models.

    Raises:
        FileNotFoundError: `directory` or a requested class folder does not exist.
        ValueError: no class sub-folders, or no usable image at all.

    Example:
        >>> report = []
        >>> ds, names = from_image_folder("flowers/train", image_size=(96, 96), report=report)
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist or is not a directory.")
    if class_names is None:
        class_names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_names:
            raise ValueError(f"{root} has no class sub-folders; expected {root}/<class name>/<images>.")
    else:
        class_names = [str(c) for c in class_names]
        missing = [c for c in class_names if not (root / c).is_dir()]
        if missing:
            raise FileNotFoundError(f"Class folders {missing} not found in {root}. Received: "
                                    f"class_names={class_names!r}")
    extensions = tuple(e.lower() for e in extensions)

    paths, labels, bad = [], [], []
    for label, name in enumerate(class_names):
        for folder, dirs, files in os.walk(root / name):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file in sorted(files):
                if file.startswith(".") or not file.lower().endswith(extensions):
                    continue
                path = os.path.join(folder, file)
                reason = check_image_file(path)
                if reason is None:
                    paths.append(path)
                    labels.append(label)
                else:
                    bad.append((path, reason))
    if bad:
        logger.warning("Skipped %d unusable image file(s) in %s:\n%s", len(bad), root,
                       "\n".join(f"  {p}: {r}" for p, r in bad))
        if report is not None:
            report.extend(bad)
    if not paths:
        raise ValueError(f"No usable images with extensions {extensions} in the class folders "
                         f"{class_names} of {root} ({len(bad)} unusable file(s)).")

    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))

    def read(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        if size is not None:
            image = tf.image.resize(image, size, method=resize_method)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            image.set_shape([size[0], size[1], 3])
        return image, label

    dataset = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, np.int64)))
    dataset = dataset.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    return _with_class_names(dataset, class_names), list(class_names)


_LOAD_ALLOWED = ("'fashion_mnist'", "'tfds:<name>'", "an existing image-folder directory",
                 "an (images, labels) tuple of arrays")


def load(source, split: str = "train", *, data_dir=None) -> tf.data.Dataset:
    """One entry point for every source.

    Args:
        source: "fashion_mnist" (offline IDX files; `data_dir` is their folder), "tfds:<name>"
            (TensorFlow Datasets; `data_dir` is TFDS's data dir), an existing directory (an image
            folder: `source/<split>/<class>/...` when `source/<split>` exists, else
            `source/<class>/...`), or an (images, labels) tuple of arrays (`split` is ignored).
        split: "train", "test", or a TFDS split string.
        data_dir: see `source`.

    Returns:
        A `tf.data.Dataset` of (image, label); `class_names` is set when known.

    Raises:
        ValueError: an unsupported source (the message lists what is allowed).
    """
    if isinstance(source, tuple) and len(source) == 2:
        return from_arrays(*source)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text == "fashion_mnist":
            return from_fashion_mnist(split, directory=data_dir)
        if text.startswith("tfds:") and len(text) > 5:
            return from_tfds(text[5:], split=split, data_dir=data_dir)
        if os.path.isdir(text):
            folder = os.path.join(text, split) if os.path.isdir(os.path.join(text, split)) else text
            dataset, _ = from_image_folder(folder)
            return dataset
    shown = repr(source) if isinstance(source, (str, os.PathLike)) else f"object of type {type(source).__name__}"
    raise ValueError(f"`source` must be one of: {', '.join(_LOAD_ALLOWED)}. Received: source={shown}")


def prepared_tfds(builder, name, split, *, data_dir, download, offline_hint, **as_dataset_kwargs):
    """`builder.as_dataset(split=split, ...)`, downloading first when `download` is on.

    Shared by the classification and segmentation TFDS loaders.

    Raises:
        FileNotFoundError: the download failed, or the data is not prepared and download is off;
            the message says where it was searched, how to prepare it on a machine with internet,
            and the offline alternative `offline_hint`.
    """
    searched = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
    how = (f"This machine cannot download datasets (no internet). To prepare {name!r}: on a machine "
           f"with internet run `tfds build {builder.name} --data_dir DIR` (or python -c \"import "
           f"tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='DIR')."
           f"download_and_prepare()\"), then copy DIR/{builder.name} (with its version folder) into "
           f"{searched} or pass data_dir=DIR. For an offline default use {offline_hint}.")
    if download:
        try:
            builder.download_and_prepare()
        except Exception as e:  # network errors come in many types (OSError, DownloadError, ...)
            raise FileNotFoundError(f"Could not download TFDS dataset {name!r} into {searched}: "
                                    f"{type(e).__name__}: {e}. {how}") from e
    try:
        return builder.as_dataset(split=split, **as_dataset_kwargs)
    except AssertionError as e:  # TFDS asserts "could not find data in <dir>"
        raise FileNotFoundError(f"TFDS dataset {name!r} is not prepared in {searched} (searched "
                                f"{builder.data_dir}) and download is off. {how}") from e
