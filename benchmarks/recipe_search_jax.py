"""Recipe search on a lent GPU: Keras on JAX, NumPy-fed data, many variants at once.

The accuracy targets of the CPU benchmarks (MobileNetV2 on Fashion-MNIST, the segmentation
scenes) depend on the recipe and the number of steps, not on the hardware. A CPU run of one
recipe takes 10-20 minutes here; on a GPU the same recipe takes about a minute and several run
side by side. This script runs named variants of the two tasks there and reports, per variant,
the test accuracy (or mean IoU) after every epoch, so that the CPU budget goes to the variants
that work. Only the CPU benchmarks' numbers are claims; these runs choose what to measure.

What matches the CPU path: the models (`kerascnn.build`), the optimizer, schedule and weight
decay (`kerascnn.training.train._optimizer`), BN momentum, precise BN at the end, the input
arithmetic (`kerascnn.data.to_model_input`: bilinear resize, gray repeated to RGB, the model's
scale/offset) and the scene generator (`kerascnn.data.scenes`). What differs: augmentation is done
here in NumPy (same definitions, other random numbers), segmentation's random scale uses nearest
neighbour for the image too, and the backend is JAX (no fused-BN patch; same arithmetic).

Usage (the GPU machine has JAX but no TensorFlow; carry the keras wheel and the IDX files):

    KERAS_BACKEND=jax python benchmarks/recipe_search_jax.py classify --variants all \\
        --data-dir DIR --parallel 8 --out results.jsonl

`--list` prints the variants. Each variant runs in its own process; results are appended to
`--out` as JSON lines as they finish, and variants not started before `--deadline` seconds are
skipped (so that a run ends inside a time limit with what it has).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One training run. Fields not used by a task are ignored."""
    model: str = "mobilenet_v2"
    alpha: float = 0.5
    output_stride: int | None = 16
    input_size: int = 32
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    weight_decay: float = 5e-5
    warmup_epochs: float = 0.3
    label_smoothing: float = 0.0
    augment: tuple = ("flip",)
    erase_p: float = 0.5          # random erasing probability (when "erase" is in augment)
    dropout_rate: float | None = None
    mixup_alpha: float = 0.0
    model_kwargs: tuple = ()      # extra (name, value) pairs for kerascnn.build
    train_items: int | None = None  # segmentation: training scenes
    pretrain_epochs: int = 0      # segmentation: first train the backbone as an FMNIST classifier
    pretrain_on: str = "items"    # ... on the items alone at 32x32, or on one-item "scenes"
    pretrain_scenes: int = 60_000  # how many one-item scenes ("scenes": one per train item)
    seed: int = 0


