"""Segmentation models trained on the offline Fashion-MNIST scenes, then exported to float TFLite.

For each model: build it from the registry (MobileNetV2 backbone, width `--alpha`, 11 classes;
this machine has no ImageNet weights, so with `--pretrain-epochs N` the backbone starts from a
MobileNetV2 classifier trained here for N epochs, on the Fashion-MNIST items at 32x32 or, with
`--pretrain-on scenes`, on one-item scenes like the benchmark's, copied in with
`kerascnn.models.segmentation.transfer_backbone`; otherwise from scratch), train
it with `kerascnn.training.train` on `fashion_mnist_scenes("train")` through
`make_segmentation_pipeline` (flip + mild scale jitter; `--scale-range 1 1`: flip only, the
scenes at the test scenes' scale), evaluate mean IoU on scenes made from
the Fashion-MNIST *test* split, convert it to a float32
TFLite model (`kerascnn.export.to_tflite`, batch 1) and run that on the same test scenes: the
largest absolute difference of the softmax outputs and the mean IoU of the TFLite predictions
(`kerascnn.training.mean_iou`) say whether the export is faithful.

Usage:
    PYTHONPATH=. python benchmarks/segmentation.py            # writes docs/segmentation.md
    PYTHONPATH=. python benchmarks/segmentation.py --quick    # a smoke run, prints only
    PYTHONPATH=. python benchmarks/segmentation.py --pretrain-epochs 6 \
        --doc docs/segmentation_pretrained.md                 # backbones from a classifier
    PYTHONPATH=. python benchmarks/segmentation.py --out-dir runs/seg ... --from-checkpoint \
        --flip-average         # evaluate what a run with these options left, also flip-averaged
    PYTHONPATH=. python benchmarks/segmentation.py --out-dir runs/seg2 ... --init-from runs/seg \
        --epochs 4 --learning-rate 1e-3   # a warm restart: 4 more epochs from runs/seg's models
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "segmentation.md"
MODELS = ("unet_mobilenet_v2", "deeplabv3_plus_mobilenet_v2")
TARGET_MIOU = 0.7
# DeepLabv3+ with the paper's atrous *separable* convolutions in ASPP (Chen et al., 2018, sec. 3.2).
# Dense 3x3 convolutions with rates 6/12/18 on the 4x4 map of a 64x64 input trained about 6x
# slower here (6 vs 37 images/s): TensorFlow runs dilated convolutions through SpaceToBatch,
# which pads the tiny map up to the rate.
# U-Net with a narrower decoder than its default (256, 128, 64, 32, 16): at 64x64 the default
# decoder takes about two thirds of the training time, and the scenes need less.
MODEL_KWARGS = {"deeplabv3_plus_mobilenet_v2": {"separable": True},
                "unet_mobilenet_v2": {"decoder_filters": (96, 64, 48, 32, 16)}}


def _load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def one_item_scenes(split, count, *, image_size, scale_range, seed, background="texture"):
    """`count` scenes of one Fashion-MNIST item each and that item's class: (images uint8
    (count, S, S, 1), labels int64 (count,)). The pretraining data of `--pretrain-on scenes`."""
    from kerascnn.data import generate_fashion_mnist_scenes

    images, _, placed = generate_fashion_mnist_scenes(
        split, count, image_size=image_size, items_per_scene=1, scale_range=scale_range,
        background=background, seed=seed, return_placements=True)
    return images, placed["label"][:, 0].astype("int64")


def classifier_cache(args, run_dir=None):
    """The folder under `run_dir` (default `args.out_dir`) that keeps the classifier of these
    settings (None without one); meta.json in it marks a complete one."""
    run_dir = run_dir or args.out_dir
    if not run_dir:
        return None
    # Everything that changes the classifier is in the name, so that no run takes another's.
    domain = ("items" if args.pretrain_on == "items" else
              f"scenes{args.image_size}_{args.item_scale[0]}-{args.item_scale[1]}")
    return Path(run_dir) / (f"classifier_{domain}_e{args.pretrain_epochs}"
                                 f"_a{args.alpha}_s{args.seed}{'_quick' if args.quick else ''}")


def pretrain_classifier(args):
    """The stand-in for ImageNet weights: a MobileNetV2 classifier (width `args.alpha`, output
    stride 32) trained with the main job's recipe for `args.pretrain_epochs` epochs; returns
    (model, test accuracy, seconds).

    `args.pretrain_on` says on what:
    - "items": the Fashion-MNIST train split as it is, at 32x32 (items alone, centred, on black);
      accuracy on the test split.
    - "scenes": 60,000 one-item scenes at the benchmark's scene size, item scale and textured
      background, one per train-split item, labelled with the item's class; accuracy on 10,000
      one-item scenes made from the test split. This is the scenes' own domain: a classifier of
      items alone recognises almost nothing in a scene (see docs/segmentation_ceiling.md).

    The scenes' test items come from the test split, which neither classifier sees. With
    `args.out_dir` the classifier is kept there and reused by a later run with the same settings.
    """
    import keras

    import kerascnn
    from kerascnn.data import from_arrays, load, load_fashion_mnist, pipeline_for, to_model_input
    from kerascnn.training import get_recipe, save_atomically, train

    size = 32 if args.pretrain_on == "items" else args.image_size
    shape = (size, size, 3)
    cache = classifier_cache(args)
    if cache is not None and (cache / "meta.json").exists():
        meta = json.loads((cache / "meta.json").read_text())
        model = keras.saving.load_model(cache / "model.keras")
        return model, meta["accuracy"], meta["seconds"]

    keras.utils.set_random_seed(args.seed)
    model = kerascnn.build("mobilenet_v2", input_shape=shape, classes=10, alpha=args.alpha)
    recipe = get_recipe("mobilenet_fashion_mnist", epochs=args.pretrain_epochs)
    if args.pretrain_on == "items":
        source = load("fashion_mnist", "train")
        test_images, test_labels = load_fashion_mnist("test")
    else:
        count = 2_000 if args.quick else 60_000
        scenes = dict(image_size=size, scale_range=tuple(args.item_scale))
        source = from_arrays(*one_item_scenes("train", count, seed=args.seed + 2, **scenes))
        test_images, test_labels = one_item_scenes("test", count // 6, seed=args.seed + 3,
                                                   **scenes)
    train_data = pipeline_for(model, source, training=True, augment=recipe.augment,
                              batch_size=recipe.batch_size, seed=args.seed)
    start = time.perf_counter()
    train(model, train_data, None, recipe, verbose=2 if args.verbose else 0)
    seconds = time.perf_counter() - start
    inputs = to_model_input(test_images, shape, kerascnn.model_info("mobilenet_v2").preprocessing)
    predicted = model.predict(inputs, batch_size=256, verbose=0).argmax(-1)
    accuracy = float((predicted == test_labels).mean())
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        save_atomically(model, cache / "model.keras")
        partial = cache / "meta.json.tmp"  # meta.json, written last, marks a complete cache
        partial.write_text(json.dumps({"accuracy": accuracy, "seconds": seconds}))
        os.replace(partial, cache / "meta.json")
    return model, accuracy, seconds


def model_kwargs(name, args) -> dict:
    """The builder arguments of model `name` under the command line's options."""
    kwargs = dict(MODEL_KWARGS.get(name, {}))
    if args.upsampling is not None:
        kwargs["upsampling"] = args.upsampling
    if args.decoder_filters is not None and name.startswith("unet"):
        kwargs["decoder_filters"] = tuple(args.decoder_filters)
    if args.separable_decoder and name.startswith("unet"):
        kwargs["separable"] = True
    if args.atrous_rates is not None and name.startswith("deeplab"):
        kwargs["atrous_rates"] = tuple(args.atrous_rates)
    if args.output_stride is not None and name.startswith("deeplab"):
        kwargs["output_stride"] = args.output_stride
    return kwargs


