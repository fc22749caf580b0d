"""Feature maps from early to late layers, and the classic hand-made edge filters.

`feature_maps` runs an image through a model and draws, one row per layer, the maps of a few
channels: early layers keep the image's layout (edges, colour blobs), late layers are coarse and
abstract. `edge_filters` is the first lesson of every CNN course made concrete: a `Conv2D` whose
two kernels are a vertical and a horizontal edge detector (Sobel, or the plain [1, 0, -1] of
Prewitt), for grayscale or, with the kernel on one colour channel and zeros on the others, for RGB
input.

matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from kerascnn.analysis.graph import walk

EDGE_KINDS = ("sobel", "prewitt")

_KERNELS = {
    # Vertical edges: bright on the left, dark on the right gives a positive response. Keras
    # convolutions are cross-correlations, so the kernel is applied as written.
    "sobel": np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]),
    "prewitt": np.array([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, -1.0]]),
}


def edge_kernel(kind: str = "sobel", orientation: str = "vertical") -> np.ndarray:
    """The 3x3 edge kernel of `kind` ("sobel" or "prewitt") for "vertical" or "horizontal" edges.

    Raises:
        ValueError: for an unknown kind or orientation.
    """
    if kind not in EDGE_KINDS:
        raise ValueError(f"`kind` must be one of {list(EDGE_KINDS)}. Received: kind={kind!r}")
    if orientation not in ("vertical", "horizontal"):
        raise ValueError("`orientation` must be 'vertical' or 'horizontal'. "
                         f"Received: orientation={orientation!r}")
    kernel = _KERNELS[kind]
    return kernel.copy() if orientation == "vertical" else kernel.T.copy()


def edge_filters(rgb: bool = False, *, kind: str = "sobel", channel: int = 0,
                 name: str = "edge_filters") -> keras.layers.Conv2D:
    """A built `Conv2D` with two fixed 3x3 kernels: vertical edges (output channel 0) and
    horizontal edges (output channel 1).

    Args:
        rgb: False for a 1-channel input (kernel shape (3, 3, 1, 2)); True for a 3-channel input
            (3, 3, 3, 2) with the edge kernel on `channel` and zeros on the other two, so it finds
            the edges of that colour channel only.
        kind: "sobel" ([1, 2, 1] smoothing across the edge) or "prewitt" (the plain [1, 0, -1]).
        channel: with `rgb=True`, the input channel (0, 1 or 2) the kernel reads.
        name: the layer's name.

    Returns:
        A `keras.layers.Conv2D` (padding "same", no bias, not trainable) with its weights set.

    Raises:
        ValueError: for an unknown kind or a channel outside 0-2.

    Example:
        >>> edges = edge_filters()(image[None, ..., None])  # (1, H, W, 2): vertical, horizontal
    """
    if not isinstance(rgb, bool):
        raise ValueError(f"`rgb` must be True or False. Received: rgb={rgb!r}")
    if isinstance(channel, bool) or channel not in (0, 1, 2):
        raise ValueError(f"`channel` must be 0, 1 or 2. Received: channel={channel!r}")
    in_channels = 3 if rgb else 1
    kernel = np.zeros((3, 3, in_channels, 2), dtype="float32")
    target = channel if rgb else 0
    kernel[:, :, target, 0] = edge_kernel(kind, "vertical")
    kernel[:, :, target, 1] = edge_kernel(kind, "horizontal")
    layer = keras.layers.Conv2D(2, 3, padding="same", use_bias=False, trainable=False, name=name)
    layer.build((None, None, None, in_channels))
    layer.set_weights([kernel])
    return layer


def demo_image(size: int = 224) -> np.ndarray:
    """A synthetic RGB test card in [0, 255], (size, size, 3) float32: a red disc, a blue square,
    a green triangle and vertical stripes on a grey gradient. Every edge orientation is present
    and nothing needs downloading.

    Raises:
        ValueError: for a size below 16.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"`size` must be an integer >= 16. Received: size={size!r}")
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.empty((size, size, 3), dtype="float32")
    image[...] = (60 + 80 * x)[..., None]  # grey ramp, dark to light from left to right
    disc = (x - 0.3) ** 2 + (y - 0.3) ** 2 < 0.18 ** 2
    image[disc] = (220, 40, 40)
    square = (x > 0.58) & (x < 0.88) & (y > 0.12) & (y < 0.42)
    image[square] = (40, 60, 210)
    triangle = (y > 0.58) & (y < 0.9) & (np.abs(x - 0.3) < (y - 0.58) * 0.6)
    image[triangle] = (40, 190, 60)
    columns = np.floor(x * size) // max(size // 28, 1)  # stripes size // 28 pixels wide
    stripes = (x > 0.58) & (x < 0.9) & (y > 0.58) & (y < 0.9) & (columns % 2 == 0)
    image[stripes] = 245
    return image


def default_layers(model, count: int = 4) -> list:
    """Names of `count` convolution outputs spread evenly from the first to the last one whose map
    is still at least 2x2."""
    candidates = []
    for node in walk(model).nodes:
        if "/" in node.name or ":" in node.name:
            continue  # inside a nested model, or a repeated call: not reachable by get_layer
        shape = node.output_shape
        if (isinstance(node.layer, keras.layers.Conv2D) or
                isinstance(node.layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D))):
            if len(shape) == 4 and all(d is None or d >= 2 for d in shape[1:3]):
                candidates.append(node.name)
    if len(candidates) <= count:
        return candidates
    picks = np.linspace(0, len(candidates) - 1, count).round().astype(int)
    return [candidates[i] for i in dict.fromkeys(picks.tolist())]


