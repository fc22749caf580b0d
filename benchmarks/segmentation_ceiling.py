"""How far could a segmentation model get on the offline scenes if it recognised every item as well
as a classifier does? An upper bound for docs/segmentation.md.

The test scenes of benchmarks/segmentation.py are rebuilt with their instance masks. Every visible
pixel of every item is labelled with the class that a MobileNetV2 classifier (trained here on the
Fashion-MNIST train split, as `--pretrain-epochs` does there) predicts for that item shown alone,
whole and centred at 32x32: perfect outlines, the classifier's identities. The mean IoU of that
labelling is the score a segmentation model would reach with exact boundaries and the
classifier's recognition; the gap to the trained models' scores is what their recognition of
items in a cluttered, occluded scene loses. As a check of the instance masks, the same labelling
with the true classes must score exactly 1. The script also runs the classifier on one-item
scenes (black and textured background) to measure how much of its recognition survives the move
from items alone to scenes.

Usage:
    PYTHONPATH=. python benchmarks/segmentation_ceiling.py      # writes docs/segmentation_ceiling.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "segmentation_ceiling.md"
SCENES = dict(image_size=64, items_per_scene=(1, 3), scale_range=(1.0, 1.5))  # segmentation.py's


def label_items(placements, item_labels):
    """(N, S, S) masks with every visible item pixel labelled `item_labels[index] + 1`, from the
    scenes' instance masks: the scene generator's composition, with other labels."""
    import numpy as np

    instance = placements["instance"].astype(np.int64)
    per_slot = (np.asarray(item_labels)[placements["index"]] + 1).astype(np.uint8)  # (N, slots)
    flat = np.maximum(instance, 0).reshape(len(instance), -1)
    labelled = np.take_along_axis(per_slot, flat, axis=1).reshape(instance.shape)
    return np.where(instance >= 0, labelled, 0).astype(np.uint8)


def one_item_scene_accuracy(classifier, args, count=10_000):
    """The classifier (trained on items alone at 32x32) run on one-item test scenes of the
    benchmark's size and item scale, on each background: {background: accuracy}. The same
    weights at the scene's input size (the network is fully convolutional up to its global
    pooling); the scene's item is the label."""
    import kerascnn
    from kerascnn.data import to_model_input
    from segmentation import one_item_scenes

    size = SCENES["image_size"]
    shape = (size, size, 3)
    model = kerascnn.build("mobilenet_v2", input_shape=shape, classes=10, alpha=args.alpha)
    model.set_weights(classifier.get_weights())
    preprocessing = kerascnn.model_info("mobilenet_v2").preprocessing
    accuracy = {}
    for background in ("black", "texture"):
        images, labels = one_item_scenes("test", count, image_size=size,
                                         scale_range=SCENES["scale_range"], seed=args.seed + 3,
                                         background=background)
        predicted = model.predict(to_model_input(images, shape, preprocessing), batch_size=256,
                                  verbose=0).argmax(-1)
        accuracy[background] = float((predicted == labels).mean())
    return accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--test-scenes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--doc", default=str(DOC))
    parser.add_argument("--verbose", action="store_true")
    # The classifier of `segmentation.py --pretrain-on items`, never cached.
    parser.set_defaults(pretrain_on="items", out_dir=None)
    args = parser.parse_args(argv)
    if args.pretrain_epochs < 1:
        parser.error(f"--pretrain-epochs must be >= 1. Received: {args.pretrain_epochs}")

    import numpy as np

    import kerascnn
    from kerascnn.data import (SCENE_CLASSES, generate_fashion_mnist_scenes, load_fashion_mnist,
                               to_model_input)
    from kerascnn.training import iou_per_class, mean_iou

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from segmentation import pretrain_classifier  # the same classifier as --pretrain-epochs

    start = time.perf_counter()
    _, masks, placements = generate_fashion_mnist_scenes(
        "test", args.test_scenes, seed=args.seed + 1, return_placements=True, **SCENES)
    sources, labels = load_fashion_mnist("test")
    check = mean_iou(masks, label_items(placements, labels),
                     len(SCENE_CLASSES))
    if check != 1.0:
        raise RuntimeError(f"The instance masks do not give the scenes' masks back (mean IoU "
                           f"{check} with the true classes); has kerascnn.data.scenes changed?")

    classifier, accuracy, seconds = pretrain_classifier(args)
    inputs = to_model_input(sources, (32, 32, 3), kerascnn.model_info("mobilenet_v2").preprocessing)
    predicted = classifier.predict(inputs, batch_size=256, verbose=0).argmax(-1)
    relabelled = label_items(placements, predicted)
    domain = one_item_scene_accuracy(classifier, args)
    num_classes = len(SCENE_CLASSES)
    ceiling = mean_iou(masks, relabelled, num_classes)
    per_class = iou_per_class(masks, relabelled, num_classes)
    minutes = (time.perf_counter() - start) / 60

    lines = [
        "# An upper bound for segmentation on the offline scenes",
        "",
        "Command: `PYTHONPATH=. python benchmarks/segmentation_ceiling.py` "
        f"({minutes:.1f} minutes here).",
        "",
        f"The {args.test_scenes:,} test scenes of [segmentation.md](segmentation.md), every visible "
        "item pixel labelled with the class that a MobileNetV2 classifier (alpha "
        f"{args.alpha}, {args.pretrain_epochs} epochs on the Fashion-MNIST train split at 32x32, "
        f"{seconds / 60:.1f} min; trained as `benchmarks/segmentation.py "
        f"--pretrain-epochs {args.pretrain_epochs}` trains it) predicts for that item alone, "
        "whole and centred. Outlines are exact; only the identities come from the classifier. With the "
        "true classes the same relabelling scores exactly 1 (checked by the script).",
        "",
        f"- Classifier test accuracy (items alone): **{100 * accuracy:.2f} %**",
        f"- Mean IoU of the scenes labelled with its predictions: **{ceiling:.3f}**",
        "",
        "The bound takes the identities from the items alone. The same classifier does not "
        "recognise them in a scene: run on one-item test scenes "
        f"({SCENES['image_size']}x{SCENES['image_size']}, item scale "
        f"{SCENES['scale_range'][0]}x-{SCENES['scale_range'][1]}x, random position, the same "
        f"weights), it reaches **{100 * domain['black']:.1f} %** on a black background and "
        f"**{100 * domain['texture']:.1f} %** on the scenes' textured background (chance: 10 %). "
        "That is why a backbone from this classifier helps the segmentation models little, and "
        "why `benchmarks/segmentation.py --pretrain-on scenes` trains the classifier on one-item "
        "scenes instead ([segmentation_long.md](segmentation_long.md)).",
        "",
        "A segmentation model with exact boundaries that recognised items in the scenes as well as "
        "this classifier recognises them alone would score this. The trained models score far "
        "less ([segmentation.md](segmentation.md), "
        "[segmentation_pretrained.md](segmentation_pretrained.md)): what they lose is the "
        "recognition of the items, not their separation from the background (their background IoU is "
        "0.93-0.97).",
        "",
        "| class | IoU |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} {name} | {value:.3f} |" for k, (name, value)
              in enumerate(zip(SCENE_CLASSES, per_class))]
    Path(args.doc).write_text("\n".join(lines) + "\n")
    print(f"classifier accuracy {accuracy:.4f}, mean IoU ceiling {ceiling:.4f}, one-item "
          f"scenes {domain}; wrote {args.doc}")


if __name__ == "__main__":
    from kerascnn.env import prefer_onednn

    prefer_onednn()  # TensorFlow's faster CPU kernels, before it is imported (kerascnn/env.py)
    main()