def run_model(name, args, train_data, test_inputs, test_masks, num_classes, classifier=None,
              command=None):
    """Trains, evaluates and exports one model; returns a row of results. `command` (the
    command line that reproduces the run) goes into the provenance kept with its checkpoints."""
    import keras
    import numpy as np

    import kerascnn
    from kerascnn.data import make_segmentation_pipeline, to_model_input
    from kerascnn.layers import flip_averaged, resized_input
    from kerascnn.models.segmentation import transfer_backbone
    from kerascnn.training import error_breakdown, get_recipe, iou_per_class, train

    keras.utils.set_random_seed(args.seed)
    shape = (args.image_size, args.image_size, 3)
    size = args.model_size or args.image_size
    kwargs = model_kwargs(name, args)
    core = kerascnn.build(name, input_shape=(size, size, 3), classes=num_classes,
                          alpha=args.alpha, **kwargs)
    # At another --model-size the scenes are resized to it inside the model and the scores back.
    model = core if size == args.image_size else resized_input(core, shape)
    info = kerascnn.model_info(name)
    out = Path(args.out_dir) / name if args.out_dir else None
    resumed = out is not None and (out / "backup").exists()
    init_from = None
    if args.init_from:
        earlier = Path(args.init_from) / name
        init_from = _earlier_run(earlier)
        if not args.from_checkpoint:  # else the continued run's own checkpoint is evaluated
            model = _weights_from(earlier / "last.keras", model, flag="--init-from")
    if args.from_checkpoint:
        copied, train_s = None, None
        model = _weights_from(out / "last.keras", model, flag="--from-checkpoint")
        final = _last_history_row(out / "history.csv")
        final_loss, train_miou = final["loss"], final["mean_iou"]
    else:
        copied = (None if init_from is not None else
                  len(transfer_backbone(classifier, core)) if classifier is not None else 0)
        augment, augmentation = _augmentation(args.scale_range)
        pipeline = make_segmentation_pipeline(
            train_data, input_shape=shape, preprocessing=info.preprocessing, training=True,
            batch_size=args.batch_size, augment=augment,
            scale_range=tuple(args.scale_range), seed=args.seed)
        provenance = {  # what a later --init-from run says about where its weights came from
            "command": None if command is None else f"{command} --out-dir {args.out_dir}",
            "epochs": args.epochs, "learning_rate": args.learning_rate,
            "augmentation": augmentation, "model_size": size, "init_from": init_from}
        # Written once train() has accepted the folder (it refuses one holding a finished run).
        callbacks = [] if out is None else [keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: _write_json_atomically(out / PROVENANCE, provenance))]
        recipe = get_recipe("default", optimizer="adamw", learning_rate=args.learning_rate,
                            weight_decay=1e-4, epochs=args.epochs, batch_size=args.batch_size,
                            warmup_epochs=min(1.0, args.epochs / 10), label_smoothing=0.0,
                            precise_bn_steps=50)
        start = time.perf_counter()
        history = train(model, pipeline, None, recipe, out_dir=out,
                        backup_every_steps=500 if out is not None else None,
                        callbacks=callbacks,
                        verbose=2 if args.verbose else 0)
        train_s = time.perf_counter() - start
        final_loss = float(history.history["loss"][-1])
        train_miou = float(history.history["mean_iou"][-1])

    inputs = to_model_input(test_inputs, shape, info.preprocessing)
    keras_probs = model.predict(inputs, batch_size=64, verbose=0)
    keras_pred = keras_probs.argmax(-1)  # once, for every figure below
    breakdown = error_breakdown(test_masks, keras_pred, num_classes)
    exported = _export_and_compare(model, inputs, keras_probs, test_masks, num_classes)
    flip = None
    if args.flip_average:
        averaged = flip_averaged(model)
        flip_probs = averaged.predict(inputs, batch_size=64, verbose=0)
        flip = {"breakdown": error_breakdown(test_masks, flip_probs.argmax(-1), num_classes),
                **_export_and_compare(averaged, inputs, flip_probs, test_masks, num_classes)}
    return {
        "model": name,
        "kwargs": kwargs,
        "model_size": size,
        "params": int(model.count_params()),
        "copied_layers": copied,
        "init_from": init_from,
        "train_s": train_s,
        "resumed": resumed,
        "from_checkpoint": str(out / "last.keras") if args.from_checkpoint else None,
        # a checkpoint evaluated while its run's backup is still there: the run is not finished
        "unfinished": bool(args.from_checkpoint and resumed),
        "final_loss": final_loss,
        "train_miou": train_miou,
        "keras_miou": breakdown["mean_iou"],
        **exported,
        "iou_per_class": [None if np.isnan(v) else float(v)
                          for v in iou_per_class(test_masks, keras_pred, num_classes)],
        "breakdown": breakdown,
        "flip_average": flip,
    }


