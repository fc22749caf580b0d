"""From (image, label) sources to batches a model trains on: resize, cache, shuffle, augment,
normalise, batch, MixUp/CutMix, prefetch.

The normalisation is the model's `ModelInfo.preprocessing` (x * scale + offset per channel, BGR
order, grayscale <-> RGB) with the same arithmetic as `kerascnn.data.to_model_input`, so a
validation pipeline gives the NumPy helper's inputs to within float rounding.

What is cached is the smallest exact form: uint8 when no resize or a "nearest" resize was needed,
float32 otherwise, and for grayscale images fed to an RGB model the single channel (it is repeated
after the cache; resizing is per channel, so the result is the same). Fashion-MNIST at 32x32 caches
60,000 x 32 x 32 float32 values: 246 MB.
"""

from __future__ import annotations

import tensorflow as tf

from kerascnn.data import augment as augment_lib

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as to_model_input uses
_RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian",
                   "mitchellcubic")


def _as_prep_dict(preprocessing) -> dict:
    if preprocessing is None:
        raise ValueError("`preprocessing` is required: a kerascnn Preprocessing (e.g. "
                         "kerascnn.model_info('mobilenet_v2').preprocessing) or its dict.")
    prep = preprocessing if isinstance(preprocessing, dict) else preprocessing.as_dict()
    missing = {"scale", "offset"} - set(prep)
    if missing:
        raise ValueError(f"`preprocessing` needs 'scale' and 'offset'. Received: preprocessing={prep!r}")
    return prep


def _per_channel(values, channels, what):
    values = tuple(float(v) for v in (values if isinstance(values, (tuple, list)) else (values,)))
    if len(values) == channels:
        return values
    if len(set(values)) == 1:
        return values[:1] * channels
    raise ValueError(f"`preprocessing` {what} has {len(values)} values for a {channels}-channel "
                     f"input. Received: {what}={values}")


def _convert_channels(image, have, want):
    """Channel conversion in float, as to_model_input: RGB -> luma; RGBA drops alpha first.
    Works on one image (H, W, C) or a batch (B, H, W, C)."""
    if have == 4 and want in (1, 3):
        image, have = image[..., :3], 3
    if have == want:
        return image
    if have == 1 and want == 3:
        return tf.concat([image] * 3, axis=-1)
    if have == 3 and want == 1:
        weights = tf.constant(_GRAY_WEIGHTS, tf.float32)
        return tf.tensordot(tf.cast(image, tf.float32), weights, axes=[[-1], [0]])[..., None]
    raise ValueError(f"Cannot turn {have}-channel images into the model's {want} channels.")