# Classification: MobileNetV2 on Fashion-MNIST, the demo's recipe ("base") and levers that keep
# the CPU step cost (regularisation, schedule) or change it in known ratios (alpha, stride, epochs).
_C = Variant()
CLASSIFY = {
    "base": _C,
    "erase": dataclasses.replace(_C, augment=("flip", "erase")),
    "erase_e14": dataclasses.replace(_C, augment=("flip", "erase"), epochs=14),
    "erase_ls": dataclasses.replace(_C, augment=("flip", "erase"), label_smoothing=0.1),
    "erase_wd2": dataclasses.replace(_C, augment=("flip", "erase"), weight_decay=2e-4),
    "erase_wd2_e14": dataclasses.replace(_C, augment=("flip", "erase"), weight_decay=2e-4,
                                         epochs=14),
    "wd2": dataclasses.replace(_C, weight_decay=2e-4),
    "wd4": dataclasses.replace(_C, weight_decay=4e-4),
    "ls": dataclasses.replace(_C, label_smoothing=0.1),
    "crop_erase": dataclasses.replace(_C, augment=("flip", "crop", "erase")),
    "mixup": dataclasses.replace(_C, mixup_alpha=0.2),
    "lr05": dataclasses.replace(_C, learning_rate=0.05),
    "lr2": dataclasses.replace(_C, learning_rate=0.2),
    "drop5": dataclasses.replace(_C, dropout_rate=0.5, augment=("flip", "erase")),
    "a075_erase": dataclasses.replace(_C, alpha=0.75, augment=("flip", "erase")),
    "os8_a035_erase": dataclasses.replace(_C, alpha=0.35, output_stride=8,
                                          augment=("flip", "erase")),
    "e14": dataclasses.replace(_C, epochs=14),
    "bs64_erase": dataclasses.replace(_C, batch_size=64, learning_rate=0.05,
                                      augment=("flip", "erase")),
    # Width and resolution (MACs relative to base's 3.5 M: kerascnn.analysis.model_stats).
    "a1_os32": dataclasses.replace(_C, alpha=1.0, output_stride=None),            # 1.7x
    "a1_os16": dataclasses.replace(_C, alpha=1.0),                                # 3.1x
    "a035_in64_os32": dataclasses.replace(_C, alpha=0.35, input_size=64,         # 1.4x
                                          output_stride=None),
    "a035_in48_os16": dataclasses.replace(_C, alpha=0.35, input_size=48),         # 1.3x
    "a05_in48_os32": dataclasses.replace(_C, alpha=0.5, input_size=48,           # 1.5x
                                         output_stride=None),
    "a05_in40_os16": dataclasses.replace(_C, alpha=0.5, input_size=40),           # 2.1x
    "a035_os8": dataclasses.replace(_C, alpha=0.35, output_stride=8),             # 1.9x
    "a05_os8": dataclasses.replace(_C, output_stride=8),                          # 3.2x
    "a05_in64_os32": dataclasses.replace(_C, input_size=64, output_stride=None),  # 2.2x
    "a035_in64_os16": dataclasses.replace(_C, alpha=0.35, input_size=64),         # 2.4x
    "a05_in48_os16": dataclasses.replace(_C, input_size=48),                      # 2.3x
    "smoke": dataclasses.replace(_C, alpha=0.35, epochs=1),  # checks the script
}

# Segmentation: the docs/segmentation.md setup ("*_base") and more scenes / epochs.
_S = Variant(model="unet_mobilenet_v2", alpha=0.35, output_stride=None, input_size=64,
             epochs=10, batch_size=32, optimizer="adamw", learning_rate=5e-3, weight_decay=1e-4,
             warmup_epochs=1.0, augment=("flip", "random_scale"), train_items=4000,
             model_kwargs=(("decoder_filters", (96, 64, 48, 32, 16)),))
_D = dataclasses.replace(_S, model="deeplabv3_plus_mobilenet_v2", model_kwargs=(("separable", True),))
SEGMENT = {}
for _prefix, _v in (("unet", _S), ("dlv3p", _D)):
    SEGMENT[f"{_prefix}_base"] = _v
    SEGMENT[f"{_prefix}_16k"] = dataclasses.replace(_v, train_items=16000)
    SEGMENT[f"{_prefix}_16k_e20"] = dataclasses.replace(_v, train_items=16000, epochs=20)
    SEGMENT[f"{_prefix}_40k"] = dataclasses.replace(_v, train_items=40000)
    SEGMENT[f"{_prefix}_40k_e20"] = dataclasses.replace(_v, train_items=40000, epochs=20)
    SEGMENT[f"{_prefix}_4k_e40"] = dataclasses.replace(_v, epochs=40)
    SEGMENT[f"{_prefix}_16k_a05"] = dataclasses.replace(_v, train_items=16000, alpha=0.5)
    SEGMENT[f"{_prefix}_16k_lr2"] = dataclasses.replace(_v, train_items=16000, learning_rate=2e-3)
for _prefix, _v in (("unet", _S), ("dlv3p", _D)):
    SEGMENT[f"{_prefix}_4k_pre3"] = dataclasses.replace(_v, pretrain_epochs=3)
    SEGMENT[f"{_prefix}_16k_pre3"] = dataclasses.replace(_v, train_items=16000, pretrain_epochs=3)
