"""Draws docs/checkerboard.png: why the segmentation decoders default to resize-then-convolve.

A stride-2 transposed convolution with a 3x3 kernel (all weights 1) applied to a constant input
gives a checkerboard: each output pixel receives 1, 2 or 4 kernel taps depending on its position,
because the kernel size is not a multiple of the stride (Odena et al., "Deconvolution and
Checkerboard Artifacts", Distill 2016, https://distill.pub/2016/deconv-checkerboard/). A nearest
2x resize followed by a 3x3 convolution (all weights 1) gives the same value everywhere away from
the border. The panels are computed with Keras layers, not drawn by hand.

Usage:
    .venv/bin/python scripts/checkerboard_figure.py [--out docs/checkerboard.png]
"""

from __future__ import annotations

import argparse
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = pathlib.Path(__file__).resolve().parent.parent

CAPTION = ("A constant 8x8 input upsampled 2x, all weights 1. Left: a stride-2 transposed "
           "convolution with a 3x3 kernel overlaps unevenly, so the output alternates between 1, "
           "2 and 4 taps: a checkerboard. Right: nearest 2x resize, then a 3x3 convolution: every "
           "interior pixel sums 9 equal values (only the zero-padded border differs). "
           "kerascnn's decoders default to the right-hand scheme (upsampling=\"nearest\").")


def outputs(size: int = 8):
    """(transposed convolution output, resize-then-convolve output), both (2 size, 2 size)."""
    import keras
    import numpy as np
    from keras import layers

    x = np.ones((1, size, size, 1), "float32")
    transposed = layers.Conv2DTranspose(1, 3, strides=2, padding="same", use_bias=False,
                                        kernel_initializer="ones")(x)
    resized = layers.Conv2D(1, 3, padding="same", use_bias=False, kernel_initializer="ones")(
        layers.Resizing(2 * size, 2 * size, interpolation="nearest")(x))
    return (keras.ops.convert_to_numpy(transposed)[0, :, :, 0],
            keras.ops.convert_to_numpy(resized)[0, :, :, 0])


def draw(path: pathlib.Path) -> pathlib.Path:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = zip(outputs(), ("Conv2DTranspose 3x3, stride 2", "nearest resize 2x + Conv2D 3x3"))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    for ax, (image, title) in zip(axes, panels):
        shown = ax.imshow(image, cmap="viridis", vmin=0)
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        for (row, col), value in np.ndenumerate(image):
            ax.text(col, row, f"{value:g}", ha="center", va="center", fontsize=6,
                    color="black" if value > 0.6 * image.max() else "white")
    fig.text(0.5, 0.02, CAPTION, ha="center", va="bottom", wrap=True, fontsize=8.5)
    fig.subplots_adjust(bottom=0.16, top=0.93, wspace=0.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "checkerboard.png")
    print(draw(parser.parse_args().out))
