"""Semantic segmentation data: an offline scene set, TFDS masks, and a pipeline for (image, mask) pairs.

Sources yield `(image uint8 (H, W, C), mask (H, W))`, one integer class per pixel; they do no
resizing to a model's size, normalisation or batching. `make_segmentation_pipeline` does that,
and applies every geometric augmentation to the image and its mask alike.

- `generate_fashion_mnist_scenes` / `fashion_mnist_scenes`: scenes composed from Fashion-MNIST
  items (Xiao et al., 2017, https://arxiv.org/abs/1708.07747) on a textured background, with
  per-pixel masks. Class 0 is background and class k + 1 is Fashion-MNIST class k (11 classes,
  `SCENE_CLASSES`). Made here because this machine cannot download a segmentation set; it needs
  only Debian's dataset-fashion-mnist files and takes about a second for thousands of scenes.
  The idea is the one of "multi-digit MNIST" scene sets; the details are our own.
- `from_tfds_segmentation`: real sets from TensorFlow Datasets, e.g. "oxford_iiit_pet" (Parkhi
  et al., 2012, https://www.robots.ox.ac.uk/~vgg/data/pets/), whose trimap values are mapped to
  0-based classes with background first (see `TFDS_SEGMENTATION`).
- `from_segmentation_arrays`: (image, mask) pairs from in-memory arrays.

Augmentations (training pipelines), all with stateless seeds as in `kerascnn.data.augment`:

- "flip": horizontal flip of image and mask with probability 1/2.
- "crop": the classification pipeline's pad-and-crop on image and mask together; padded pixels
  are black with class 0.
- "random_scale": DeepLab's scale jitter (Chen et al., 2018, https://arxiv.org/abs/1802.02611):
  resize by a factor drawn uniformly from `scale_range` (image with `resize_method`, mask with
  nearest neighbour), then crop a random window of the input size (when enlarged) or place the
  whole shrunk scene at a random position on black / class 0 (when shrunk).

Padding uses class 0, so these augmentations assume class 0 is background, as it is for every
source in this module.
"""

from __future__ import annotations


import numpy as np
import tensorflow as tf

from kerascnn.data import augment as augment_lib
from kerascnn.data.scenes import SCENE_CLASSES, generate_fashion_mnist_scenes
from kerascnn.data.pipeline import (_convert_channels, cache_and_shuffle, check_input_args,
                                    model_pipeline_kwargs, normalizer, run_settings)
from kerascnn.data.sources import _with_class_names, prepared_tfds

SEGMENTATION_AUGMENTATIONS = ("flip", "crop", "random_scale", "none")

# What we know about TFDS segmentation sets: where the mask is and how its values become classes.
# Oxford-IIIT Pet's trimaps hold 1 = pet, 2 = background, 3 = border (the unsure band around the
# pet's outline). We put background first (class 0) so that padding during augmentation is
# background, as for the scenes; the TensorFlow segmentation tutorial's `mask - 1` makes the pet
# class 0 instead.
TFDS_SEGMENTATION = {
    "oxford_iiit_pet": {
        "mask_key": "segmentation_mask",
        "value_map": {2: 0, 1: 1, 3: 2},
        "class_names": ("background", "pet", "border"),
    },
}

# --- the offline scene set (composed in kerascnn.data.scenes) ------------------------------

def from_segmentation_arrays(images, masks) -> tf.data.Dataset:
    """A dataset of (image, mask) pairs from in-memory arrays.

    Args:
        images: (N, H, W) or (N, H, W, C) integer images with values in [0, 255].
        masks: (N, H, W) or (N, H, W, 1) non-negative integer class indices.

    Returns:
        A `tf.data.Dataset` of (image uint8 (H, W, C), mask (H, W)); masks stay uint8 when their
        values fit, else int32.

    Raises:
        ValueError: wrong ranks or dtypes, image and mask sizes that differ, values out of range.

    Example:
        >>> ds = from_segmentation_arrays(np.zeros((4, 32, 32, 3), np.uint8),
        ...                               np.zeros((4, 32, 32), np.uint8))
    """
    images = np.asarray(images)
    masks = np.asarray(masks)
    if images.ndim == 3:
        images = images[..., None]
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if images.ndim != 4 or masks.ndim != 3:
        raise ValueError(f"`images` must be (N, H, W[, C]) and `masks` (N, H, W[, 1]). Received "
                         f"shapes {images.shape} and {masks.shape}")
    if images.shape[:3] != masks.shape:
        raise ValueError(f"Every image needs a mask of its size. Received shapes {images.shape} "
                         f"and {masks.shape}")
    for what, array, high in (("images", images, 255), ("masks", masks, None)):
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"`{what}` must be integer arrays. Received dtype {array.dtype}")
        if array.size and (array.min() < 0 or (high is not None and array.max() > high)):
            raise ValueError(f"`{what}` values must be in [0, {high or 'inf'}]. Received values "
                             f"in [{array.min()}, {array.max()}]")
    images = images.astype(np.uint8)
    masks = masks.astype(np.uint8 if not masks.size or masks.max() <= 255 else np.int32)
    return tf.data.Dataset.from_tensor_slices((images, masks))