SEGMENT["unet_4k_e20_pre3"] = dataclasses.replace(_S, epochs=20, pretrain_epochs=3)
SEGMENT["unet_16k_e20_pre3"] = dataclasses.replace(_S, train_items=16000, epochs=20,
                                                   pretrain_epochs=3)
# Backbones from a classifier of one-item scenes (textured background, the scenes' size and item
# scale): the items-alone classifier recognises almost nothing there (docs/segmentation_ceiling.md).
for _prefix, _v in (("unet", _S), ("dlv3p", _D)):
    _p = dataclasses.replace(_v, pretrain_epochs=3, pretrain_on="scenes")
    SEGMENT[f"{_prefix}_4k_scn3"] = _p
    SEGMENT[f"{_prefix}_16k_scn3"] = dataclasses.replace(_p, train_items=16000)
    SEGMENT[f"{_prefix}_16k_e20_scn3"] = dataclasses.replace(_p, train_items=16000, epochs=20)
    SEGMENT[f"{_prefix}_40k_e20_scn3"] = dataclasses.replace(_p, train_items=40000, epochs=20)
    SEGMENT[f"{_prefix}_16k_e20_scn10"] = dataclasses.replace(_p, train_items=16000, epochs=20,
                                                              pretrain_epochs=10)
    SEGMENT[f"{_prefix}_40k_e20_scn10"] = dataclasses.replace(_p, train_items=40000, epochs=20,
                                                              pretrain_epochs=10)
# DeepLabv3+ finds the items worse than the U-Net, partly from its nearest x4 output upsampling
# (docs/recipe_search.md: bilinear on the same weights, 0.532 -> 0.562).
SEGMENT["dlv3p_40k_e20_scn10_bilinear"] = dataclasses.replace(
    SEGMENT["dlv3p_40k_e20_scn10"], model_kwargs=_D.model_kwargs + (("upsampling", "bilinear"),))
# The U-Net's low-resolution decoder blocks do part of the naming: widened, +0.034 at 375 CPU
# steps (docs/recipe_search.md). And 50,000 steps, where the curve says 0.7 might be.
SEGMENT["unet_40k_e20_scn10_wide"] = dataclasses.replace(
    SEGMENT["unet_40k_e20_scn10"], model_kwargs=(("decoder_filters", (192, 128, 48, 32, 16)),))
SEGMENT["unet_40k_e40_scn10_wide"] = dataclasses.replace(SEGMENT["unet_40k_e20_scn10_wide"],
                                                         epochs=40)
SEGMENT["dlv3p_40k_e40_scn10_bilinear"] = dataclasses.replace(
    SEGMENT["dlv3p_40k_e20_scn10_bilinear"], epochs=40)
SEGMENT["smoke"] = dataclasses.replace(_S, train_items=256, epochs=1, pretrain_epochs=1)  # checks the script
SEGMENT["smoke_scn"] = dataclasses.replace(SEGMENT["smoke"], pretrain_on="scenes",
                                           pretrain_scenes=512)
SCENES = dict(image_size=64, items_per_scene=(1, 3), scale_range=(1.0, 1.5))
TASKS = {"classify": CLASSIFY, "segment": SEGMENT}


# --- NumPy input arithmetic ----------------------------------------------------------------------

def random_erase(x, rng, p, fill_range):
    """Random erasing (Zhong et al., 2017): a rectangle of 2-40 % of the area, aspect 0.3-3.3,
    filled with uniform noise in `fill_range`, on each image with probability `p`."""
    n, h, w, c = x.shape
    for k in range(n):
        if rng.random() >= p:
            continue
        for _ in range(10):
            area = rng.uniform(0.02, 0.4) * h * w
            ratio = rng.uniform(0.3, 1 / 0.3)
            eh, ew = int(round((area * ratio) ** 0.5)), int(round((area / ratio) ** 0.5))
            if 0 < eh < h and 0 < ew < w:
                top, left = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
                x[k, top:top + eh, left:left + ew] = rng.uniform(*fill_range, (eh, ew, c))
                break
    return x


