"""Side-by-side numbers for registered models: a table (Markdown and CSV) and a bubble chart, and
EfficientNet's one-dimension-at-a-time versus compound scaling.

Every number is measured on the model the registry builds (random weights, default input size
unless told otherwise): parameters from Keras, MACs from `count_macs`, activation memory from
`activation_memory` (batch 1, float32), depth from `graph.depth`, the receptive field from
`receptive_field`. Only the accuracy is quoted: the published ImageNet top-1 from
`model_info(name).published_accuracy`, with its source.

The scaling table follows Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", ICML 2019 (https://arxiv.org/abs/1905.11946), section 3: scale B0 by width only,
depth only or resolution only until it costs about twice B0's MACs, and compare with the compound
rule (depth alpha**phi, width beta**phi, resolution gamma**phi with alpha=1.2, beta=1.1,
gamma=1.15: alpha * beta**2 * gamma**2 ~ 2, so phi=1 also roughly doubles the cost).
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import inspect
import io
import math
import os
import re

from kerascnn import registry
from kerascnn.analysis.graph import depth as graph_depth
from kerascnn.analysis.graph import weight_layer_count
from kerascnn.analysis.macs import count_macs
from kerascnn.analysis.memory import activation_memory
from kerascnn.analysis.receptive_field import receptive_field

COMPOUND_ALPHA, COMPOUND_BETA, COMPOUND_GAMMA = 1.2, 1.1, 1.15  # depth, width, resolution


@dataclasses.dataclass(frozen=True)
class ModelStats:
    """Measured numbers of one model.

    Attributes:
        name: registry name (or the model's name).
        input_shape: (height, width, channels) it was measured at.
        params: total parameters.
        macs: multiply-accumulates per image.
        uncounted: layers whose MACs are unknown (see `MacCount.uncounted`); 0 when complete.
        peak_bytes: peak activation memory, batch 1, float32.
        total_bytes: sum of all layer outputs, batch 1, float32.
        depth: weight layers on the longest path.
        weight_layers: all weight-layer calls.
        receptive_field: the final receptive field (height, width) in pixels.
        top1: published ImageNet top-1 accuracy in %, or None.
        top1_source: where `top1` comes from.
    """

    name: str
    input_shape: tuple
    params: int
    macs: int
    uncounted: int
    peak_bytes: int
    total_bytes: int
    depth: int
    weight_layers: int
    receptive_field: tuple
    top1: float | None = None
    top1_source: str = ""

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def build_registered(name: str, *, input_size: int | None = None, **kwargs):
    """Builds a registered model with random weights (never downloads), optionally at a square
    input of `input_size` pixels."""
    info = registry.model_info(name)
    if input_size is not None:
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise ValueError("`input_size` must be a positive integer. "
                             f"Received: input_size={input_size!r}")
        kwargs.setdefault("input_shape", (input_size, input_size, info.default_input_shape[-1]))
    if "weights" in inspect.signature(info.builder).parameters:
        kwargs.setdefault("weights", None)
    return registry.build(info.name, **kwargs)


def model_stats(model, *, name: str | None = None) -> ModelStats:
    """Measures one built model (see the module docstring).

    Args:
        model: a functional Keras model with a fixed input size.
        name: a registry name, to attach the published top-1 accuracy; default `model.name`.

    Returns:
        A `ModelStats`.
    """
    name = name or model.name
    macs = count_macs(model)
    memory = activation_memory(model)
    fields = receptive_field(model)
    top1, source = None, ""
    try:
        info = registry.model_info(name)
    except ValueError:
        info = None
    if info is not None:
        top1 = info.published_accuracy.get("imagenet_top1")
        source = info.published_accuracy.get("source", "") if top1 is not None else ""
    return ModelStats(
        name=name, input_shape=tuple(model.inputs[0].shape[1:]), params=int(model.count_params()),
        macs=macs.total, uncounted=len(macs.uncounted), peak_bytes=memory.peak_bytes,
        total_bytes=memory.total_bytes, depth=graph_depth(model),
        weight_layers=weight_layer_count(model), receptive_field=fields.final.size or (),
        top1=top1, top1_source=source)


def compare_models(names, *, input_size: int | None = None) -> list:
    """`ModelStats` for each registered name, each built at its default input (or `input_size`).

    Raises:
        ValueError: for an unknown name or an empty list.
    """
    names = list(names)
    if not names:
        raise ValueError("`names` must list at least one registered model. Received: []")
    for name in names:
        registry.model_info(name)  # fail on a bad name before building anything
    stats = []
    for name in names:
        model = build_registered(name, input_size=input_size)
        stats.append(model_stats(model, name=registry.model_info(name).name))
        del model
        gc.collect()
    return stats


_COLUMNS = ("Model", "Input", "Params (M)", "GMACs", "Peak act. (MiB)", "All act. (MiB)",
            "Depth", "Receptive field", "ImageNet top-1 (%)")


def _format_rf(size) -> str:
    if not size:
        return ""
    return str(size[0]) if len(set(size)) == 1 else "x".join(map(str, size))


def _row(s: ModelStats) -> list:
    return [s.name, "x".join(map(str, s.input_shape)), f"{s.params / 1e6:.3g}",
            f"{s.macs / 1e9:.4g}" + ("*" if s.uncounted else ""), f"{s.peak_bytes / 2**20:.3g}",
            f"{s.total_bytes / 2**20:.3g}", str(s.depth), _format_rf(s.receptive_field),
            "" if s.top1 is None else f"{s.top1:g}"]


def to_markdown(stats) -> str:
    """A Markdown table of `ModelStats` rows (peak/all activations: batch 1, float32)."""
    lines = ["| " + " | ".join(_COLUMNS) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(_COLUMNS))) + "|"]
    lines += ["| " + " | ".join(_row(s)) + " |" for s in stats]
    if any(s.uncounted for s in stats):
        lines.append("\n\\* some layers' MACs are unknown (see `count_macs(...).uncounted`).")
    return "\n".join(lines) + "\n"


def to_csv(stats) -> str:
    """The same numbers as CSV, unrounded: bytes and MACs as integers."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "input_shape", "params", "macs", "peak_activation_bytes",
                     "total_activation_bytes", "depth", "weight_layers", "receptive_field",
                     "imagenet_top1", "top1_source", "uncounted_layers"])
    for s in stats:
        writer.writerow([s.name, "x".join(map(str, s.input_shape)), s.params, s.macs, s.peak_bytes,
                         s.total_bytes, s.depth, s.weight_layers, _format_rf(s.receptive_field),
                         "" if s.top1 is None else s.top1, s.top1_source, s.uncounted])
    return buffer.getvalue()


