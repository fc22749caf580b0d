"""Data sources. The Fashion-MNIST IDX reader works offline (Debian's dataset-fashion-mnist)."""

from kerascnn.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx
from kerascnn.data.preprocess import to_model_input

__all__ = ["FASHION_MNIST_CLASSES", "load_fashion_mnist", "read_idx", "to_model_input"]