def pad_crop(x, rng, pad, fill):
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    out = np.empty_like(x)
    for k in range(n):
        top, left = rng.integers(0, 2 * pad + 1, 2)
        out[k] = padded[k, top:top + h, left:left + w]
    return out


def random_scale_nearest(x, mask, rng, scale_range, fill):
    """DeepLab's scale jitter with nearest-neighbour sampling of image and mask alike."""
    n, h, w, _ = x.shape
    out, out_mask = np.full_like(x, fill), np.zeros_like(mask)
    for k in range(n):
        s = rng.uniform(*scale_range)
        sh, sw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        rows = np.minimum((np.arange(sh) / s).astype(int), h - 1)
        cols = np.minimum((np.arange(sw) / s).astype(int), w - 1)
        img, msk = x[k][rows][:, cols], mask[k][rows][:, cols]
        if s >= 1:
            top, left = rng.integers(0, sh - h + 1), rng.integers(0, sw - w + 1)
            out[k], out_mask[k] = img[top:top + h, left:left + w], msk[top:top + h, left:left + w]
        else:
            top, left = rng.integers(0, h - sh + 1), rng.integers(0, w - sw + 1)
            out[k, top:top + sh, left:left + sw] = img
            out_mask[k, top:top + sh, left:left + sw] = msk
    return out, out_mask


# --- one run -----------------------------------------------------------------------------------

def _batches(keras, x, y, variant, seed, segmentation, fill):
    """A PyDataset of augmented training batches; reshuffled every epoch."""

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self):
            return len(x) // variant.batch_size

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(x))

        def __getitem__(self, i):
            idx = np.sort(self.order[i * variant.batch_size:(i + 1) * variant.batch_size])
            xb, yb = x[idx].copy(), y[idx].copy()
            if "flip" in variant.augment:
                flip = self.rng.random(len(xb)) < 0.5
                xb[flip] = xb[flip, :, ::-1]
                if segmentation:
                    yb[flip] = yb[flip, :, ::-1]
            if "random_scale" in variant.augment:
                xb, yb = random_scale_nearest(xb, yb, self.rng, (0.75, 1.25), fill)
            if "crop" in variant.augment:
                xb = pad_crop(xb, self.rng, 4, fill)
            if "erase" in variant.augment:
                xb = random_erase(xb, self.rng, variant.erase_p, (-1.0, 1.0))
            if variant.mixup_alpha:
                lam = self.rng.beta(variant.mixup_alpha, variant.mixup_alpha)
                perm = self.rng.permutation(len(xb))
                onehot = np.eye(10, dtype=np.float32)[yb]
                return lam * xb + (1 - lam) * xb[perm], lam * onehot + (1 - lam) * onehot[perm]
            if not segmentation:
                return xb, np.eye(10, dtype=np.float32)[yb]
            return xb, yb

    return Batches()


class _Take:
    """`dataset.take(n)` for `precise_batchnorm` over a PyDataset."""

    def __init__(self, batches):
        self.batches = batches

    def take(self, n):
        return (self.batches[i] for i in range(min(n, len(self.batches))))


def _compile(keras, model, variant, steps_per_epoch, loss):
    """Compiles `model` with the library's recipe arithmetic for `variant`; returns the recipe."""
    from kerascnn.training import get_recipe, set_bn_momentum
    from kerascnn.training.train import _optimizer

    recipe = get_recipe("default", optimizer=variant.optimizer,
                        learning_rate=variant.learning_rate, weight_decay=variant.weight_decay,
                        epochs=variant.epochs, batch_size=variant.batch_size,
                        warmup_epochs=variant.warmup_epochs,
                        label_smoothing=variant.label_smoothing)
    set_bn_momentum(model, recipe.bn_momentum)
    # Several steps per compiled call: these models are small enough that dispatch, not the GPU,
    # bounds a step otherwise.
    model.compile(optimizer=_optimizer(recipe, steps_per_epoch), loss=loss, jit_compile=True,
                  steps_per_execution=8)
    return recipe


