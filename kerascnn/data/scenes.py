"""Fashion-MNIST scenes for segmentation, composed with NumPy alone (no TensorFlow).

`kerascnn.data.segmentation` wraps these arrays in `tf.data` pipelines; this module is separate
so that the scenes can be made where TensorFlow is not installed (for example a GPU machine
running Keras on JAX with NumPy-fed data, see `benchmarks/recipe_search_jax.py`).
Class 0 is background and class k + 1 is Fashion-MNIST class k (`SCENE_CLASSES`).
"""

from __future__ import annotations

import numpy as np

from kerascnn.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

SCENE_CLASSES = ("background", *FASHION_MNIST_CLASSES)
SCENE_BACKGROUNDS = ("texture", "noise", "black")

_CHUNK = 512  # scenes composed at a time; bounds the memory of the (chunk, S, S) gathers


def _int_range(value, name):
    low, high = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if not (isinstance(low, (int, np.integer)) and isinstance(high, (int, np.integer))) \
            or low < 0 or high < low or high < 1:
        raise ValueError(f"`{name}` must be an int >= 1 or a (low, high) pair with 0 <= low <= high, "
                         f"high >= 1. Received: {name}={value!r}")
    return int(low), int(high)


def _background(rng, n, size, kind, color):
    """(n, size, size, 3 or 1) float32 backgrounds in roughly [0, 110]."""
    channels = 3 if color else 1
    if kind == "black":
        return np.zeros((n, size, size, channels), np.float32)
    noise = rng.standard_normal((n, size, size, channels), dtype=np.float32) * np.float32(8.0)
    if kind == "noise":
        return np.clip(noise + 16.0, 0, 255)
    # Two sinusoidal gratings per scene: edges and stripes that do not look like items, so that a
    # model has to learn shapes instead of "bright = item".
    coords = np.arange(size, dtype=np.float32)
    total = np.ones((n, size, size), np.float32)
    for _ in range(2):
        angle = rng.uniform(0, np.pi, n).astype(np.float32)
        frequency = (2 * np.pi * rng.uniform(1, 6, n) / size).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        row = (frequency * np.sin(angle))[:, None] * coords[None, :]
        col = (frequency * np.cos(angle))[:, None] * coords[None, :] + phase[:, None]
        # sin(a + b) = sin a cos b + cos a sin b: sines of (n, S) vectors instead of (n, S, S).
        total += 0.5 * (np.sin(row)[:, :, None] * np.cos(col)[:, None, :]
                        + np.cos(row)[:, :, None] * np.sin(col)[:, None, :])
    base = rng.uniform(0, 30, n).astype(np.float32)[:, None, None, None]
    amplitude = rng.uniform(10, 30, n).astype(np.float32)[:, None, None, None]
    texture = base + amplitude * total[..., None]
    if color:
        texture = texture * rng.uniform(0.4, 1.0, (n, 1, 1, 3)).astype(np.float32)
    return np.clip(texture + noise, 0, 255)