def make_pipeline(dataset, *, input_shape, preprocessing, training, batch_size=128,
                  augment=("flip", "crop"), mixup_alpha=0.0, cutmix_alpha=0.0, num_classes=None,
                  cache=True, shuffle_buffer=10000, seed=None, deterministic=False,
                  resize_method="bilinear", drop_remainder=None, one_hot=None):
    """Batches of model inputs from an (image, label) dataset.

    Order: channel reduction (RGB -> gray, RGBA -> RGB) and resize to `input_shape` -> cache ->
    shuffle (training) -> gray -> RGB, augmentation (training) and normalisation -> batch ->
    MixUp/CutMix (training) -> prefetch. Maps run with num_parallel_calls=AUTOTUNE. When
    same-size source images are enlarged with bilinear resizing and augmented with flips at
    most, the resize, gray -> RGB and normalisation run on each batch instead (the same values
    within float rounding: these steps commute with flips), so that the cache and the per-image
    work stay at the source size.

    Randomness is stateless: each image (and each batch, for MixUp/CutMix) gets its own seed from a
    `tf.data.Dataset.random(seed)` stream that changes every epoch, and the shuffle is seeded.
    With `seed` and `deterministic=True` two pipelines built alike give the same batches epoch by
    epoch (each epoch different from the last), including under `model.fit`.

    Args:
        dataset: a `tf.data.Dataset` of (image (H, W, C) or (H, W), integer label), any size,
            e.g. from `kerascnn.data.load`.
        input_shape: the model's (height, width, channels).
        preprocessing: `kerascnn.model_info(name).preprocessing` or its dict (per-channel `scale`
            and `offset`, `channel_order` "RGB"/"BGR"/"L").
        training: True for a training pipeline; False for validation/test (no shuffle, no
            augmentation, no MixUp/CutMix, drop_remainder False by default).
        batch_size: images per batch.
        augment: names from ("flip", "crop", "random_resized_crop", "none"), applied in order; a
            single name or None is accepted.
        mixup_alpha, cutmix_alpha: Beta(alpha, alpha) parameters of MixUp and CutMix; 0 = off.
        num_classes: needed for one-hot labels (MixUp/CutMix or `one_hot=True`).
        cache: True caches in memory, a string caches to that file prefix, False does not cache.
        shuffle_buffer: shuffle buffer size (capped by the dataset size when known).
        seed: int seed for shuffling and augmentation; None draws fresh randomness.
        deterministic: keep element order fixed (tf.data `deterministic` option); with a seed the
            batches repeat exactly. A training pipeline with deterministic=True needs a seed.
            Validation pipelines always keep the source order.
        resize_method: interpolation of `tf.image.resize` (and random_resized_crop).
        drop_remainder: default True for training, False otherwise.
        one_hot: labels as one-hot float32; default: on exactly when MixUp or CutMix is on (in
            training and validation pipelines alike, so one loss serves both).

    Returns:
        A `tf.data.Dataset` of (x float32 (B, height, width, channels), y): y int64 (B,) or
        float32 one-hot (B, num_classes).

    Raises:
        ValueError: unknown augmentation or resize method, bad shapes or alphas, MixUp/CutMix
            without `num_classes`, deterministic training without a seed, channels that cannot be
            converted.

    Example:
        >>> info = kerascnn.model_info("mobilenet_v2")
        >>> train = make_pipeline(kerascnn.data.load("fashion_mnist"), input_shape=(32, 32, 3),
        ...                       preprocessing=info.preprocessing, training=True, seed=0)
    """
    names = augment_lib.normalize_augment(augment)
    height, width, channels = check_input_args(input_shape, resize_method, batch_size)
    for name, alpha in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if alpha is None or float(alpha) < 0:
            raise ValueError(f"`{name}` must be >= 0 (0 turns it off). Received: {name}={alpha!r}")
    mixing = float(mixup_alpha) > 0 or float(cutmix_alpha) > 0
    one_hot = mixing if one_hot is None else bool(one_hot)
    if (mixing or one_hot) and (num_classes is None or int(num_classes) < 2):
        raise ValueError("MixUp/CutMix and one-hot labels need `num_classes` (>= 2). "
                         f"Received: num_classes={num_classes!r}")
    deterministic, drop_remainder = run_settings(training=training, deterministic=deterministic,
                                                 seed=seed, drop_remainder=drop_remainder)
    autotune = tf.data.AUTOTUNE

    image_spec = dataset.element_spec[0]
    if image_spec.shape.rank not in (2, 3):
        raise ValueError(f"Images must be (H, W) or (H, W, C). Received element shape {image_spec.shape}")
    have = 1 if image_spec.shape.rank == 2 else image_spec.shape[-1]
    if have is None:
        raise ValueError("The dataset's images need a known channel count; use set_shape or "
                         "tf.io.decode_image(channels=...).")
    # Channels the cache holds: reduce before it (fewer bytes), expand after it (same result).
    if have not in (1, 3, 4):
        raise ValueError(f"Cannot turn {have}-channel images into the model's {channels} channels.")
    cached_channels = min(have, channels) if have != 4 else channels
    source_size = tuple(image_spec.shape[:2])
    needs_resize = source_size != (height, width)
    # Images of one known size, enlarged by bilinear resizing, with at most flips for
    # augmentation (the Fashion-MNIST recipe's case): flips, the channel expansion and the
    # normalisation all commute with a bilinear resize (the batches come out bit-identical), so
    # the cache keeps the small source images and each batch is resized in one op after
    # batching. Fashion-MNIST's cache for a 64x64 model then holds 47 MB of 28x28 uint8 images
    # instead of 983 MB of 64x64 floats; the time per batch stays about the same (11 ms per 128
    # images at 64x64 on a 2-core CPU). Other augmentations (crops) depend on the model's pixel
    # grid and keep the resize first.
    late_resize = (needs_resize and resize_method == "bilinear" and None not in source_size
                   and (not training or set(names) <= {"flip"})
                   and all(source <= target for source, target in zip(source_size, (height, width))))
    element_size = source_size if late_resize else (height, width)

    def prepare(image, label):
        if image.shape.rank == 2:
            image = image[..., None]
        if cached_channels != have:
            image = _convert_channels(tf.cast(image, tf.float32), have, cached_channels)
        if needs_resize and not late_resize:
            if resize_method != "nearest":
                image = tf.cast(image, tf.float32)
            image = tf.image.resize(image, (height, width), method=resize_method, antialias=False)
        image.set_shape([*element_size, cached_channels])
        return image, tf.cast(label, tf.int64)

    ds = dataset.map(prepare, num_parallel_calls=autotune, deterministic=deterministic)
    ds = cache_and_shuffle(ds, cache=cache, training=training, shuffle_buffer=shuffle_buffer,
                           seed=seed)
    normalize = normalizer(preprocessing, cached_channels, channels)
    if late_resize:
        normalize_batch = normalize

        def normalize(image):  # per image: cast only; the batch is resized and normalised below
            return tf.cast(image, tf.float32)

    def encode(label):
        return tf.one_hot(label, int(num_classes), dtype=tf.float32) if one_hot else label

    if training and names:
        seeds = tf.data.Dataset.random(seed=None if seed is None else seed + 1,
                                       rerandomize_each_iteration=True)

        def augment_one(element, element_seed):
            image, label = element
            image = tf.cast(image, tf.float32)
            image = augment_lib.apply_augmentations(
                image, tf.stack([element_seed, tf.constant(0, tf.int64)]), names, resize_method)
            return normalize(image), encode(label)

        ds = tf.data.Dataset.zip((ds, seeds)).map(augment_one, num_parallel_calls=autotune,
                                                 deterministic=deterministic)
    else:
        ds = ds.map(lambda image, label: (normalize(image), encode(label)),
                    num_parallel_calls=autotune, deterministic=deterministic)

    ds = ds.batch(int(batch_size), drop_remainder=bool(drop_remainder))
    if late_resize:
        def resize_batch(images, labels):
            images = tf.image.resize(images, (height, width), method="bilinear", antialias=False)
            return normalize_batch(images), labels

        ds = ds.map(resize_batch, num_parallel_calls=autotune, deterministic=deterministic)
    if training and mixing:
        batch_seeds = tf.data.Dataset.random(seed=None if seed is None else seed + 2,
                                             rerandomize_each_iteration=True)

        def mix(batch, batch_seed):
            images, labels = batch
            return augment_lib.mix_batch(images, labels, tf.stack([batch_seed, tf.constant(0, tf.int64)]),
                                         float(mixup_alpha), float(cutmix_alpha))

        ds = tf.data.Dataset.zip((ds, batch_seeds)).map(mix, num_parallel_calls=autotune,
                                                       deterministic=deterministic)
    ds = ds.prefetch(autotune)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options)