def _export_and_compare(model, inputs, keras_probs, test_masks, num_classes) -> dict:
    """Float32 TFLite export of `model` run on `inputs` (batch 1, 2 threads) against its Keras
    scores `keras_probs`: the TFLite mean IoU, largest score difference, argmax agreement, size,
    latency and conversion time."""
    import numpy as np

    from kerascnn.export import TFLiteModel, to_tflite
    from kerascnn.training import mean_iou

    start = time.perf_counter()
    tflite = TFLiteModel(to_tflite(model, "float32"), num_threads=2)
    convert_s = time.perf_counter() - start
    tflite_probs = tflite(inputs)
    tflite_pred = tflite_probs.argmax(-1)
    return {
        "tflite_miou": mean_iou(test_masks, tflite_pred, num_classes),
        "max_abs_diff": float(np.abs(keras_probs - tflite_probs).max()),
        "argmax_agreement": float((keras_probs.argmax(-1) == tflite_pred).mean()),
        "tflite_bytes": len(tflite.content),
        "tflite_ms": tflite.latency_ms(runs=30),
        "convert_s": convert_s,
    }


def _load_checkpoint(path: Path, expected, flag: str):
    """The model saved at `path`, refused unless its weights have the shapes, in order, of those
    of `expected` (the model these command-line settings build); `flag` names the option that
    asked for it in the errors."""
    import keras

    if not path.exists():
        raise FileNotFoundError(f"{flag}: no checkpoint at {path}; train first with the "
                                "same settings and --out-dir")
    model = keras.saving.load_model(path)
    shapes = [tuple(w.shape) for w in model.weights]
    wanted = [tuple(w.shape) for w in expected.weights]
    if shapes != wanted:
        raise ValueError(f"{flag}: {path} holds a model with {model.count_params():,} "
                         f"parameters in {len(shapes)} weights; these settings build one with "
                         f"{expected.count_params():,} in {len(wanted)}. Give the options of "
                         "the run that trained it (--decoder-filters, --alpha, --upsampling ...)")
    return model