def _note(progress, line):
    """Appends a line to the progress file (so that a run cut off by a time limit still tells
    how far it got)."""
    if progress:
        with open(progress, "a") as f:
            f.write(line + "\n")


def _pretrained_backbone(keras, model, variant, data_dir, fill):
    """Trains `variant.model`'s backbone (mobilenet_v2 of the same width) as a Fashion-MNIST
    classifier for `variant.pretrain_epochs` and copies its weights into `model` with
    `transfer_backbone` (same width, so every backbone layer matches); returns how many were copied.
    The stand-in for ImageNet weights: the scenes are made of the same items. `pretrain_on`
    "items": the train split at 32x32; "scenes": one one-item scene per train item, at the
    scenes' size (benchmarks/segmentation.py --pretrain-on scenes)."""
    import kerascnn
    from kerascnn.data import load_fashion_mnist, to_model_input
    from kerascnn.data.scenes import generate_fashion_mnist_scenes
    from kerascnn.models.segmentation import transfer_backbone

    size = 32 if variant.pretrain_on == "items" else SCENES["image_size"]
    backbone = kerascnn.build("mobilenet_v2", input_shape=(size, size, 3), classes=10,
                              alpha=variant.alpha)
    prep = kerascnn.model_info("mobilenet_v2").preprocessing
    if variant.pretrain_on == "items":
        x, y = load_fashion_mnist("train", data_dir)
    else:
        x, _, placed = generate_fashion_mnist_scenes(
            "train", variant.pretrain_scenes, image_size=size, items_per_scene=1,
            scale_range=SCENES["scale_range"], seed=variant.seed + 2, data_dir=data_dir,
            return_placements=True)
        x, y = x[..., 0], placed["label"][:, 0]
    x = to_model_input(x, (size, size, 3), prep, batch_size=4096)
    plan = dataclasses.replace(CLASSIFY["base"], alpha=variant.alpha, input_size=size,
                               epochs=variant.pretrain_epochs)
    batches = _batches(keras, x, y.astype(np.int32), plan, plan.seed, False, fill)
    _compile(keras, backbone, plan, len(batches), keras.losses.CategoricalCrossentropy())
    backbone.fit(batches, epochs=plan.epochs, verbose=0)
    return len(transfer_backbone(backbone, model))


