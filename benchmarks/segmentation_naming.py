"""Where trained segmentation models misname items: by how many items share the scene, by how
much of an item later items cover, and what averaging with the mirrored scene gives back.

docs/segmentation_long.md says the models lose their score in naming the items, not in finding
them. This script splits that naming error further, for models that benchmarks/segmentation.py
saved (`--out-dir DIR` keeps DIR/<model>/last.keras):

- the benchmark's own test scenes (same settings and seed), scored as it scores them, and again
  with the class scores averaged over the scene and its left-right mirror (flip test-time
  augmentation: two runs of the model per scene);
- test scenes with exactly 1, 2 and 3 items;
- the items of the benchmark's test scenes grouped by the fraction of their pixels left visible by
  the items pasted over them (the generator's instance masks), each named by the majority of its
  visible pixels' predicted item classes.
- with `--train-scenes N` (the benchmark's own), also up to `--test-scenes` of the N training
  scenes, as the model saw them but without augmentation: a score there far above the test
  scenes' says overfitting, about the same says underfitting.
- with `--draws K`, K more sets of test scenes drawn like the benchmark's (same settings, other
  seeds), each scored in one pass and flip-averaged: how much a figure on the benchmark's 1,000
  scenes owes to which scenes were drawn.

Models that `kerascnn.layers.resized_input` wrapped (the benchmark's `--model-size`) are accepted:
their name is the registered one with a `_from<H>x<W>` suffix.

Usage:
    PYTHONPATH=. python benchmarks/segmentation_naming.py DIR/unet_mobilenet_v2/last.keras \
        DIR/deeplabv3_plus_mobilenet_v2/last.keras \
        --doc docs/segmentation_naming.md
    PYTHONPATH=. python benchmarks/segmentation_naming.py DIR/unet_mobilenet_v2/last.keras \
        --draws 4      # also four more draws of the test scenes: how lucky the benchmark's is
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VISIBLE_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the last bin, [1.0, 1.0], holds the uncovered items
DRAW_SEED = 101  # --draws K uses the seeds --seed + 101 ... --seed + 100 + K


def registered_name(name: str) -> str:
    """The registry name behind a model's name: `kerascnn.layers.resized_input` names its wrapper
    "<model name>_from<H>x<W>"."""
    return re.sub(r"_from\d+x\d+$", "", name)


def named_right_by_visibility(placements, predicted):
    """For every item with a visible pixel: (visible fraction, named right), where an item is named
    right when the most frequent predicted item class (background predictions left out) on its
    visible pixels is its class. Returns two 1-D NumPy arrays."""
    import numpy as np

    instance = placements["instance"]
    fractions, right = [], []
    scenes, slots = np.nonzero(placements["active"] & (placements["visible"] > 0))
    for s, j in zip(scenes, slots):
        votes = predicted[s][instance[s] == j]
        votes = votes[votes > 0]
        named = votes.size and np.bincount(votes).argmax() == placements["label"][s, j] + 1
        fractions.append(placements["visible"][s, j] / placements["area"][s, j])
        right.append(bool(named))
    return np.asarray(fractions, float), np.asarray(right, bool)


def visibility_table(fractions, right, bins=VISIBLE_BINS):
    """Rows (label, items, share named right) for the bins [b0, b1), ..., [b_last-1, 1) and the
    uncovered items (fraction 1)."""
    rows = []
    for low, high in zip(bins[:-1], bins[1:]):
        chosen = (fractions >= low) & (fractions < high)
        rows.append((f"{100 * low:.0f} to under {100 * high:.0f} %", int(chosen.sum()),
                     float(right[chosen].mean()) if chosen.any() else float("nan")))
    whole = fractions >= bins[-1]
    rows.append(("100 % (uncovered)", int(whole.sum()),
                 float(right[whole].mean()) if whole.any() else float("nan")))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_paths", nargs="+", metavar="model_path",
                        help=".keras models saved by benchmarks/segmentation.py")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--test-scenes", type=int, default=1000)
    parser.add_argument("--items-per-scene", type=int, nargs=2, default=(1, 3))
    parser.add_argument("--item-scale", type=float, nargs=2, default=(1.0, 1.5))
    parser.add_argument("--seed", type=int, default=0, help="the benchmark's --seed")
    parser.add_argument("--train-scenes", type=int,
                        help="the benchmark's --train-scenes: also score up to --test-scenes of "
                             "those training scenes (no augmentation)")
    parser.add_argument("--draws", type=int, default=0,
                        help="also score this many more draws of the benchmark's test scenes "
                             "(the same settings, seeds --seed + 101 on), in one pass and "
                             "flip-averaged")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--doc", help="write a Markdown summary here")
    args = parser.parse_args(argv)
    missing = [p for p in args.model_paths if not Path(p).is_file()]
    if missing:
        parser.error(f"no model file at {missing}")
    if args.train_scenes is not None and args.train_scenes < 1:
        parser.error(f"--train-scenes must be >= 1. Received: {args.train_scenes}")
    if args.draws < 0:
        parser.error(f"--draws must be >= 0. Received: {args.draws}")

    import keras
    import numpy as np

    import kerascnn
    from kerascnn.data import SCENE_CLASSES, generate_fashion_mnist_scenes, to_model_input
    from kerascnn.training import error_breakdown

    scenes = dict(image_size=args.image_size, scale_range=tuple(args.item_scale))
    images, masks, placements = generate_fashion_mnist_scenes(
        "test", args.test_scenes, seed=args.seed + 1, return_placements=True,
        items_per_scene=tuple(args.items_per_scene), **scenes)  # the benchmark's test scenes
    counts = range(args.items_per_scene[0], args.items_per_scene[1] + 1)
    by_count = {count: generate_fashion_mnist_scenes(
        "test", args.test_scenes, seed=args.seed + 10 + count, items_per_scene=count, **scenes)
        for count in counts}
    seen = None
    if args.train_scenes is not None:
        # The benchmark's training scenes (same generator, settings and seed), a sample of them.
        train_images, train_masks = generate_fashion_mnist_scenes(
            "train", args.train_scenes, seed=args.seed,
            items_per_scene=tuple(args.items_per_scene), **scenes)
        pick = np.random.default_rng(args.seed + 5).permutation(args.train_scenes)
        pick = np.sort(pick[:min(args.test_scenes, args.train_scenes)])
        seen = train_images[pick], train_masks[pick]
    draws = {args.seed + DRAW_SEED + k: generate_fashion_mnist_scenes(
        "test", args.test_scenes, seed=args.seed + DRAW_SEED + k,
        items_per_scene=tuple(args.items_per_scene), **scenes) for k in range(args.draws)}
    shape = (args.image_size, args.image_size, 3)
    num_classes = len(SCENE_CLASSES)
    results = []
    for path in args.model_paths:
        model = keras.saving.load_model(path)
        name = registered_name(model.name)
        if name not in kerascnn.list_models(task="segmentation"):
            parser.error(f"{path}: its name {model.name!r} is not a registered segmentation model "
                         f"(one of {kerascnn.list_models(task='segmentation')}), so its input "
                         "preprocessing is unknown")
        preprocessing = kerascnn.model_info(name).preprocessing

        def scores(images):
            return model.predict(to_model_input(images, shape, preprocessing), batch_size=64,
                                 verbose=0)

        def one_pass_and_flipped(images):
            plain = scores(images)
            # Flip TTA: the sum of the two runs' scores has the argmax of their mean.
            return plain, plain + scores(images[:, :, ::-1])[:, :, ::-1]

        def both(images, masks):
            plain, flipped = one_pass_and_flipped(images)
            return {"one_pass": error_breakdown(masks, plain.argmax(-1), num_classes),
                    "flip_tta": error_breakdown(masks, flipped.argmax(-1), num_classes)}

        plain, flipped = one_pass_and_flipped(images)
        predicted = plain.argmax(-1)
        fractions, right = named_right_by_visibility(placements, predicted)
        results.append({
            "model": model.name, "model_path": str(path),
            "test_scenes": error_breakdown(masks, predicted, num_classes),
            "flip_tta": error_breakdown(masks, flipped.argmax(-1), num_classes),
            "by_visibility": visibility_table(fractions, right),
            "by_item_count": {count: error_breakdown(k_masks, scores(k_images).argmax(-1),
                                                     num_classes)
                              for count, (k_images, k_masks) in by_count.items()},
            "train_scenes": None if seen is None else
            error_breakdown(seen[1], scores(seen[0]).argmax(-1), num_classes),
            "draws": {seed: both(*scenes) for seed, scenes in draws.items()}})
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.doc:
        write_doc(args.doc, results, args, argv if argv is not None else sys.argv[1:])
        print(f"wrote {args.doc}")
    return results


def write_doc(path, results, args, argv):
    shown = [a for a in argv if a not in ("--json", "--doc")]
    for flag in ("--json", "--doc"):  # the output files are not part of the measurement
        if flag in argv:
            shown.remove(argv[argv.index(flag) + 1])

    def row(label, b):
        return (f"| {label} | {b['mean_iou']:.3f} | {b['foreground_iou']:.3f} | "
                f"{100 * b['class_accuracy']:.1f} % | {100 * b['region_accuracy']:.1f} % of "
                f"{b['regions']:,} | {b['mean_iou_true_classes']:.3f} |")

    lines = [
        "# Where the segmentation models misname items",
        "",
        f"Command: `PYTHONPATH=. python benchmarks/segmentation_naming.py {' '.join(shown)}`",
        "",
        "The models: `.keras` files saved by `benchmarks/segmentation.py --out-dir`. Test "
        "scenes: "
        f"{args.test_scenes:,} per row, {args.image_size}x{args.image_size}, item scale "
        f"{args.item_scale[0]}x-{args.item_scale[1]}x, textured background, items from the "
        "Fashion-MNIST test split; the first row's are the benchmark's own test scenes. Columns as "
        "in the benchmark's \"Where the score is lost\" table "
        "(`kerascnn.training.error_breakdown`). Flip test-time augmentation: the class scores of "
        "the scene and of its left-right mirror (mirrored back), summed; it runs the model twice.",
    ]
    for result in results:
        lines += ["", f"## `{result['model']}` (`{result['model_path']}`)", "",
                  "| scenes | mean IoU | foreground IoU | class accuracy (pixels) | "
                  "regions named right | mIoU with true names |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |",
                  row(f"the benchmark's ({args.items_per_scene[0]}-{args.items_per_scene[1]} "
                      "items)", result["test_scenes"]),
                  row("the same, flip test-time augmentation", result["flip_tta"])]
        for count, b in result["by_item_count"].items():
            lines.append(row(f"{count} item{'s' if int(count) > 1 else ''} each", b))
        if result["train_scenes"] is not None:
            lines.append(row(f"{min(args.test_scenes, args.train_scenes):,} of its "
                             f"{args.train_scenes:,} training scenes (no augmentation)",
                             result["train_scenes"]))
        lines += ["", "Items of the benchmark's test scenes by the share of their pixels that "
                  "later items leave visible; an item is named right when the majority of its "
                  "visible pixels' predicted item classes is its class:", "",
                  "| visible | items | named right |", "| --- | ---: | ---: |"]
        for label, n, share in result["by_visibility"]:
            lines.append(f"| {label} | {n:,} | {'n/a' if n == 0 else f'{100 * share:.1f} %'} |")
        if result["draws"]:
            lines += draws_table(result, args)
    lines.append("")
    Path(path).write_text("\n".join(lines))


def draws_table(result, args) -> list[str]:
    """The doc's lines for `--draws`: the benchmark's test scenes and each other draw, in one
    pass and flip-averaged, and the other draws' mean and range."""
    import numpy as np

    lines = ["", f"The benchmark's test scenes against {len(result['draws'])} more draws of "
             f"{args.test_scenes:,} test scenes with the same settings (other seeds):", "",
             "| test scenes | seed | mean IoU | flip-averaged | regions named right |",
             "| --- | ---: | ---: | ---: | ---: |",
             f"| the benchmark's | {args.seed + 1} | {result['test_scenes']['mean_iou']:.3f} | "
             f"{result['flip_tta']['mean_iou']:.3f} | "
             f"{100 * result['test_scenes']['region_accuracy']:.1f} % |"]
    for seed, b in result["draws"].items():
        lines.append(f"| another draw | {seed} | {b['one_pass']['mean_iou']:.3f} | "
                     f"{b['flip_tta']['mean_iou']:.3f} | "
                     f"{100 * b['one_pass']['region_accuracy']:.1f} % |")
    plain = [b["one_pass"]["mean_iou"] for b in result["draws"].values()]
    flip = [b["flip_tta"]["mean_iou"] for b in result["draws"].values()]
    lines.append(f"| the other draws: mean (range) | | {np.mean(plain):.3f} ({min(plain):.3f}-"
                 f"{max(plain):.3f}) | {np.mean(flip):.3f} ({min(flip):.3f}-{max(flip):.3f}) | |")
    return lines


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