def _weights_from(path: Path, model, flag: str):
    """`model` (the one these command-line settings build) holding the weights of the checkpoint
    at `path`. The weights are copied rather than the saved model used, so that options which
    change no weight take effect: `--init-from ... --output-stride 8` fine-tunes a checkpoint
    trained at stride 16 (the DeepLabv3 paper's recipe), `--from-checkpoint --model-size 80` scores
    a model trained at 64x64 on the scenes resized to 80x80."""
    model.set_weights(_load_checkpoint(path, expected=model, flag=flag).get_weights())
    return model


PROVENANCE = "provenance.json"  # in each model's folder of --out-dir, written as training starts


def _augmentation(scale_range) -> tuple[tuple[str, ...], str]:
    """The training pipeline's augmentations for `--scale-range` and the doc's words for them:
    flip only when the range is 1-1 (the scenes at the test scenes' scale)."""
    low, high = scale_range
    if low == high == 1:
        return ("flip",), "flip only"
    return ("flip", "random_scale"), f"flip + random scale {low}-{high}"


def _write_json_atomically(path: Path, data) -> None:
    """`data` as JSON at `path`, written to a temporary file first and moved into place, so that
    a run killed while writing leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)


def _earlier_run(run: Path) -> dict:
    """Where the checkpoint in `run` (one model's folder of an earlier run's --out-dir) came
    from: its path and that run's epochs and peak learning rate, and, where the run kept its
    provenance (runs of this benchmark since it writes one), its command, augmentation, model
    size and its own `init_from` (None: it started from the classifier or from scratch), so a
    chain of warm restarts can be followed back to its start."""
    provenance = run / PROVENANCE
    if not provenance.exists():
        return {"path": str(run / "last.keras"), **_earlier_schedule(run)}
    kept = json.loads(provenance.read_text())
    return {"path": str(run / "last.keras"),
            **{key: kept.get(key) for key in ("epochs", "learning_rate", "augmentation",
                                              "model_size", "command", "init_from")}}


def _earlier_schedule(run: Path) -> dict:
    """The epochs and peak learning rate of the training that left its checkpoint in `run` (one
    model's folder of an earlier run's --out-dir), from the results.json that `train` writes;
    None for each where that file is missing."""
    path = run / "results.json"
    recipe = json.loads(path.read_text()).get("recipe", {}) if path.exists() else {}
    return {"epochs": recipe.get("epochs"), "learning_rate": recipe.get("learning_rate")}


def _last_history_row(path: Path) -> dict:
    """The final epoch's training loss and mean IoU from the `history.csv` that `train` writes."""
    import csv

    if not path.exists():
        raise FileNotFoundError(f"--from-checkpoint needs the training history {path}; it is "
                                "written by a complete run with the same --out-dir")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no epochs")
    return {"loss": float(rows[-1]["loss"]), "mean_iou": float(rows[-1]["mean_iou"])}


def _epochs(n, more: bool = False) -> str:
    return f"{n} {'more ' if more else ''}epoch{'' if n == 1 else 's'}"