def generate_fashion_mnist_scenes(split: str = "train", num_scenes: int = 1000, *, image_size: int = 64,
                                  items_per_scene=(1, 4), scale_range=(1.0, 2.0), threshold: int = 16,
                                  background: str = "texture", color: bool = False, seed: int = 0,
                                  data_dir=None, items=None, return_placements: bool = False):
    """Segmentation scenes made of Fashion-MNIST items, as NumPy arrays.

    Each scene has a background (see `background`) and `items_per_scene` items drawn at random
    from the split, each scaled by a factor from `scale_range` (nearest neighbour), placed wholly
    inside the scene at a random position. An item's pixel belongs to the item when its intensity
    is above `threshold`: there the scene shows the item's pixel and the mask its class; elsewhere
    the scene keeps what was below. Later items occlude earlier ones.

    Args:
        split: "train" or "test": which Fashion-MNIST split the items come from, so that test
            scenes hold items no model saw in training.
        num_scenes: number of scenes.
        image_size: side of the square scenes in pixels; at least 28 * scale_range[1].
        items_per_scene: an int, or an inclusive (low, high) range drawn uniformly per scene
            (low may be 0: scenes of background only).
        scale_range: (low, high) item scale factors; the item side becomes round(28 * factor).
        threshold: intensity above which an item pixel is foreground (0-255).
        background: "texture" (two random sinusoidal gratings plus pixel noise, values up to about
            110, so that intensity alone does not separate items from background), "noise"
            (pixel noise around 16) or "black".
        color: RGB scenes: each item and each background tinted with a random colour. False gives
            one grayscale channel.
        seed: seed of NumPy's generator; the same arguments and seed give the same scenes.
        data_dir: folder with the Fashion-MNIST IDX files (see `load_fashion_mnist`).
        items: (images (N, h, w) uint8, labels (N,) ints) to use instead of Fashion-MNIST; item
            class k gets mask value k + 1.
        return_placements: also return where each item went.

    Returns:
        (images, masks): images uint8 (num_scenes, S, S, 1) (or 3 channels with `color`), masks
        uint8 (num_scenes, S, S) with values in 0..10 (0 background). With `return_placements`, a
        third value: a dict of (num_scenes, max_items) arrays "active" (bool: the slot is used),
        "index" (item index in the source), "label", "top", "left", "height", "width", "area"
        (the item's foreground pixels) and "visible" (those of them not covered by later items),
        slots in paste order; and "instance", int8 (int16 past 127 items) (num_scenes, S, S):
        the slot whose item each pixel shows, -1 for background (the instance mask).

    Raises:
        ValueError: bad split, sizes, ranges or background.
        FileNotFoundError: Fashion-MNIST files missing (the message says how to get them).

    Example:
        >>> images, masks = generate_fashion_mnist_scenes("train", 2000, image_size=64, seed=0)
    """
    if int(num_scenes) < 0:
        raise ValueError(f"`num_scenes` must be >= 0. Received: num_scenes={num_scenes!r}")
    if background not in SCENE_BACKGROUNDS:
        raise ValueError(f"`background` must be one of {SCENE_BACKGROUNDS}. Received: background={background!r}")
    if not 0 <= int(threshold) <= 254:
        raise ValueError(f"`threshold` must be in [0, 254]. Received: threshold={threshold!r}")
    low_k, high_k = _int_range(items_per_scene, "items_per_scene")
    low_s, high_s = (float(v) for v in scale_range)
    if not 0 < low_s <= high_s:
        raise ValueError(f"`scale_range` must be (low, high) with 0 < low <= high. "
                         f"Received: scale_range={scale_range!r}")
    if items is None:
        sources, labels = load_fashion_mnist(split, data_dir)
    else:
        sources, labels = (np.asarray(a) for a in items)
        if sources.ndim != 3 or labels.shape != (len(sources),) or not len(sources):
            raise ValueError(f"`items` must be (images (N, h, w), labels (N,)) with N >= 1. "
                             f"Received shapes {sources.shape} and {labels.shape}")
        if labels.min() < 0 or labels.max() > 254:
            raise ValueError("`items` labels must be in [0, 254] (mask value = label + 1).")
    size = int(image_size)
    item_h, item_w = sources.shape[1:]
    if size < round(max(item_h, item_w) * high_s):
        raise ValueError(f"`image_size` must hold the largest item, {max(item_h, item_w)} * "
                         f"{high_s} = {round(max(item_h, item_w) * high_s)} pixels. "
                         f"Received: image_size={image_size!r}")

    n = int(num_scenes)
    rng = np.random.default_rng(seed)
    # Every item parameter is drawn up front, one (scene, slot) grid each, so that the chunked
    # composition below does not change what is drawn.
    count = rng.integers(low_k, high_k + 1, n)
    slots = max(high_k, 1)
    active = np.arange(slots)[None, :] < count[:, None]
    index = rng.integers(0, len(sources), (n, slots))
    factor = rng.uniform(low_s, high_s, (n, slots))
    height = np.maximum(1, np.round(item_h * factor)).astype(np.int64)
    width = np.maximum(1, np.round(item_w * factor)).astype(np.int64)
    top = (rng.random((n, slots)) * (size - height + 1)).astype(np.int64)
    left = (rng.random((n, slots)) * (size - width + 1)).astype(np.int64)
    tint = rng.uniform(0.4, 1.0, (n, slots, 3)).astype(np.float32)
    tint /= tint.max(axis=-1, keepdims=True)  # the brightest channel keeps the item's intensity
    item_labels = labels[index].astype(np.int64)

    channels = 3 if color else 1
    images = np.empty((n, size, size, channels), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    slot_dtype = np.int8 if slots < 128 else np.int16
    instance = np.empty((n, size, size), slot_dtype) if return_placements else None
    area = np.zeros((n, slots), np.int64)
    grid = np.arange(size)
    for start in range(0, n, _CHUNK):
        part = slice(start, min(n, start + _CHUNK))
        scene = _background(rng, part.stop - part.start, size, background, color)
        mask = np.zeros(scene.shape[:3], np.uint8)
        owner = np.full(scene.shape[:3], -1, slot_dtype) if instance is not None else None
        for j in range(slots):
            dy = grid[None, :] - top[part, j, None]  # (chunk, S): row offsets inside the item
            dx = grid[None, :] - left[part, j, None]
            h, w = height[part, j, None], width[part, j, None]
            inside_y = (dy >= 0) & (dy < h)
            inside_x = (dx >= 0) & (dx < w)
            # Nearest-neighbour scaling: scene pixel -> source pixel floor(offset * 28 / side).
            sy = np.clip(dy * item_h // h, 0, item_h - 1)
            sx = np.clip(dx * item_w // w, 0, item_w - 1)
            values = sources[index[part, j, None, None], sy[:, :, None], sx[:, None, :]]
            foreground = ((values > threshold) & inside_y[:, :, None] & inside_x[:, None, :]
                          & active[part, j, None, None])
            pixels = values[..., None].astype(np.float32)
            if color:
                pixels = pixels * tint[part, j, None, None, :]
            scene = np.where(foreground[..., None], pixels, scene)
            mask = np.where(foreground, (item_labels[part, j] + 1).astype(np.uint8)[:, None, None], mask)
            if instance is not None:
                owner[foreground] = j
                area[part, j] = foreground.sum(axis=(1, 2))
        images[part] = np.round(scene).astype(np.uint8)
        masks[part] = mask
        if instance is not None:
            instance[part] = owner
    if not return_placements:
        return images, masks
    visible = np.stack([(instance == j).sum(axis=(1, 2), dtype=np.int64) for j in range(slots)],
                       axis=1)
    placements = {"active": active, "index": index, "label": item_labels, "top": top,
                  "left": left, "height": height, "width": width, "area": area,
                  "visible": visible, "instance": instance}
    return images, masks, placements