def run_variant(task: str, name: str, data_dir: str | None, progress: str | None = None) -> dict:
    import keras

    import kerascnn
    from kerascnn.data import load_fashion_mnist, to_model_input
    from kerascnn.training import mean_iou, precise_batchnorm

    variant = TASKS[task][name]
    keras.utils.set_random_seed(variant.seed)
    info = kerascnn.model_info(variant.model)
    prep = info.preprocessing
    fill = float(prep.offset[0])  # the normalised value of a black pixel
    segmentation = task == "segment"
    if segmentation:
        from kerascnn.data.scenes import SCENE_CLASSES, generate_fashion_mnist_scenes

        classes = len(SCENE_CLASSES)
        xtr, ytr = generate_fashion_mnist_scenes("train", variant.train_items, seed=variant.seed,
                                                 data_dir=data_dir, **SCENES)
        xte, yte = generate_fashion_mnist_scenes("test", 1000, seed=variant.seed + 1,
                                                 data_dir=data_dir, **SCENES)
        xtr, xte = xtr[..., 0], xte[..., 0]
    else:
        classes = 10
        xtr, ytr = load_fashion_mnist("train", data_dir)
        xte, yte = load_fashion_mnist("test", data_dir)
    size = variant.input_size
    xtr = to_model_input(xtr, (size, size, 3), prep, batch_size=4096)
    xte = to_model_input(xte, (size, size, 3), prep, batch_size=4096)
    ytr, yte = ytr.astype(np.int32), yte.astype(np.int32)

    kwargs = dict(variant.model_kwargs)
    if variant.output_stride is not None:
        kwargs["output_stride"] = variant.output_stride
    if variant.dropout_rate is not None:
        kwargs["dropout_rate"] = variant.dropout_rate
    model = kerascnn.build(variant.model, input_shape=(size, size, 3), classes=classes,
                           alpha=variant.alpha, **kwargs)
    batches = _batches(keras, xtr, ytr, variant, variant.seed, segmentation, fill)
    if segmentation:
        loss = keras.losses.SparseCategoricalCrossentropy()
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=variant.label_smoothing)
    recipe = _compile(keras, model, variant, len(batches), loss)

    def score():
        probs = model.predict(xte, batch_size=500, verbose=0)
        if segmentation:
            return float(mean_iou(yte, probs, classes))
        return float((probs.argmax(-1) == yte).mean())

    curve, start = [], time.perf_counter()

    class Score(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            curve.append(round(score(), 4))
            _note(progress, f"{name} epoch {epoch + 1} {curve[-1]} "
                            f"{time.perf_counter() - start:.0f}s")

    if variant.pretrain_epochs:
        copied = _pretrained_backbone(keras, model, variant, data_dir, fill)
        _note(progress, f"{name} pretrained {copied} layers {time.perf_counter() - start:.0f}s")
    history = model.fit(batches, epochs=variant.epochs, verbose=0, callbacks=[Score()])
    precise_batchnorm(model, _Take(batches), recipe.precise_bn_steps)
    final = score()
    return {"task": task, "variant": name, "config": dataclasses.asdict(variant),
            "final": round(final, 4), "per_epoch": curve,
            "train_loss": [round(v, 4) for v in history.history["loss"]],
            "seconds": round(time.perf_counter() - start, 1), "steps_per_epoch": len(batches)}


# --- driver ------------------------------------------------------------------------------------

def main(argv=None):
    os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports Keras
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--variants", default="all", help="comma-separated names, or all")
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--parallel", type=int, default=1, help="variants run at once")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds after which no further variant starts")
    parser.add_argument("--out", default="recipe_search.jsonl")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args(argv)
    table = TASKS[args.task]
    if args.list:
        for name, variant in table.items():
            print(name, variant)
        return
    if args.one:
        row = run_variant(args.task, args.one, args.data_dir, args.out + ".progress")
        print("RESULT " + json.dumps(row), flush=True)
        return
    names = list(table) if args.variants == "all" else args.variants.split(",")
    unknown = [n for n in names if n not in table]
    if unknown:
        sys.exit(f"Unknown {args.task} variants {unknown}; known: {sorted(table)}")
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false",
               XLA_PYTHON_CLIENT_MEM_FRACTION=f"{0.9 / max(1, args.parallel):.3f}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start, pending, running = time.perf_counter(), list(names), {}
    with open(args.out, "a") as out:
        while pending or running:
            late = args.deadline is not None and time.perf_counter() - start > args.deadline
            while pending and len(running) < args.parallel and not late:
                name = pending.pop(0)
                cmd = [sys.executable, __file__, args.task, "--one", name, "--out", args.out]
                if args.data_dir:
                    cmd += ["--data-dir", args.data_dir]
                # A file, not a pipe: a child that writes much would block on a full pipe.
                log = open(f"{args.out}.{name}.log", "w")
                running[name] = (subprocess.Popen(cmd, env=env, stdout=log,
                                                  stderr=subprocess.STDOUT), log)
            if late and pending:
                print(f"deadline: skipped {pending}", flush=True)
                pending = []
            for name, (proc, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                text = Path(log.name).read_text()
                del running[name]
                lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not lines:
                    print(f"{name}: failed (exit {proc.returncode})\n{text[-3000:]}", flush=True)
                    continue
                row = json.loads(lines[-1][len("RESULT "):])
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(f"{name}: final {row['final']} per epoch {row['per_epoch']} "
                      f"({row['seconds']} s)", flush=True)
            time.sleep(1)


if __name__ == "__main__":
    main()