def _chain(init_from) -> list[dict]:
    """The earlier runs behind a model started with `--init-from`, the latest first, as far as
    their provenance goes back."""
    runs = []
    while isinstance(init_from, dict):
        runs.append(init_from)
        init_from = init_from.get("init_from")
    return runs


def _continued(rows) -> str:
    """The doc's words for models that `--init-from` started from an earlier run's checkpoint
    (empty when none did): which checkpoint, that run's schedule and, where runs kept their
    provenance, the runs before it back to the first."""
    earlier = [r for r in rows if r.get("init_from")]
    if not earlier:
        return ""
    parts, longest = [], 1
    for r in earlier:
        runs = _chain(r["init_from"])
        longest = max(longest, len(runs))
        words = []
        for e in runs:
            details = [] if e.get("epochs") is None else [
                f"{_epochs(e['epochs'])} at peak lr {e['learning_rate']}"]
            if e.get("augmentation"):
                details.append(e["augmentation"])
            if e.get("model_size"):
                details.append(f"at {e['model_size']}x{e['model_size']}")
            words.append(f"`{e['path']}`" + (f" ({', '.join(details)})" if details else ""))
        parts.append(f"`{r['model']}` from " + ", which continued from ".join(words))
    return ("continued (a warm restart: a fresh warm-up and cosine schedule) from the final "
            "checkpoint of an earlier run (its weights, in the model this command builds): "
            + "; ".join(parts)
            + ("; in that run, " if longest == 1 else "; in the first of those runs, "))


def _earlier_commands(rows) -> list[str]:
    """The doc's lines listing the commands of the earlier runs behind `--init-from`, first to
    last (empty when no run kept its command)."""
    lines = []
    for r in rows:
        commands = [e["command"] for e in reversed(_chain(r.get("init_from"))) if e.get("command")]
        if commands:
            lines += ["", f"The commands of the earlier runs behind `{r['model']}` that kept "
                      "theirs, first to last (each `--init-from` names the `--out-dir` of the "
                      "one before):", ""]
            lines += [f"    {c}" for c in commands]
    return lines