def pipeline_for(model_or_name, dataset, *, training, **kwargs):
    """`make_pipeline` with the input shape and preprocessing of a model.

    Args:
        model_or_name: a Keras model (input_shape from `model.input_shape[1:]`, preprocessing from
            `kerascnn.model_info(model.name)` when that name is registered) or a registry name
            (input_shape from `kwargs` or the model's default input shape).
        dataset: an (image, label) `tf.data.Dataset`.
        training: see `make_pipeline`.
        **kwargs: other `make_pipeline` arguments; an explicit `input_shape` or `preprocessing`
            wins over what the model says (needed for models not in the registry).

    Raises:
        ValueError: when neither the registry nor `preprocessing=` gives the preprocessing, or the
            input shape is unknown.
    """
    return make_pipeline(dataset, training=training, **model_pipeline_kwargs(model_or_name, kwargs))


def model_pipeline_kwargs(model_or_name, kwargs: dict) -> dict:
    """`kwargs` completed with the input shape and preprocessing of a model or registry name
    (explicit values win); shared by the classification and segmentation `*_pipeline_for`.

    Raises:
        ValueError: when neither the registry nor `preprocessing=` gives the preprocessing, or the
            input shape is unknown.
    """
    import kerascnn

    kwargs = dict(kwargs)
    if isinstance(model_or_name, str):
        info = kerascnn.model_info(model_or_name)
        kwargs.setdefault("input_shape", info.default_input_shape)
        kwargs.setdefault("preprocessing", info.preprocessing)
        return kwargs
    model = model_or_name
    if "input_shape" not in kwargs:
        shape = tuple(model.input_shape[1:])
        if len(shape) != 3 or None in shape:
            raise ValueError(f"Model {model.name!r} has input shape {model.input_shape}; pass "
                             "input_shape=(height, width, channels).")
        kwargs["input_shape"] = shape
    if kwargs.get("preprocessing") is None:
        try:
            kwargs["preprocessing"] = kerascnn.model_info(model.name).preprocessing
        except ValueError:
            raise ValueError(f"Model {model.name!r} is not in the kerascnn registry, so its "
                             "preprocessing is unknown; pass preprocessing=... (a "
                             "kerascnn.registry.Preprocessing or a dict with scale, offset, "
                             "channel_order).") from None
    return kwargs


