"""Data: tf.data sources, the training/validation pipeline and augmentation.

Sources yield (image uint8 (H, W, C), label int64): `from_arrays`, `from_fashion_mnist` (offline
IDX files from Debian's dataset-fashion-mnist), `from_tfds`, `from_image_folder`, and `load`, which
picks one by name. `make_pipeline` / `pipeline_for` turn a source into batches for a given model
(resize, cache, shuffle, augment, normalise, batch, MixUp/CutMix, prefetch). `to_model_input` does
the same normalisation on NumPy arrays.

Segmentation (kerascnn.data.segmentation) yields (image, mask) pairs instead:
`fashion_mnist_scenes` / `generate_fashion_mnist_scenes` (offline scenes of Fashion-MNIST items
with per-pixel classes), `from_tfds_segmentation` (e.g. oxford_iiit_pet),
`from_segmentation_arrays`, and `make_segmentation_pipeline` / `segmentation_pipeline_for`, which
augment image and mask alike.

The tf.data names are imported on first use, so `from kerascnn.data import load_fashion_mnist`
does not import TensorFlow.
"""

import importlib

from kerascnn.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx
from kerascnn.data.preprocess import to_model_input

_LAZY = {
    "AUGMENTATIONS": "kerascnn.data.augment",
    "IMAGE_EXTENSIONS": "kerascnn.data.sources",
    "check_image_file": "kerascnn.data.sources",
    "from_arrays": "kerascnn.data.sources",
    "from_fashion_mnist": "kerascnn.data.sources",
    "from_image_folder": "kerascnn.data.sources",
    "from_tfds": "kerascnn.data.sources",
    "load": "kerascnn.data.sources",
    "make_pipeline": "kerascnn.data.pipeline",
    "pipeline_for": "kerascnn.data.pipeline",
    "SCENE_BACKGROUNDS": "kerascnn.data.scenes",
    "SCENE_CLASSES": "kerascnn.data.scenes",
    "SEGMENTATION_AUGMENTATIONS": "kerascnn.data.segmentation",
    "TFDS_SEGMENTATION": "kerascnn.data.segmentation",
    "fashion_mnist_scenes": "kerascnn.data.segmentation",
    "from_segmentation_arrays": "kerascnn.data.segmentation",
    "from_tfds_segmentation": "kerascnn.data.segmentation",
    "generate_fashion_mnist_scenes": "kerascnn.data.scenes",
    "make_segmentation_pipeline": "kerascnn.data.segmentation",
    "segmentation_pipeline_for": "kerascnn.data.segmentation",
}

__all__ = ["FASHION_MNIST_CLASSES", "load_fashion_mnist", "read_idx", "to_model_input", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerascnn.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
