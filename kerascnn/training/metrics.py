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