def bubble_chart(stats, path: str, *, title: str | None = None) -> str:
    """Draws published ImageNet top-1 against GMACs (log scale), bubble area proportional to the
    parameters, every point labelled. Models without an ImageNet top-1 sit in a strip at the
    bottom, as hollow bubbles.

    Args:
        stats: `ModelStats` rows.
        path: the PNG to write (its folder is created).
        title: figure title.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = list(stats)
    if not stats:
        raise ValueError("`stats` must hold at least one model. Received: []")
    known = [s for s in stats if s.top1 is not None]
    unknown = [s for s in stats if s.top1 is None]
    largest = max(s.params for s in stats)
    top1s = [s.top1 for s in known] or [70.0]
    low, high = min(top1s), max(top1s)
    span = max(high - low, 5.0)
    strip = low - 0.35 * span  # where models without a published top-1 go

    def area(s):
        return max(40.0, 3000.0 * s.params / largest)

    fig, ax = plt.subplots(figsize=(9, 6))
    colors = plt.cm.tab10.colors
    for i, s in enumerate(stats):
        y = s.top1 if s.top1 is not None else strip
        color = colors[i % len(colors)]
        ax.scatter(max(s.gmacs, 1e-6), y, s=area(s), alpha=0.45 if s.top1 is not None else 0.9,
                   facecolors=color if s.top1 is not None else "none", edgecolors=color,
                   linewidths=1.5)
        label = f"{s.name}\n{_params_text(s.params)}, {_macs_text(s.macs)}"
        radius = math.sqrt(area(s)) / 2  # points
        ax.annotate(label, (max(s.gmacs, 1e-6), y), xytext=(radius * 0.75 + 4, radius * 0.45 + 2),
                    textcoords="offset points", fontsize=8, color="black")
    ax.set_xscale("log")
    xs = [max(s.gmacs, 1e-6) for s in stats]
    ax.set_xlim(min(xs) / 3, max(xs) * 6)
    ax.set_ylim(strip - 0.25 * span if unknown else low - 0.2 * span, high + 0.25 * span)
    if unknown:
        boundary = (strip + low) / 2
        ax.axhline(boundary, color="grey", linewidth=0.8, linestyle="--")
        ax.text(max(xs) * 5.5, boundary - 0.04 * span, "no published ImageNet top-1",
                fontsize=8, color="grey", va="top", ha="right")
        ax.set_yticks([t for t in ax.get_yticks() if boundary < t <= high + 0.25 * span])
    ax.set_xlabel("GMACs per image (log scale)")
    ax.set_ylabel("Published ImageNet top-1 (%)")
    ax.set_title(title or "Accuracy vs. compute; bubble area proportional to parameters")
    ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _params_text(params: int) -> str:
    return f"{params / 1e6:.1f}M params" if params >= 1e6 else f"{params / 1e3:.0f}K params"


def _macs_text(macs: int) -> str:
    return f"{macs / 1e9:.2f} GMACs" if macs >= 1e8 else f"{macs / 1e6:.2f} MMACs"


def write_comparison(names, out_dir: str, *, input_size: int | None = None,
                     stem: str = "comparison") -> dict:
    """Measures `names` and writes `{stem}.md`, `{stem}.csv` and `{stem}.png` into `out_dir`.

    Returns:
        {"markdown": path, "csv": path, "chart": path, "stats": [ModelStats, ...]}.
    """
    stats = compare_models(names, input_size=input_size)
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, f"{stem}.{ext}")
             for kind, ext in (("markdown", "md"), ("csv", "csv"), ("chart", "png"))}
    with open(paths["markdown"], "w") as f:
        f.write(to_markdown(stats))
    with open(paths["csv"], "w") as f:
        f.write(to_csv(stats))
    bubble_chart(stats, paths["chart"])
    return {**paths, "stats": stats}


# --- EfficientNet scaling -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ScalingRow:
    """One scaled EfficientNet-B0: what was scaled, the coefficients, and the measured cost."""

    scaling: str
    width: float
    depth: float
    resolution: int
    macs: int
    params: int
    ratio: float  # macs / B0's macs
    blocks: int = 0  # MBConv blocks after ceil(depth * repeats) per stage


def efficientnet_macs(width: float = 1.0, depth: float = 1.0, resolution: int = 224) -> tuple:
    """(MACs, parameters, MBConv blocks) of EfficientNet-B0 scaled by `width`, `depth` and
    `resolution`."""
    model = build_registered("efficientnet_b0", width_coefficient=float(width),
                             depth_coefficient=float(depth),
                             input_shape=(int(resolution), int(resolution), 3))
    blocks = {m.group(0) for m in (re.match(r"stage\d+_block\d+", layer.name) for layer in model.layers)
              if m}
    result = count_macs(model).total, int(model.count_params()), len(blocks)
    del model
    gc.collect()
    return result


def _search(evaluate, start, power, target, *, tolerance, integer=False, max_steps=6):
    """Finds x with evaluate(x) / base ~ target, assuming cost ~ x**power: each step multiplies x
    by (target / ratio)**(1 / power). Returns the best (x, (macs, params, blocks), ratio) seen."""
    x, best, seen = start, None, set()
    for _ in range(max_steps):
        x = int(round(x)) if integer else round(x, 3)
        if x in seen:
            break
        seen.add(x)
        *measured, ratio = evaluate(x)
        if best is None or abs(ratio - target) < abs(best[2] - target):
            best = (x, tuple(measured), ratio)
        if abs(ratio - target) <= tolerance * target:
            break
        x = x * (target / ratio) ** (1.0 / power)
    return best


def efficientnet_scaling(target: float = 2.0, *, base_resolution: int = 224,
                         tolerance: float = 0.03, phi: float = 1.0) -> list:
    """EfficientNet-B0 scaled in one dimension at a time to about `target` x its MACs, and by the
    compound rule with `phi`.

    Each single-dimension coefficient is found by a short search (cost ~ width**2, ~ depth,
    ~ resolution**2, corrected from the measured ratio; depth is stepwise, because each stage has
    ceil(depth * repeats) blocks, so the closest step is kept).

    Args:
        target: the cost ratio to reach, relative to B0 at `base_resolution`.
        base_resolution: B0's input size (224 in the paper).
        tolerance: stop a search when within this relative distance of `target`.
        phi: the compound coefficient (1 roughly doubles the cost).

    Returns:
        `ScalingRow`s: "baseline (B0)", "width only", "depth only", "resolution only",
        "compound (phi=...)", and the compound rule at the nearest multiple of 32 pixels when
        gamma**phi * base_resolution is not one.
    """
    base_macs, base_params, base_blocks = efficientnet_macs(1.0, 1.0, base_resolution)
    rows = [ScalingRow("baseline (B0)", 1.0, 1.0, base_resolution, base_macs, base_params, 1.0,
                       base_blocks)]

    def measured(width=1.0, depth=1.0, resolution=base_resolution):
        macs, params, blocks = efficientnet_macs(width, depth, resolution)
        return macs, params, blocks, macs / base_macs

    searches = (
        ("width only", lambda w: measured(width=w), math.sqrt(target), 2, False),
        ("depth only", lambda d: measured(depth=d), target, 1, False),
        ("resolution only", lambda r: measured(resolution=r), base_resolution * math.sqrt(target),
         2, True),
    )
    for label, evaluate, start, power, integer in searches:
        x, (macs, params, blocks), ratio = _search(evaluate, start, power, target,
                                                   tolerance=tolerance, integer=integer)
        width = x if label == "width only" else 1.0
        depth = x if label == "depth only" else 1.0
        resolution = x if label == "resolution only" else base_resolution
        rows.append(ScalingRow(label, width, depth, resolution, macs, params, ratio, blocks))
    width, depth = COMPOUND_BETA ** phi, COMPOUND_ALPHA ** phi
    resolution = int(round(base_resolution * COMPOUND_GAMMA ** phi))
    macs, params, blocks, ratio = measured(width=width, depth=depth, resolution=resolution)
    rows.append(ScalingRow(f"compound (phi={phi:g})", round(width, 3), round(depth, 3), resolution,
                           macs, params, ratio, blocks))
    # A resolution that is not a multiple of the network's stride (32) rounds every strided map
    # up (258 -> 129, 65, 33, 17, 9): the same rule at the nearest multiple of 32 shows the cost.
    aligned = max(32, int(round(resolution / 32)) * 32)
    if aligned != resolution:
        macs, params, blocks, ratio = measured(width=width, depth=depth, resolution=aligned)
        rows.append(ScalingRow(f"compound (phi={phi:g}), {aligned} px", round(width, 3),
                               round(depth, 3), aligned, macs, params, ratio, blocks))
    return rows


def scaling_markdown(rows) -> str:
    """A Markdown table of `ScalingRow`s."""
    lines = ["| Scaling | Width | Depth | Resolution | Blocks | GMACs | x B0 | Params (M) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.scaling} | {r.width:g} | {r.depth:g} | {r.resolution} | {r.blocks} | "
                     f"{r.macs / 1e9:.3f} | {r.ratio:.2f} | {r.params / 1e6:.2f} |")
    return "\n".join(lines) + "\n"


def scaling_csv(rows) -> str:
    """The `ScalingRow`s as CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["scaling", "width_coefficient", "depth_coefficient", "resolution", "blocks",
                     "macs", "params", "ratio_to_b0"])
    for r in rows:
        writer.writerow([r.scaling, r.width, r.depth, r.resolution, r.blocks, r.macs, r.params,
                         f"{r.ratio:.4f}"])
    return buffer.getvalue()
