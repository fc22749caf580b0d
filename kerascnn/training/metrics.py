"""Segmentation metrics in NumPy, for outputs that never pass through Keras (TFLite, the phone).

Inside Keras use `keras.metrics.MeanIoU(num_classes, sparse_y_pred=False)` (what `train` adds for
segmentation models); `mean_iou` here computes the same number from arrays: one confusion matrix
over all pixels of all images, IoU_c = TP_c / (TP_c + FP_c + FN_c), and the mean over the classes
that occur in the labels or the predictions (a class absent from both has no IoU and is left
out, as Keras does).
"""

from __future__ import annotations

import numpy as np


def _labels(values, name, num_classes):
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        if values.size and not np.all(np.mod(values, 1) == 0):
            raise ValueError(f"`{name}` must hold integer class indices (or pass probabilities with "
                             f"one more axis). Received dtype {values.dtype}")
    return values.astype(np.int64)


def _class_arrays(y_true, y_pred, num_classes):
    """(y_true, y_pred) as int64 class indices of one shape; scores in y_pred reduced by argmax."""
    y_true = _labels(y_true, "y_true", num_classes)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == y_true.ndim + 1:
        if y_pred.shape[-1] != num_classes:
            raise ValueError(f"Scores need a last axis of size num_classes={num_classes}. "
                             f"Received shape {y_pred.shape}")
        y_pred = np.argmax(y_pred, axis=-1)
    y_pred = _labels(y_pred, "y_pred", num_classes)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"`y_pred` must have the shape of `y_true` {y_true.shape} (or one more axis "
                         f"of scores). Received shape {y_pred.shape}")
    return y_true, y_pred