def write_doc(path, rows, args, command, minutes, load_before, load_after, pretrain=None):
    import keras
    import tensorflow as tf

    from kerascnn.data import SCENE_CLASSES

    continued = _continued(rows)  # empty unless --init-from started the models
    lines = [
        "# Segmentation on offline Fashion-MNIST scenes"
        + ("" if pretrain is None else ", backbones from a classifier"),
        "",
        f"Command: `{command}` ({minutes:.1f} minutes here)."
        + (" It trains nothing: it evaluates the `last.keras` checkpoints that the same command "
           "without `--from-checkpoint` and `--flip-average` left in its `--out-dir`."
           if args.from_checkpoint else ""),
        *_earlier_commands(rows),
        "",
        f"Data: `kerascnn.data.fashion_mnist_scenes` at {args.image_size}x{args.image_size}, "
        f"{args.train_scenes:,} training scenes from the Fashion-MNIST train split and "
        f"{args.test_scenes:,} test scenes from the test split ({args.items_per_scene[0]}-"
        f"{args.items_per_scene[1]} items per scene, item scale {args.item_scale[0]}x-"
        f"{args.item_scale[1]}x, textured background; 11 classes: background + the 10 "
        "Fashion-MNIST classes). "
        "Grayscale scenes are repeated to RGB by the pipeline."
        + ("" if all(r.get("model_size", args.image_size) == args.image_size for r in rows) else
           " A model \"run at\" another size takes the scenes resized to it (bilinear, inside "
           "the model: `kerascnn.layers.resized_input`) and resizes its score maps back to the "
           "scenes' size; its MACs grow with the pixel count."),
        "",
        "Training: `kerascnn.training.train`, " + continued + (
            "from scratch (no pretrained weights)" if pretrain is None else
            f"the backbone initialised from a MobileNetV2 classifier (same width, output stride "
            f"32) trained here for {args.pretrain_epochs} epochs with the main job's recipe on "
            + ("the Fashion-MNIST train split at 32x32" if args.pretrain_on == "items" else
               f"60,000 one-item scenes ({args.image_size}x{args.image_size}, textured background, "
               "one per train-split item, labelled with its class)")
            + (" (its time and accuracy are not on record: `--out-dir` has no cached "
               "classifier" if pretrain["seconds"] is None else
               f" ({pretrain['seconds'] / 60:.1f} min"
               + (", by an earlier run with the same classifier settings and `--out-dir`, whose "
                  "cached classifier this run loaded; that time is not in this run's total"
                  if pretrain.get("cached") and not continued else "")
               + f", {100 * pretrain['accuracy']:.2f} % test accuracy"
               + ("" if args.pretrain_on == "items" else " on one-item scenes of the test split"))
            + "; the stand-in for ImageNet weights, copied with "
            "`kerascnn.models.segmentation.transfer_backbone`)") +
        f", MobileNetV2 backbone width alpha={args.alpha}, AdamW lr {args.learning_rate} with "
        f"warm-up and cosine decay, weight decay 1e-4, batch {args.batch_size}, "
        f"{_epochs(args.epochs, more=bool(continued))}, "
        f"BN momentum 0.9 and precise BN, augmentation {_augmentation(args.scale_range)[1]} "
        "(`make_segmentation_pipeline`).",
        "",
        "Evaluation: mean IoU over the test scenes (`kerascnn.training.mean_iou`, the definition "
        "of `keras.metrics.MeanIoU`). Export: `kerascnn.export.to_tflite(model, \"float32\")` "
        "(batch 1, builtin ops), run with 2 threads; max diff is the largest absolute difference "
        "of the softmax outputs over all test pixels and classes.",
        "",
        "| model | params | train time | mIoU Keras | mIoU TFLite | max abs diff | argmax agreement | "
        "TFLite size | TFLite latency (2 threads) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        extra = "".join(f", {k}={v}" for k, v in r["kwargs"].items())
        if r.get("model_size", args.image_size) != args.image_size:
            extra += f", run at {r['model_size']}x{r['model_size']}"
        if r["train_s"] is None:
            trained = ("checkpoint of an unfinished run" if r.get("unfinished") else
                       "earlier run (checkpoint)")
        else:
            trained = (f"{r['train_s'] / 60:.1f} min"
                       f"{' (resumed; this process only)' if r.get('resumed') else ''}")
        lines.append(
            f"| `{r['model']}`{extra} | {r['params']:,} | {trained} | "
            f"**{r['keras_miou']:.3f}** | {r['tflite_miou']:.3f} | {r['max_abs_diff']:.1e} | "
            f"{100 * r['argmax_agreement']:.3f} % | {r['tflite_bytes'] / 2**20:.2f} MiB | "
            f"{r['tflite_ms']:.2f} ms |")
    flipped = [r for r in rows if r.get("flip_average")]
    if flipped:
        lines += ["", "The same models flip-averaged (`kerascnn.layers.flip_averaged`: the mean "
                  "of the class scores of the scene and of its mirror image, mirrored back; one "
                  "model, two passes per scene; TFLite: batch 1 in, both passes inside):", "",
                  "| model | mIoU Keras | mIoU TFLite | max abs diff | argmax agreement | "
                  "TFLite latency (2 threads) | foreground IoU | regions named right |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in flipped:
            f, b = r["flip_average"], r["flip_average"]["breakdown"]
            lines.append(f"| `{r['model']}` | **{b['mean_iou']:.3f}** | {f['tflite_miou']:.3f} | "
                         f"{f['max_abs_diff']:.1e} | {100 * f['argmax_agreement']:.3f} % | "
                         f"{f['tflite_ms']:.2f} ms | {b['foreground_iou']:.3f} | "
                         f"{100 * b['region_accuracy']:.1f} % |")
    met = [r["model"] for r in rows if r["keras_miou"] >= TARGET_MIOU]
    met_flip = [r["model"] for r in flipped
                if r["flip_average"]["breakdown"]["mean_iou"] >= TARGET_MIOU]
    lines += ["", f"Target (issue 5): mean IoU >= {TARGET_MIOU} on the test scenes, trained on "
              "this CPU. Met by: "
              f"{', '.join(f'`{m}`' for m in met) if met else 'none in this run'}"
              + (" (one pass); flip-averaged, by: "
                 f"{', '.join(f'`{m}`' for m in met_flip) if met_flip else 'none'}"
                 if flipped else "") + "."]
    lines += ["", "Where the score is lost (Keras model, `kerascnn.training.error_breakdown`): "
              "finding the items (foreground IoU: any item class against background) or naming "
              "them (class accuracy on the pixels that are item in both the truth and the "
              "prediction; an item region, the pixels of one class in one scene, named by the "
              "majority of its predicted item pixels; the mean IoU this model would score if it "
              "named every item pixel it found right).", "",
              "| model | foreground IoU | class accuracy (pixels) | regions named right | "
              "mIoU with true names |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        b = r["breakdown"]
        lines.append(f"| `{r['model']}` | {b['foreground_iou']:.3f} | "
                     f"{100 * b['class_accuracy']:.1f} % | {100 * b['region_accuracy']:.1f} % "
                     f"of {b['regions']:,} | {b['mean_iou_true_classes']:.3f} |")
    lines += ["", "IoU per class on the test scenes (Keras model):", "",
              "| class | " + " | ".join(f"`{r['model']}`" for r in rows) + " |",
              "| --- | " + " | ".join("---:" for _ in rows) + " |"]
    for k, name in enumerate(SCENE_CLASSES):
        cells = ["n/a" if r["iou_per_class"][k] is None else f"{r['iou_per_class'][k]:.3f}" for r in rows]
        lines.append(f"| {k} {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other users, Python "
        f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}. "
        f"Load average (1, 5, 15 min) before {load_before}, after {load_after}; train times "
        "depend on that load.",
        "",
        "The same benchmark with and without a classifier-pretrained backbone: "
        "[segmentation.md](segmentation.md) (from scratch) and "
        "[segmentation_pretrained.md](segmentation_pretrained.md) (`--pretrain-epochs`).",
        "",
        "More scenes, more epochs, a wider or a classifier-pretrained backbone, screened on a lent",
        "GPU and on this CPU, and the long runs epoch by epoch: [recipe_search.md](recipe_search.md).",
        "",
    ]
    Path(path).write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--train-scenes", type=int, default=4000)
    parser.add_argument("--test-scenes", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--scale-range", type=float, nargs=2, default=(0.75, 1.25),
                        help="scale jitter of the training pipeline")
    parser.add_argument("--items-per-scene", type=int, nargs=2, default=(1, 3))
    parser.add_argument("--item-scale", type=float, nargs=2, default=(1.0, 1.5),
                        help="scale range of the items pasted into the scenes")
    parser.add_argument("--pretrain-epochs", type=int, default=0,
                        help="first train a MobileNetV2 classifier for this many epochs and start "
                             "every backbone from it (0: from scratch)")
    parser.add_argument("--pretrain-on", choices=("items", "scenes"), default="items",
                        help="what the classifier learns from: Fashion-MNIST items alone at 32x32, "
                             "or one-item scenes like the benchmark's (textured background)")
    parser.add_argument("--upsampling", choices=("nearest", "bilinear"),
                        help="every decoder's and the output's upsampling (default: the models' "
                             "own, nearest, which quantizes well)")
    parser.add_argument("--decoder-filters", type=int, nargs=5,
                        help="the U-Net's five decoder widths, stride 16 to full resolution "
                             f"(default {MODEL_KWARGS['unet_mobilenet_v2']['decoder_filters']}); "
                             "other models ignore it")
    parser.add_argument("--separable-decoder", action="store_true",
                        help="depthwise-separable 3x3 convolutions in the U-Net's decoder (about "
                             "a fifth less time per training step here); other models ignore it")
    parser.add_argument("--atrous-rates", type=int, nargs="+",
                        help="the DeepLab models' ASPP rates (default: the paper's 6 12 18, which "
                             "on the 4x4 map of a 64x64 scene at output stride 16 see only their "
                             "centre tap); other models ignore it")
    parser.add_argument("--output-stride", type=int, choices=(8, 16),
                        help="the DeepLab models' output stride (default 16: the ASPP reads a 4x4 "
                             "map of a 64x64 scene; 8: an 8x8 map, the last stages dilated); "
                             "other models ignore it")
    parser.add_argument("--model-size", type=int, metavar="N",
                        help="build the models at NxN input and resize the scenes to it inside "
                             "the model, and the scores back (kerascnn.layers.resized_input); "
                             "default: the scenes' --image-size")
    parser.add_argument("--out-dir",
                        help="keep the classifier and each model's checkpoints and backups here; "
                             "a run killed part-way resumes from its last backup (every 500 steps); "
                             "a model that finished training here is not trained over (use "
                             "--from-checkpoint, --init-from or another folder)")
    parser.add_argument("--from-checkpoint", action="store_true",
                        help="do not train: evaluate and export each model's last.keras in "
                             "--out-dir, left there by an earlier run, in the model these options "
                             "build (options that change no weight, such as --model-size, may "
                             "differ)")
    parser.add_argument("--init-from", metavar="DIR",
                        help="start each model from the weights of the last.keras that an "
                             "earlier run left in DIR (its --out-dir), which must fit the model "
                             "these options build (options that change no weight, such as "
                             "--output-stride, may differ), instead of the "
                             "classifier's backbone, and train --epochs more epochs on a fresh "
                             "warm-up and cosine schedule (a warm restart); DIR's checkpoints are "
                             "only read")
    parser.add_argument("--flip-average", action="store_true",
                        help="also evaluate and export each model flip-averaged "
                             "(`kerascnn.layers.flip_averaged`: the mean of the scores of the "
                             "scene and of its mirror image, two passes per scene)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run; writes no doc")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--doc", default=str(DOC), help="where to write the Markdown table")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.pretrain_epochs < 0:
        parser.error(f"--pretrain-epochs must be >= 0. Received: {args.pretrain_epochs}")
    if args.model_size is not None and args.model_size < 1:
        parser.error(f"--model-size must be a positive number of pixels. Received: "
                     f"{args.model_size}")
    if args.from_checkpoint and not args.out_dir:
        parser.error("--from-checkpoint needs --out-dir, the folder of the run that trained the "
                     "models")
    if args.init_from and args.out_dir and (
            Path(args.init_from).resolve() == Path(args.out_dir).resolve()):
        parser.error("--init-from and --out-dir name the same folder; the new run would write "
                     f"over the checkpoints it starts from. Received: {args.init_from}")
    if args.init_from and not Path(args.init_from).is_dir():
        parser.error(f"--init-from: no such folder: {args.init_from}")
    if args.quick:
        args.train_scenes, args.test_scenes, args.epochs = 256, 64, 1
        args.pretrain_epochs = min(args.pretrain_epochs, 1)

    import kerascnn
    from kerascnn.data import SCENE_CLASSES, fashion_mnist_scenes, generate_fashion_mnist_scenes

    missing = [m for m in args.models if m not in kerascnn.list_models(task="segmentation")]
    if missing:
        sys.exit(f"Not in the registry: {missing}; segmentation models there: "
                 f"{kerascnn.list_models(task='segmentation')}")
    # The command that reproduces the numbers: without the flags that only choose output files.
    given, shown = list(argv if argv is not None else sys.argv[1:]), []
    while given:
        flag = given.pop(0)
        if flag in ("--json", "--doc", "--out-dir"):
            given = given[1:]
        elif flag != "--verbose":
            shown.append(flag)
    command = " ".join(["PYTHONPATH=. python benchmarks/segmentation.py", *shown])
    load_before = _load_average()
    start = time.perf_counter()
    scenes = dict(image_size=args.image_size, items_per_scene=tuple(args.items_per_scene),
                  scale_range=tuple(args.item_scale))
    train_data = fashion_mnist_scenes("train", args.train_scenes, seed=args.seed, **scenes)
    test_inputs, test_masks = generate_fashion_mnist_scenes("test", args.test_scenes,
                                                            seed=args.seed + 1, **scenes)
    classifier, pretrain = None, None
    if args.pretrain_epochs and (args.from_checkpoint or args.init_from):
        # No classifier to train; the doc still says which one the backbones started from.
        metas = [classifier_cache(args, run) / "meta.json"
                 for run in (args.out_dir, args.init_from) if run]
        meta = next((m for m in metas if m.exists()), None)
        pretrain = ({**json.loads(meta.read_text()), "cached": True} if meta else
                    {"accuracy": None, "seconds": None, "cached": True})
    elif args.pretrain_epochs:
        cache = classifier_cache(args)
        cached = cache is not None and (cache / "meta.json").exists()
        classifier, accuracy, seconds = pretrain_classifier(args)
        pretrain = {"accuracy": accuracy, "seconds": seconds, "cached": cached}
        print(json.dumps({"pretrained_classifier": pretrain}), flush=True)
    rows = []
    for name in args.models:
        row = run_model(name, args, train_data, test_inputs, test_masks, len(SCENE_CLASSES),
                        classifier, command=command)
        print(json.dumps({k: v for k, v in row.items() if k != "iou_per_class"}), flush=True)
        rows.append(row)
    minutes = (time.perf_counter() - start) / 60
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if not args.quick:
        write_doc(args.doc, rows, args, command, minutes, load_before, _load_average(), pretrain)
        print(f"wrote {args.doc}")


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