def fashion_mnist_scenes(split: str = "train", num_scenes: int = 1000, **kwargs) -> tf.data.Dataset:
    """`generate_fashion_mnist_scenes` as a `tf.data.Dataset` of (image, mask).

    Args:
        split, num_scenes, **kwargs: see `generate_fashion_mnist_scenes` (except
            `return_placements`).

    Returns:
        A dataset of (image uint8 (S, S, 1 or 3), mask uint8 (S, S)) with `class_names` =
        `SCENE_CLASSES` (when custom `items` are given: "background" then "class_k").

    Example:
        >>> train = fashion_mnist_scenes("train", 4000, image_size=64, seed=0)
        >>> test = fashion_mnist_scenes("test", 500, image_size=64, seed=1)
    """
    if "return_placements" in kwargs:
        raise TypeError("`fashion_mnist_scenes` has no `return_placements`; use "
                        "generate_fashion_mnist_scenes for the placements.")
    images, masks = generate_fashion_mnist_scenes(split, num_scenes, **kwargs)
    names = SCENE_CLASSES
    if kwargs.get("items") is not None:
        names = ("background", *(f"class_{k}" for k in range(int(np.max(kwargs["items"][1])) + 1)))
    return _with_class_names(from_segmentation_arrays(images, masks), names)


# --- TensorFlow Datasets ----------------------------------------------------------------------

def _value_table(value_map):
    table = np.arange(256, dtype=np.int32)  # values not in the map are kept
    for raw, cls in value_map.items():
        if not (0 <= int(raw) <= 255 and int(cls) >= 0):
            raise ValueError(f"`value_map` maps mask bytes 0-255 to classes >= 0. Received: "
                             f"{raw!r}: {cls!r}")
        table[int(raw)] = int(cls)
    return tf.constant(table)


