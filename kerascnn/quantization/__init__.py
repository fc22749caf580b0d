"""Quantization-aware training (QAT) for Keras 3 models, and the checks that go with it.

`qat(model, train_data, ...)` returns a model that trains like any Keras model and converts to a
fully integer TFLite file (`kerascnn.export.export(qat_model, dir, formats=["tflite_qat_int8"])`,
or `to_tflite(qat_model, kind="qat_int8")`). Two engines:

- ``"native"`` (default): the Keras 3 graph rewritten with fake-quantization layers
  (`kerascnn.quantization.native`): BN folded into the convolutions, per-channel symmetric
  weights, per-tensor activation ranges. Works on any functional Keras 3 model of standard
  layers, on every model of the zoo.
- ``"tfmot"``: the reference, tensorflow-model-optimization on a `tf_keras` translation of the
  model (`kerascnn.quantization.tfmot_engine`); it covers fewer layers (see docs/qat.md).

Example:
    >>> float_model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), classes=10)
    >>> ...  # train it
    >>> qat_model = kerascnn.quantization.qat(float_model, train_ds, val_ds, epochs=1)
    >>> kerascnn.export.export(qat_model, "bundle", formats=["tflite_qat_int8"])
"""

from __future__ import annotations

import dataclasses
import time

from kerascnn.quantization.native import (UnsupportedLayerError, calibrate, fake_quant_layers,
                                          quantize_model)

ENGINES = ("native", "tfmot")

__all__ = ["ENGINES", "UnsupportedLayerError", "calibrate", "fake_quant_layers", "qat",
           "qat_recipe", "quantize_model"]


def qat_recipe(recipe=None, *, epochs: int = 1, learning_rate: float | None = None):
    """The training recipe for QAT fine-tuning, derived from a float recipe.

    Fine-tuning starts from trained weights and the BN statistics are frozen (folded into the
    convolutions), so nothing renormalises the activations: a float recipe's SGD rate (0.1, or
    even 0.01) makes it diverge. The QAT recipe keeps the float recipe's batch size, label
    smoothing and augmentation, and trains with AdamW at a small constant-then-cosine rate
    (default 1e-4), no warm-up, no precise-BN pass, no mixed precision (the fake-quant ops are
    float32), no batch mixing and no progressive resizing (QAT fine-tunes the model at the size
    it is exported at).

    Args:
        recipe: the float model's `Recipe` or recipe name (default: "default").
        epochs: QAT epochs.
        learning_rate: peak AdamW learning rate (default 1e-4).

    Returns:
        A `kerascnn.training.Recipe`.
    """
    from kerascnn.training import get_recipe

    base = get_recipe(recipe if recipe is not None else "default")
    return dataclasses.replace(
        base, optimizer="adamw", epochs=epochs, learning_rate=learning_rate or 1e-4,
        weight_decay=min(base.weight_decay, 1e-4), warmup_epochs=0.0, bn_momentum=None,
        precise_bn_steps=0, mixed_precision=False, mixup_alpha=0.0, cutmix_alpha=0.0,
        progressive_resizing=())


def qat(model, train_data, val_data=None, *, epochs: int = 1, engine: str = "native",
        recipe=None, learning_rate: float | None = None, steps_per_epoch: int | None = None,
        calibration_steps: int = 20, out_dir=None, verbose="auto", mode: str = "ema",
        overwrite: bool = False):
    """Fine-tunes a trained float model with quantization-aware training.

    Args:
        model: a trained functional Keras 3 classifier (or segmentation model).
        train_data: batched tf.data.Dataset of (images, labels), preprocessed for the model.
        val_data: the same for validation, or None.
        epochs: QAT epochs (one is usually enough from a converged float model).
        engine: "native" (Keras 3 fake-quant layers) or "tfmot" (tensorflow-model-optimization on
            a tf_keras translation; returns a tf_keras model).
        recipe: float recipe the QAT recipe derives from (see `qat_recipe`).
        learning_rate: QAT peak learning rate (default 1e-4, AdamW; see `qat_recipe`).
        steps_per_epoch: batches per epoch (default: the whole data set).
        calibration_steps: batches used to set the activation ranges before training (native).
        out_dir: run directory (checkpoints, backups, logs) or None.
        verbose: progress bar setting passed to `fit`.
        mode: activation range tracking of the native engine: "ema" or "learned".
        overwrite: replace an earlier run in `out_dir` (see `kerascnn.training.train`).

    Returns:
        The trained QAT model; `model.history.results` holds the final evaluation when
        `val_data` is given and, in `phase_s`, the seconds of the rewrite, the calibration and
        the training phases (native engine, `epochs` > 0).

    Raises:
        ValueError: unknown engine or bad arguments.
        UnsupportedLayerError: a layer the engine cannot quantize (names the layer).
    """
    if engine not in ENGINES:
        raise ValueError(f"`engine` must be one of {list(ENGINES)}. Received: engine={engine!r}")
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"`epochs` must be an integer >= 0. Received: epochs={epochs!r}")
    if engine == "tfmot":
        from kerascnn.quantization import tfmot_engine

        qat_model = tfmot_engine.quantize(model)
        recipe_ = qat_recipe(recipe, epochs=max(epochs, 1), learning_rate=learning_rate)
        if epochs:
            tfmot_engine.train(qat_model, train_data, val_data, epochs=epochs,
                               learning_rate=recipe_.learning_rate,
                               steps_per_epoch=steps_per_epoch)
        return qat_model

    from kerascnn.training import train

    started = time.perf_counter()
    qat_model = quantize_model(model, mode=mode)
    quantized = time.perf_counter()
    calibrate(qat_model, train_data, steps=calibration_steps)
    calibrated = time.perf_counter()
    if epochs:
        history = train(qat_model, train_data, val_data,
                        qat_recipe(recipe, epochs=epochs, learning_rate=learning_rate),
                        out_dir=out_dir, steps_per_epoch=steps_per_epoch, verbose=verbose,
                        overwrite=overwrite)
        history.results["phase_s"] = {"quantize": round(quantized - started, 1),
                                      "calibrate": round(calibrated - quantized, 1),
                                      **history.results.get("phase_s", {})}
        qat_model.history = history
    return qat_model