CHANNEL_ORDERS = ("variance", "index")


def feature_maps(model, image, layers=None, path: str = "feature_maps.png", *, channels: int = 8,
                 order: str = "variance", title: str | None = None) -> dict:
    """Draws the feature maps of `image` at several layers as a PNG grid, and returns them.

    Row 0 shows the input; each further row is one layer (name and shape on the left), with
    `channels` of its channels, each scaled to its own range (dark = low, bright = high).

    Args:
        model: a functional Keras model on images (channels last).
        image: one image, (H, W) or (H, W, C), already preprocessed the way the model expects
            (see `kerascnn.model_info(name).preprocessing`). A grayscale image is repeated to 3
            channels, and an RGB image averaged to 1, to fit the model; it is resized (bilinear)
            when the model has a fixed input size that differs.
        layers: layer names to show, in order; default: `default_layers(model)`, a few
            convolutions spread across depth.
        path: where to write the PNG (its folder is created).
        channels: maps shown per layer.
        order: "variance" shows the channels of largest spatial variance (the most structured
            maps) first; "index" shows channels 0, 1, 2, ...
        title: figure title (default: the model's name and "feature maps, early (top) to late
            (bottom)").

    Returns:
        {layer name: activation array (H, W, C)}, in the order drawn.

    Raises:
        ValueError: for an image of the wrong rank, an unknown layer name, a layer without a
            spatial output, `channels` < 1 or an unknown `order`.
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"`channels` must be a positive integer. Received: channels={channels!r}")
    if order not in CHANNEL_ORDERS:
        raise ValueError(f"`order` must be one of {list(CHANNEL_ORDERS)}. Received: order={order!r}")
    batch = _prepare_image(model, image)
    names = default_layers(model) if layers is None else list(layers)
    if not names:
        raise ValueError("No layer to show: pass `layers=[...]` with layer names.")
    known = {node.name: node for node in walk(model).nodes
             if "/" not in node.name and ":" not in node.name}
    for name in names:
        if name not in known:
            raise ValueError(f"Unknown layer name {name!r}. Received: layers={names}")
        if len(known[name].output_shape) != 4:
            raise ValueError(f"Layer {name!r} has no spatial output (shape "
                             f"{known[name].output_shape}); pick a layer with a 4-D output.")
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    probe = keras.Model(inputs, [model.get_layer(n).output for n in names])
    outputs = probe(batch, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    maps = {name: np.asarray(keras.ops.convert_to_numpy(out))[0] for name, out in zip(names, outputs)}
    _draw(np.asarray(batch[0]), maps, channels, order, path,
          title or f"{model.name}: feature maps, early (top) to late (bottom)")
    return maps


def _prepare_image(model, image):
    array = np.asarray(image, dtype="float32")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError("`image` must be one image of shape (H, W) or (H, W, C). "
                         f"Received: image of shape {array.shape}")
    shape = tuple(model.inputs[0].shape[1:])
    want_channels = shape[-1]
    if array.shape[-1] != want_channels:
        if array.shape[-1] == 1:
            array = np.repeat(array, want_channels, axis=-1)
        elif want_channels == 1:
            array = array.mean(axis=-1, keepdims=True)
        else:
            raise ValueError(f"The model expects {want_channels} channels. Received: image of "
                             f"shape {array.shape}")
    height, width = shape[0], shape[1]
    if (height not in (None, array.shape[0])) or (width not in (None, array.shape[1])):
        size = (height or array.shape[0], width or array.shape[1])
        array = np.asarray(keras.ops.convert_to_numpy(
            keras.ops.image.resize(array[None], size, interpolation="bilinear")))[0]
    return array[None]


def _normalise(x):
    low, high = float(np.min(x)), float(np.max(x))
    return np.zeros_like(x) if high - low < 1e-12 else (x - low) / (high - low)


def _draw(image, maps, channels, order, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = channels
    rows = len(maps) + 1
    panel = max(1.6, 6.0 / cols)  # inches: few channels get bigger panels
    fig, axes = plt.subplots(rows, cols, figsize=(panel * cols + 1.0, (panel + 0.1) * rows + 0.6),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    shown = image if image.shape[-1] == 3 else image[..., 0]
    axes[0, 0].imshow(_normalise(shown), cmap=None if shown.ndim == 3 else "gray")
    axes[0, 0].set_ylabel(f"input\n{'x'.join(map(str, image.shape))}", fontsize=8)
    for ax in axes[0, 1:]:
        ax.axis("off")
    for row, (name, activation) in enumerate(maps.items(), start=1):
        if order == "variance":
            variance = activation.reshape(-1, activation.shape[-1]).var(axis=0)
            picked = np.argsort(-variance, kind="stable")[:cols]
        else:
            picked = np.arange(activation.shape[-1])[:cols]
        for col in range(cols):
            ax = axes[row, col]
            if col < len(picked):
                ax.imshow(_normalise(activation[..., picked[col]]), cmap="viridis",
                          interpolation="nearest")
                ax.set_title(f"ch {picked[col]}", fontsize=7, pad=2)
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(f"{name}\n{'x'.join(map(str, activation.shape))}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
