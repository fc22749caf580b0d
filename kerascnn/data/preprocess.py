"""Raw pixels -> model input, as a model's `model_info(...).preprocessing` (or an export bundle's
metadata) describes: resize, grayscale <-> RGB, channel order, scale and offset."""

from __future__ import annotations

import numpy as np


def to_model_input(images, input_shape, preprocessing, resize_method: str = "bilinear",
                   batch_size: int = 256) -> np.ndarray:
    """Turns uint8-range images into float32 model inputs.

    Args:
        images: (N, H, W) grayscale or (N, H, W, C) images with values in [0, 255].
        input_shape: the model's (height, width, channels).
        preprocessing: a `kerascnn.registry.Preprocessing` or its dict: per-channel `scale` and
            `offset` (x * scale + offset) and `channel_order` ("RGB", "BGR" or "L").
        resize_method: "bilinear" or "nearest".
        batch_size: images resized at a time (bounds memory for large sets).

    Returns:
        float32 array (N, height, width, channels).

    Raises:
        ValueError: for images of the wrong rank or channel counts that cannot be converted.
    """
    import keras

    prep = preprocessing if isinstance(preprocessing, dict) else preprocessing.as_dict()
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"`images` must be (N, H, W) or (N, H, W, C). Received shape {images.shape}")
    height, width, channels = input_shape
    have = images.shape[-1]
    if have == 1 and channels == 3:
        images = np.repeat(images, 3, axis=-1)
    elif have == 3 and channels == 1:
        # Elementwise in float32, left to right, so that the phone app (Java) gets the same bits;
        # a BLAS matrix product may round the last bit differently per machine.
        rgb = images.astype(np.float32)
        images = (rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587)
                  + rgb[..., 2] * np.float32(0.114))[..., None]
    elif have != channels:
        raise ValueError(f"Cannot turn {have}-channel images into the model's {channels} channels.")
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].astype(np.float32)
        if batch.shape[1:3] != (height, width):
            batch = keras.ops.convert_to_numpy(
                keras.ops.image.resize(batch, (height, width), interpolation=resize_method))
        out.append(batch)
    x = np.concatenate(out) if out else np.zeros((0, height, width, channels), np.float32)
    if prep.get("channel_order") == "BGR":
        x = x[..., ::-1]
    return (x * np.asarray(prep["scale"], np.float32) + np.asarray(prep["offset"], np.float32)).astype(np.float32)
