"""Training-time augmentation for tf.data pipelines, written with stateless random ops.

Per-image ops (`apply_augmentations`) run before batching on one float image (H, W, C) in raw pixel
units ([0, 255], before normalisation):

- "flip": horizontal flip with probability 1/2.
- "crop": pad-and-crop (He et al., 2016, https://arxiv.org/abs/1512.03385, CIFAR recipe): pad
  with black pixels, 4 px for 32x32 inputs and proportionally (1/8 of the side) otherwise, then
  crop back to (H, W) at a random offset.
- "random_resized_crop": Inception-style crop (Szegedy et al., 2015,
  https://arxiv.org/abs/1409.4842): a box covering 8-100 % of the area with aspect ratio 3/4-4/3,
  resized back to (H, W); the whole image when no box is found in 10 attempts.
- "none": nothing.

Batch ops (`mix_batch`) run after batching on normalised images and one-hot labels:

- MixUp (Zhang et al., 2018, https://arxiv.org/abs/1710.09412): x = lam * x + (1 - lam) * x[perm].
- CutMix (Yun et al., 2019, https://arxiv.org/abs/1905.04899): a box of area ~(1 - lam) is pasted
  from x[perm]; the label weight is the box's actual area after clipping to the image.

Both take one lambda per image (Beta(alpha, alpha)) and, when both are on, each image gets MixUp or
CutMix with probability 1/2 (timm's `switch_prob=0.5`, decided per image instead of per batch).
Because normalisation is affine per channel, mixing normalised images equals normalising mixed raw
images.

Every op takes an explicit `seed` (an int64 tensor of shape (2,)), so a pipeline that feeds seeds
from a seeded `tf.data.Dataset.random` repeats exactly.
"""

from __future__ import annotations

import tensorflow as tf

AUGMENTATIONS = ("flip", "crop", "random_resized_crop", "none")


def normalize_augment(augment) -> tuple:
    """Validates augmentation names: a string, a sequence of strings, or None ("none").

    Returns:
        A tuple of names to apply in order ("none" dropped).

    Raises:
        ValueError: for an unknown name.
    """
    if augment is None:
        return ()
    names = (augment,) if isinstance(augment, str) else tuple(augment)
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"`augment` entries must be among {AUGMENTATIONS}. Received: augment={augment!r}")
    return tuple(n for n in names if n != "none")


def crop_padding(size: int) -> int:
    """Pixels of padding for pad-and-crop: 4 for a 32-pixel side, 1/8 of the side otherwise."""
    return max(1, int(round(size / 8)))


def _sub_seed(seed, k: int):
    return tf.stack([seed[0], seed[1] + k])


def random_flip(image, seed):
    """Horizontal flip with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def random_pad_crop(image, seed):
    """Zero-pad by `crop_padding` pixels on each side, then crop the original size at random."""
    height, width, channels = image.shape
    pad_h, pad_w = crop_padding(height), crop_padding(width)
    padded = tf.pad(image, [[pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    return tf.image.stateless_random_crop(padded, [height, width, channels], seed)


def random_resized_crop(image, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), method="bilinear"):
    """A random box (area fraction in `scale`, aspect ratio in `ratio`) resized to the image size."""
    height, width, _ = image.shape
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, size)
    resized = tf.cast(tf.image.resize(crop, (height, width), method=method), image.dtype)
    resized.set_shape(image.shape)
    return resized


def apply_augmentations(image, seed, names, resize_method="bilinear"):
    """Applies the named per-image augmentations in order.

    Args:
        image: float (H, W, C) tensor with a static shape.
        seed: int64 tensor of shape (2,).
        names: validated names (see `normalize_augment`).
        resize_method: interpolation for "random_resized_crop".

    Returns:
        The augmented image, same shape and dtype.
    """
    for k, name in enumerate(names):
        op_seed = _sub_seed(seed, k)
        if name == "flip":
            image = random_flip(image, op_seed)
        elif name == "crop":
            image = random_pad_crop(image, op_seed)
        elif name == "random_resized_crop":
            image = random_resized_crop(image, op_seed, method=resize_method)
    return image


def _beta(shape, alpha, seed_a, seed_b):
    a = tf.random.stateless_gamma(shape, seed_a, alpha=alpha)
    b = tf.random.stateless_gamma(shape, seed_b, alpha=alpha)
    return a / tf.maximum(a + b, 1e-12)


def mix_batch(images, labels, seed, mixup_alpha=0.0, cutmix_alpha=0.0):
    """MixUp and/or CutMix on one batch.

    Args:
        images: float (B, H, W, C) batch (static H, W, C).
        labels: float one-hot (B, K) labels.
        seed: int64 tensor of shape (2,).
        mixup_alpha, cutmix_alpha: Beta parameters; 0 turns the op off.

    Returns:
        (images, labels) with mixed images and labels whose rows still sum to 1.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, labels
    batch = tf.shape(images)[0]
    _, height, width, _ = images.shape
    perm = tf.random.experimental.stateless_shuffle(tf.range(batch), _sub_seed(seed, 0))
    other_images = tf.gather(images, perm)
    other_labels = tf.gather(labels, perm)

    outputs = []
    if mixup_alpha > 0:
        lam = _beta([batch], mixup_alpha, _sub_seed(seed, 1), _sub_seed(seed, 2))
        lam_x = tf.reshape(lam, [-1, 1, 1, 1])
        outputs.append((lam_x * images + (1 - lam_x) * other_images, lam))
    if cutmix_alpha > 0:
        lam = _beta([batch], cutmix_alpha, _sub_seed(seed, 3), _sub_seed(seed, 4))
        cut = tf.sqrt(1.0 - lam)
        cut_h = tf.cast(tf.round(cut * height), tf.int32)
        cut_w = tf.cast(tf.round(cut * width), tf.int32)
        center = tf.random.stateless_uniform([batch, 2], _sub_seed(seed, 5))
        cy = tf.cast(center[:, 0] * height, tf.int32)
        cx = tf.cast(center[:, 1] * width, tf.int32)
        y1 = tf.clip_by_value(cy - cut_h // 2, 0, height)
        y2 = tf.clip_by_value(cy + (cut_h - cut_h // 2), 0, height)
        x1 = tf.clip_by_value(cx - cut_w // 2, 0, width)
        x2 = tf.clip_by_value(cx + (cut_w - cut_w // 2), 0, width)
        rows = tf.range(height)[None, :, None]
        cols = tf.range(width)[None, None, :]
        inside = ((rows >= y1[:, None, None]) & (rows < y2[:, None, None])
                  & (cols >= x1[:, None, None]) & (cols < x2[:, None, None]))
        mixed = tf.where(inside[..., None], other_images, images)
        area = tf.cast((y2 - y1) * (x2 - x1), tf.float32)
        outputs.append((mixed, 1.0 - area / float(height * width)))

    if len(outputs) == 2:
        use_cutmix = tf.random.stateless_uniform([batch], _sub_seed(seed, 6)) < 0.5
        new_images = tf.where(use_cutmix[:, None, None, None], outputs[1][0], outputs[0][0])
        lam = tf.where(use_cutmix, outputs[1][1], outputs[0][1])
    else:
        new_images, lam = outputs[0]
    lam_y = lam[:, None]
    return new_images, lam_y * labels + (1 - lam_y) * other_labels
