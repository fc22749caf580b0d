"""Running a model at another resolution than its images: the input resolution as a knob.

`resized_input(model, image_shape)` wraps a model built at one input size so that it takes images
of another: a `keras.layers.Resizing` (bilinear) brings each image to the model's input size, and
a segmentation model's score maps are resized back to the image's height and width, so that they
line up with the image's pixels (and its label mask). A classifier's output is left as it is.

This is the MobileNet papers' resolution multiplier applied to a model whose data come at a fixed
size: the same weights (fully convolutional models do not depend on the input size) run on a finer
grid, so a decoder that predicts at stride 4 predicts more cells per item, at the cost of MACs
growing with the pixel count ((80 / 64)^2 = 1.56x for 64x64 images run at 80x80). It can be
trained that way, or a model trained at the images' size can be run at another
(`docs/recipe_search.md` measures both on the segmentation scenes). Both resizes are TFLite
builtin ops (RESIZE_BILINEAR), so the exported file takes the images as they come.
"""

from __future__ import annotations

import keras
from keras import layers


def resized_input(model, image_shape, name: str | None = None):
    """`model`, fed images of `image_shape` that are resized to its own input size.

    Args:
        model: a model with one image input of a fixed size (N, H', W', C) and one output: a
            classifier's (N, classes) or a segmentation model's score maps (N, h, w, classes),
            which are resized (bilinear) to the images' (H, W).
        image_shape: (H, W, C) of the images the new model takes; C must be the model's.
        name: the new model's name (default: "<model name>_from<H>x<W>").

    Returns:
        A functional model taking (N, H, W, C), whose weights are `model`'s (shared).

    Raises:
        ValueError: a model with several inputs or outputs or without a fixed image input size,
            an output that is neither a vector nor a map per image, or an `image_shape` that is
            not three positive integers with the model's channel count.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("resized_input needs a model with one input and one output. Received "
                         f"{len(model.inputs)} input(s) and {len(model.outputs)} output(s).")
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(in_shape) != 4 or None in in_shape[1:3] or len(out_shape) not in (2, 4):
        raise ValueError("resized_input needs a model with a fixed-size image input (N, H, W, C) "
                         "and an output (N, classes) or (N, H, W, classes). Received input "
                         f"{in_shape} and output {out_shape}.")
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else None
    if (shape is None or len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape)
            or shape[2] != in_shape[3]):
        raise ValueError("`image_shape` must be (height, width, channels): positive integers, "
                         f"with the model's {in_shape[3]} channels. Received: "
                         f"image_shape={image_shape!r}")
    images = keras.Input(shape, name="images")
    x = images
    if shape[:2] != in_shape[1:3]:
        x = layers.Resizing(*in_shape[1:3], interpolation="bilinear", name="to_model_size")(x)
    y = model(x)
    if len(out_shape) == 4 and out_shape[1:3] != shape[:2]:
        y = layers.Resizing(*shape[:2], interpolation="bilinear", name="to_image_size")(y)
    return keras.Model(images, y, name=name or f"{model.name}_from{shape[0]}x{shape[1]}")