def confusion_matrix(y_true, y_pred, num_classes: int, *, ignore_class=None) -> np.ndarray:
    """Pixel confusion matrix: rows are true classes, columns predicted classes.

    Args:
        y_true: integer class indices of any shape, e.g. masks (N, H, W).
        y_pred: class indices of the same shape, or scores/probabilities with one more (last)
            axis of size `num_classes`, which are reduced with argmax.
        num_classes: number of classes.
        ignore_class: a label value whose pixels are left out (e.g. 255 for "void").

    Returns:
        int64 array (num_classes, num_classes).

    Raises:
        ValueError: shapes that do not match, or class indices outside [0, num_classes) (other
            than `ignore_class`). Keras's MeanIoU drops such pixels silently; here they are
            reported, since they mean the labels and the model disagree on the classes.
    """
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1. Received: num_classes={num_classes!r}")
    y_true, y_pred = _class_arrays(y_true, y_pred, num_classes)
    y_true, y_pred = y_true.ravel(), y_pred.ravel()
    if ignore_class is not None:
        keep = y_true != int(ignore_class)
        y_true, y_pred = y_true[keep], y_pred[keep]
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"`{name}` holds class indices outside [0, {num_classes}): "
                             f"[{values.min()}, {values.max()}]")
    return np.bincount(y_true * num_classes + y_pred,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(y_true, y_pred, num_classes: int, *, ignore_class=None) -> np.ndarray:
    """IoU of each class (float64 (num_classes,)); NaN for a class in neither labels nor predictions.

    Args and Raises: see `confusion_matrix`.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes, ignore_class=ignore_class).astype(np.float64)
    true_positives = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positives / union, np.nan)


def mean_iou(y_true, y_pred, num_classes: int, *, ignore_class=None) -> float:
    """Mean intersection over union, as `keras.metrics.MeanIoU` computes it over a whole data set.

    Args:
        y_true: integer masks, e.g. (N, H, W).
        y_pred: predicted masks of the same shape, or probabilities (N, H, W, num_classes) (e.g.
            a TFLite model's softmax output), reduced with argmax.
        num_classes: number of classes.
        ignore_class: a label value whose pixels are left out.

    Returns:
        The mean IoU over the classes present in the labels or the predictions (0.0 when there is
        no pixel at all).

    Raises:
        ValueError: see `confusion_matrix`.

    Example:
        >>> mean_iou([[0, 0, 1, 1]], [[0, 1, 0, 1]], num_classes=2)
        0.3333333333333333
    """
    ious = iou_per_class(y_true, y_pred, num_classes, ignore_class=ignore_class)
    present = ~np.isnan(ious)
    return float(ious[present].mean()) if present.any() else 0.0


def error_breakdown(y_true, y_pred, num_classes: int, *, background: int = 0) -> dict:
    """Splits a segmentation score into *finding* objects and *naming* them.

    A model can lose mean IoU in two ways: its foreground (every class but `background`) covers
    the wrong pixels, or it covers the right ones with the wrong class. The figures below tell the
    two apart; for example a model with foreground IoU 0.92 whose `mean_iou_true_classes` is 0.92
    but whose mean IoU is 0.59 finds the objects and misnames them.

    Args:
        y_true: integer masks (N, H, W) (any shape with the images along the first axis).
        y_pred: predicted masks of the same shape, or scores with one more axis of size
            `num_classes` (reduced with argmax).
        num_classes: number of classes.
        background: the class that is not an object.

    Returns:
        A dict of floats (NaN where there is nothing to measure):
        - "mean_iou": as `mean_iou`.
        - "foreground_iou": IoU of "not background" in the labels against the predictions.
        - "class_accuracy": among the pixels that are foreground in both, the fraction predicted
          with their true class.
        - "mean_iou_true_classes": the mean IoU after every pixel that is foreground in both gets
          its true class: the score of this model's foreground with perfect naming.
        - "region_accuracy": a region is the pixels of one true class in one image; it counts as
          named right when the class most of its pixels are predicted as, among the foreground
          classes, is the true one (a region predicted all background counts as wrong).
        - "regions": how many regions there are.

    Raises:
        ValueError: as `confusion_matrix`; masks without an image axis; a `background` outside
            [0, num_classes).

    Example:
        >>> error_breakdown([[[0, 1, 1, 2]]], [[[0, 1, 2, 2]]], num_classes=3)["class_accuracy"]
        0.6666666666666666
    """
    num_classes = int(num_classes)
    y_true, y_pred = _class_arrays(y_true, y_pred, num_classes)  # scores: one argmax, here
    score = mean_iou(y_true, y_pred, num_classes)  # also checks the class range
    if y_true.ndim < 2:
        raise ValueError("`error_breakdown` needs masks with an image axis first, e.g. (N, H, W). "
                         f"Received shape {y_true.shape}")
    if not 0 <= int(background) < num_classes:
        raise ValueError(f"`background` must be a class in [0, {num_classes}). "
                         f"Received: background={background!r}")
    background = int(background)
    true_fg, pred_fg = y_true != background, y_pred != background
    both = true_fg & pred_fg
    union = int(np.count_nonzero(true_fg | pred_fg))
    found = int(np.count_nonzero(both))

    # Regions: one id per (image, true class); votes of the predicted foreground classes.
    image = np.arange(y_true.shape[0]).reshape((-1,) + (1,) * (y_true.ndim - 1))
    region_key = (np.broadcast_to(image, y_true.shape) * num_classes + y_true)[true_fg]
    regions, region = np.unique(region_key, return_inverse=True)
    voted = pred_fg[true_fg]
    votes = np.bincount(region[voted] * num_classes + y_pred[true_fg][voted],
                        minlength=len(regions) * num_classes).reshape(len(regions), num_classes)
    named = (votes.sum(axis=1) > 0) & (votes.argmax(axis=1) == regions % num_classes)

    return {
        "mean_iou": score,
        "foreground_iou": found / union if union else float("nan"),
        "class_accuracy": (int(np.count_nonzero(y_true[both] == y_pred[both])) / found
                           if found else float("nan")),
        "mean_iou_true_classes": mean_iou(y_true, np.where(both, y_true, y_pred), num_classes),
        "region_accuracy": float(named.mean()) if len(regions) else float("nan"),
        "regions": int(len(regions)),
    }