def from_tfds_segmentation(name: str, split: str = "train", *, data_dir=None, image_size=None,
                           download: bool = False, mask_key=None, value_map=None):
    """A TensorFlow Datasets segmentation set as (image, mask) pairs.

    Args:
        name: a TFDS name, e.g. "oxford_iiit_pet" (optionally with a version,
            "oxford_iiit_pet:4.0.0").
        split: a TFDS split string ("train", "test", "train[:90%]", ...).
        data_dir: folder with prepared TFDS data; default $TFDS_DATA_DIR or ~/tensorflow_datasets.
        image_size: (height, width) (or an int) to resize to here: image bilinear (rounded back
            to uint8), mask nearest neighbour. None keeps each example's size and leaves resizing
            to `make_segmentation_pipeline`, which does the same.
        download: try `download_and_prepare` first (needs internet; this machine has none).
        mask_key: the feature holding the mask; default from `TFDS_SEGMENTATION`, else
            "segmentation_mask".
        value_map: {mask value: class} for values that change; other values are kept. Default
            from `TFDS_SEGMENTATION` (oxford_iiit_pet: 2 -> 0 background, 1 -> 1 pet,
            3 -> 2 border), else none.

    Returns:
        A `tf.data.Dataset` of (image uint8 (H, W, 3), mask int32 (H, W)); H and W are None without
        `image_size`. `class_names` is set for the sets in `TFDS_SEGMENTATION`.

    Raises:
        ImportError: tensorflow-datasets is not installed.
        ValueError: unknown dataset name, or no such mask feature.
        FileNotFoundError: the data is not prepared in `data_dir` (and download is off or failed);
            the message names the folder searched and how to prepare it.

    Example:
        >>> pets = from_tfds_segmentation("oxford_iiit_pet", "train", image_size=128)
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("`from_tfds_segmentation` needs tensorflow-datasets: pip install "
                          "tensorflow-datasets. For an offline set use "
                          "kerascnn.data.fashion_mnist_scenes().") from e
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"TensorFlow Datasets has no dataset named {name!r} "
                         f"(see tfds.list_builders()). Received: name={name!r}") from e
    known = TFDS_SEGMENTATION.get(builder.name, {})
    mask_key = mask_key or known.get("mask_key", "segmentation_mask")
    value_map = known.get("value_map", {}) if value_map is None else dict(value_map)
    features = builder.info.features
    if mask_key not in features or "image" not in features:
        raise ValueError(f"TFDS dataset {name!r} has no 'image' and {mask_key!r} features "
                         f"(it has {sorted(features.keys())}). Pass mask_key=... for another name.")
    size = None
    if image_size is not None:
        size = (int(image_size), int(image_size)) if np.isscalar(image_size) else \
            (int(image_size[0]), int(image_size[1]))

    dataset = prepared_tfds(builder, name, split, data_dir=data_dir, download=download,
                            offline_hint="kerascnn.data.fashion_mnist_scenes()")
    table = _value_table(value_map) if value_map else None

    def convert(example):
        image, mask = example["image"], example[mask_key]
        if mask.shape.rank == 3:
            mask = mask[..., 0]
        mask = tf.cast(mask, tf.int32)
        if table is not None:
            mask = tf.gather(table, mask)
        if size is not None:
            image = tf.image.resize(image, size, method="bilinear")
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            mask = tf.image.resize(mask[..., None], size, method="nearest")[..., 0]
        image.set_shape([*(size or (None, None)), 3])
        mask.set_shape([*(size or (None, None))])
        return image, mask

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    return _with_class_names(dataset, known.get("class_names"))


# --- the pipeline -----------------------------------------------------------------------------

def _normalize_augment(augment) -> tuple:
    if augment is None:
        return ()
    names = (augment,) if isinstance(augment, str) else tuple(augment)
    unknown = [n for n in names if n not in SEGMENTATION_AUGMENTATIONS]
    if unknown:
        raise ValueError(f"`augment` entries must be among {SEGMENTATION_AUGMENTATIONS}. "
                         f"Received: augment={augment!r}")
    return tuple(n for n in names if n != "none")


def random_scale(image, mask, seed, scale_range=(0.5, 2.0), method="bilinear"):
    """Scale jitter of an image and its mask, back to the input size.

    Args:
        image: float (H, W, C) tensor with a static shape.
        mask: float (H, W, 1) tensor of class indices.
        seed: int64 tensor of shape (2,).
        scale_range: (low, high) of the uniformly drawn scale factor.
        method: interpolation for the image; the mask always uses nearest neighbour.

    Returns:
        (image, mask) with the input shapes: a random window of the enlarged pair, or the whole
        shrunk pair at a random position on zeros.
    """
    height, width, channels = image.shape
    factor = tf.random.stateless_uniform([], augment_lib._sub_seed(seed, 0), scale_range[0],
                                         scale_range[1])
    new_h = tf.maximum(1, tf.cast(tf.round(height * factor), tf.int32))
    new_w = tf.maximum(1, tf.cast(tf.round(width * factor), tf.int32))
    image = tf.image.resize(image, tf.stack([new_h, new_w]), method=method)
    mask = tf.image.resize(mask, tf.stack([new_h, new_w]), method="nearest")
    both = tf.concat([image, mask], axis=-1)
    pad_h, pad_w = tf.maximum(height - new_h, 0), tf.maximum(width - new_w, 0)
    # Where the shrunk pair sits: a uniform split of the padding between the two sides.
    split = tf.random.stateless_uniform([2], augment_lib._sub_seed(seed, 1))
    before_h = tf.cast(split[0] * tf.cast(pad_h + 1, tf.float32), tf.int32)
    before_w = tf.cast(split[1] * tf.cast(pad_w + 1, tf.float32), tf.int32)
    both = tf.pad(both, [[before_h, pad_h - before_h], [before_w, pad_w - before_w], [0, 0]])
    both = tf.image.stateless_random_crop(both, [height, width, channels + 1],
                                          augment_lib._sub_seed(seed, 2))
    return both[..., :channels], both[..., channels:]


def apply_segmentation_augmentations(image, mask, seed, names, scale_range=(0.5, 2.0),
                                     resize_method="bilinear"):
    """Applies the named augmentations in order to an image and its mask alike.

    Args:
        image: float (H, W, C) tensor with a static shape.
        mask: (H, W) integer tensor.
        seed: int64 tensor of shape (2,).
        names: names from `SEGMENTATION_AUGMENTATIONS`.
        scale_range: see `random_scale`.
        resize_method: image interpolation for "random_scale".

    Returns:
        (image float32 (H, W, C), mask int32 (H, W)).
    """
    channels = image.shape[-1]
    # The mask rides along as one more channel (float32 holds class indices exactly), so that flip
    # and crop are the classification pipeline's own functions, applied once to both.
    mask = tf.cast(mask, tf.float32)[..., None]
    for k, name in enumerate(names):
        op_seed = augment_lib._sub_seed(seed, k)
        if name == "random_scale":
            image, mask = random_scale(image, mask, op_seed, scale_range, resize_method)
            continue
        both = tf.concat([image, mask], axis=-1)
        if name == "flip":
            both = augment_lib.random_flip(both, op_seed)
        elif name == "crop":
            both = augment_lib.random_pad_crop(both, op_seed)
        image, mask = both[..., :channels], both[..., channels:]
    return image, tf.cast(mask[..., 0], tf.int32)


def make_segmentation_pipeline(dataset, *, input_shape, preprocessing, training, batch_size=32,
                               augment=("flip", "random_scale"), scale_range=(0.5, 2.0),
                               cache=True, shuffle_buffer=10000, seed=None, deterministic=False,
                               resize_method="bilinear", drop_remainder=None):
    """Batches of (model input, mask) from an (image, mask) dataset.

    Order, as in `kerascnn.data.make_pipeline`: channel reduction and resize to `input_shape`
    (mask: nearest neighbour) -> cache -> shuffle (training) -> gray -> RGB, augmentation
    (training) and normalisation -> batch -> prefetch. Maps run with num_parallel_calls=AUTOTUNE;
    randomness is stateless and seeded per image from a `tf.data.Dataset.random(seed)` stream, so
    with `seed` and `deterministic=True` two pipelines built alike give the same batches.

    Args:
        dataset: a `tf.data.Dataset` of (image (H, W, C) or (H, W), mask (H, W) or (H, W, 1)),
            e.g. from `fashion_mnist_scenes` or `from_tfds_segmentation`.
        input_shape: the model's (height, width, channels).
        preprocessing: `kerascnn.model_info(name).preprocessing` or its dict.
        training: True for a training pipeline (shuffle, augmentation, drop_remainder).
        batch_size: images per batch.
        augment: names from ("flip", "crop", "random_scale", "none"), applied in order to image and
            mask alike; a single name or None is accepted.
        scale_range: (low, high) factor of "random_scale".
        cache: True caches in memory, a string caches to that file prefix, False does not cache.
        shuffle_buffer: shuffle buffer size (capped by the dataset size when known).
        seed: int seed for shuffling and augmentation; None draws fresh randomness.
        deterministic: keep element order fixed; a training pipeline with it needs a seed.
            Validation pipelines always keep the source order.
        resize_method: image interpolation (masks are always resized with nearest neighbour).
        drop_remainder: default True for training, False otherwise.

    Returns:
        A `tf.data.Dataset` of (x float32 (B, height, width, channels), mask int32
        (B, height, width)), ready for a sparse categorical loss or `train`.

    Raises:
        ValueError: unknown augmentation or resize method, bad shapes or scale range,
            deterministic training without a seed, channels that cannot be converted.

    Example:
        >>> info = kerascnn.model_info("unet_mobilenet_v2")
        >>> train = make_segmentation_pipeline(fashion_mnist_scenes("train", 4000),
        ...     input_shape=(64, 64, 3), preprocessing=info.preprocessing, training=True, seed=0)
    """
    names = _normalize_augment(augment)
    height, width, channels = check_input_args(input_shape, resize_method, batch_size)
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise ValueError(f"`scale_range` must be (low, high) with 0 < low <= high. "
                         f"Received: scale_range={scale_range!r}")
    deterministic, drop_remainder = run_settings(training=training, deterministic=deterministic,
                                                 seed=seed, drop_remainder=drop_remainder)
    autotune = tf.data.AUTOTUNE

    if not isinstance(dataset.element_spec, tuple) or len(dataset.element_spec) != 2:
        raise ValueError("The dataset must yield (image, mask) pairs. Received element spec "
                         f"{dataset.element_spec}")
    image_spec, mask_spec = dataset.element_spec
    if image_spec.shape.rank not in (2, 3):
        raise ValueError(f"Images must be (H, W) or (H, W, C). Received element shape {image_spec.shape}")
    if not (mask_spec.shape.rank == 2 or (mask_spec.shape.rank == 3 and mask_spec.shape[-1] == 1)):
        raise ValueError(f"Masks must be (H, W) or (H, W, 1). Received element shape {mask_spec.shape}")
    have = 1 if image_spec.shape.rank == 2 else image_spec.shape[-1]
    if have not in (1, 3, 4):
        raise ValueError(f"Cannot turn {have}-channel images into the model's {channels} channels.")
    # The cache holds the fewest channels that still give the model's input (as make_pipeline).
    cached_channels = min(have, channels) if have != 4 else channels
    needs_resize = (tuple(image_spec.shape[:2]) != (height, width)
                    or tuple(mask_spec.shape[:2]) != (height, width))

    def prepare(image, mask):
        if image.shape.rank == 2:
            image = image[..., None]
        if mask.shape.rank == 3:
            mask = mask[..., 0]
        if cached_channels != have:
            image = _convert_channels(tf.cast(image, tf.float32), have, cached_channels)
        if needs_resize:
            if resize_method != "nearest":
                image = tf.cast(image, tf.float32)
            image = tf.image.resize(image, (height, width), method=resize_method, antialias=False)
            mask = tf.image.resize(mask[..., None], (height, width), method="nearest")[..., 0]
        image.set_shape([height, width, cached_channels])
        mask.set_shape([height, width])
        return image, mask

    ds = dataset.map(prepare, num_parallel_calls=autotune, deterministic=deterministic)
    ds = cache_and_shuffle(ds, cache=cache, training=training, shuffle_buffer=shuffle_buffer,
                           seed=seed)
    normalize = normalizer(preprocessing, cached_channels, channels)

    if training and names:
        seeds = tf.data.Dataset.random(seed=None if seed is None else seed + 1,
                                       rerandomize_each_iteration=True)

        def augment_one(element, element_seed):
            image, mask = element
            image, mask = apply_segmentation_augmentations(
                tf.cast(image, tf.float32), mask, tf.stack([element_seed, tf.constant(0, tf.int64)]),
                names, (low, high), resize_method)
            return normalize(image), mask

        ds = tf.data.Dataset.zip((ds, seeds)).map(augment_one, num_parallel_calls=autotune,
                                                 deterministic=deterministic)
    else:
        ds = ds.map(lambda image, mask: (normalize(image), tf.cast(mask, tf.int32)),
                    num_parallel_calls=autotune, deterministic=deterministic)
    ds = ds.batch(int(batch_size), drop_remainder=bool(drop_remainder)).prefetch(autotune)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options)


def segmentation_pipeline_for(model_or_name, dataset, *, training, **kwargs):
    """`make_segmentation_pipeline` with the input shape and preprocessing of a model.

    Args:
        model_or_name: a Keras model (input shape from `model.input_shape[1:]`, preprocessing from
            `kerascnn.model_info(model.name)` when registered) or a registry name (input shape
            from `kwargs` or the model's default).
        dataset: an (image, mask) `tf.data.Dataset`.
        training: see `make_segmentation_pipeline`.
        **kwargs: other `make_segmentation_pipeline` arguments; an explicit `input_shape` or
            `preprocessing` wins over what the model says.

    Raises:
        ValueError: when neither the registry nor `preprocessing=` gives the preprocessing, or the
            input shape is unknown.
    """
    return make_segmentation_pipeline(dataset, training=training,
                                      **model_pipeline_kwargs(model_or_name, kwargs))