def cache_and_shuffle(ds, *, cache, training, shuffle_buffer, seed):
    """Caches `ds` (True: in memory, a string: to that file prefix) and, for training, shuffles it
    with a buffer capped by its size; shared by the classification and segmentation pipelines."""
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if training and shuffle_buffer:
        buffer = int(shuffle_buffer)
        size = int(ds.cardinality())
        if size > 0:
            buffer = min(buffer, size)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    return ds


def check_input_args(input_shape, resize_method, batch_size) -> tuple:
    """(height, width, channels) of `input_shape` after checking it, `resize_method` and
    `batch_size`; shared by the classification and segmentation pipelines."""
    if len(input_shape) != 3 or any(d is None or int(d) <= 0 for d in input_shape):
        raise ValueError(f"`input_shape` must be (height, width, channels) with known sizes. "
                         f"Received: input_shape={input_shape!r}")
    height, width, channels = (int(d) for d in input_shape)
    if channels not in (1, 3):
        raise ValueError(f"Models take 1 or 3 channels. Received: input_shape={input_shape!r}")
    if resize_method not in _RESIZE_METHODS:
        raise ValueError(f"`resize_method` must be one of {_RESIZE_METHODS}. "
                         f"Received: resize_method={resize_method!r}")
    if int(batch_size) <= 0:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    return height, width, channels


def run_settings(*, training, deterministic, seed, drop_remainder):
    """(deterministic, drop_remainder) as a pipeline applies them; shared by the classification and
    segmentation pipelines. A deterministic training pipeline needs a seed; validation keeps the
    source order always, training may let parallel maps reorder for speed; only training drops
    the last partial batch by default."""
    if training and deterministic and seed is None:
        raise ValueError("A deterministic training pipeline needs an int `seed` for its shuffle and "
                         "augmentation. Received: seed=None")
    if drop_remainder is None:
        drop_remainder = bool(training)
    return bool(deterministic) or not training, drop_remainder


def normalizer(preprocessing, cached_channels, channels):
    """The map from a cached image (`cached_channels` channels) to the model's input: channel
    expansion, RGB->BGR, scale and offset; shared by the classification and segmentation
    pipelines."""
    prep = _as_prep_dict(preprocessing)
    scale = tf.constant(_per_channel(prep["scale"], channels, "scale"), tf.float32)
    offset = tf.constant(_per_channel(prep["offset"], channels, "offset"), tf.float32)
    bgr = prep.get("channel_order") == "BGR"

    def normalize(image):
        image = _convert_channels(tf.cast(image, tf.float32), cached_channels, channels)
        if bgr:
            image = image[..., ::-1]
        return image * scale + offset
    return normalize
