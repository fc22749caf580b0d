"""The `kerascnn info` and `kerascnn compare` commands.

    kerascnn info NAME [--input-size N] [--batch-size B] [--dtype T]
        parameters, MACs, activation memory, depth and receptive field of one model
    kerascnn compare NAME... [--out DIR] [--input-size N] [--efficientnet-scaling]
        a Markdown + CSV table and a bubble chart (GMACs vs. published top-1, area ~ parameters)

`add_commands(subparsers)` registers both on the main parser of `kerascnn.cli`. Nothing here
imports Keras at module level: the main program imports it (quietly) only after parsing.
"""

from __future__ import annotations

import argparse
import math
import os


def add_commands(subparsers) -> None:
    """Registers the `info` and `compare` subcommands.

    Args:
        subparsers: the object returned by `ArgumentParser.add_subparsers()`; each command sets
            `func`, called with the parsed arguments, returning the exit status.
    """
    p = subparsers.add_parser("info", help="parameters, MACs, activation memory, depth and "
                                           "receptive field of a model")
    p.add_argument("name", metavar="NAME", help="registry name, e.g. resnet50")
    p.add_argument("--input-size", type=int, metavar="N", help="square input of N x N pixels "
                                                                "(default: the model's)")
    p.add_argument("--batch-size", type=int, default=1, metavar="B",
                   help="batch size for the activation memory (default: 1)")
    p.add_argument("--dtype", default="float32", metavar="T",
                   help="activation type for the memory figures (default: float32)")
    p.add_argument("--layers", type=int, default=0, metavar="K",
                   help="also list the K layers with the most MACs")
    p.set_defaults(func=_cmd_info)

    p = subparsers.add_parser("compare", help="compare models: Markdown/CSV table and a bubble "
                                              "chart of GMACs vs. published top-1")
    p.add_argument("names", nargs="+", metavar="NAME", help="registry names")
    p.add_argument("--out", default=".", metavar="DIR",
                   help="folder for comparison.md, comparison.csv and comparison.png "
                        "(default: the current folder)")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="square input of N x N pixels for every model (default: each model's)")
    p.add_argument("--efficientnet-scaling", action="store_true",
                   help="also write efficientnet_scaling.md/.csv: B0 scaled to ~2x MACs by width, "
                        "depth, resolution, and the compound rule (builds about 15 models)")
    p.set_defaults(func=_cmd_compare)


def _format_bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def _format_count(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3f}{unit}"
    return str(n)


def _cmd_info(args) -> int:
    from kerascnn import registry
    from kerascnn.analysis.compare import build_registered
    from kerascnn.analysis.graph import count_paths, depth, weight_layer_count
    from kerascnn.analysis.macs import count_macs
    from kerascnn.analysis.memory import activation_memory
    from kerascnn.analysis.receptive_field import receptive_field

    info = registry.model_info(args.name)
    model = build_registered(info.name, input_size=args.input_size)
    macs = count_macs(model)
    memory = activation_memory(model, batch_size=args.batch_size, dtype=args.dtype)
    fields = receptive_field(model)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    total = int(model.count_params())
    final = fields.final
    shape = "x".join(map(str, model.inputs[0].shape[1:]))
    print(f"{info.name} ({info.family}) at {shape}")
    print(f"  Parameters:          {total:,} ({trainable:,} trainable)")
    print(f"  MACs:                {macs.total:,} ({_format_count(macs.total)}; "
          f"FLOPs = 2 x MACs = {_format_count(macs.flops)})")
    if macs.uncounted:
        names = ", ".join(f"{u.name} ({u.type})" for u in macs.uncounted[:5])
        print(f"  Uncounted layers:    {len(macs.uncounted)}: {names}")
    print(f"  Activation memory:   peak {_format_bytes(memory.peak_bytes)} (at {memory.peak_layer}), "
          f"all outputs {_format_bytes(memory.total_bytes)}; batch {memory.batch_size}, {memory.dtype}")
    print(f"  Depth:               {depth(model)} weight layers on the longest path "
          f"({weight_layer_count(model)} in all)")
    print(f"  Paths:               {count_paths(model):,} input-to-output paths")
    size = "x".join(map(str, final.size)) if final.size else "global"
    note = []
    if final.global_context:
        note.append("plus global context through squeeze-and-excitation gates")
    if not final.aligned:
        note.append("branches disagree in alignment")
    jump = final.jump[0] if final.jump else "-"
    print(f"  Receptive field:     {size} pixels at {final.name} (jump {jump})"
          + (f"; {'; '.join(note)}" if note else ""))
    if args.layers:
        print("  Largest layers by MACs:")
        for entry in sorted(macs.per_layer, key=lambda e: -e.macs)[:args.layers]:
            out = "x".join("?" if d is None else str(d) for d in entry.output_shape[1:])
            print(f"    {entry.name:40s} {entry.type:24s} {out:>14s} {entry.macs:>15,}")
    return 0


def _cmd_compare(args) -> int:
    from kerascnn.analysis.compare import (efficientnet_scaling, scaling_csv, scaling_markdown,
                                           to_markdown, write_comparison)

    result = write_comparison(args.names, args.out, input_size=args.input_size)
    print(to_markdown(result["stats"]))
    print(f"Wrote {result['markdown']}, {result['csv']} and {result['chart']}")
    if args.efficientnet_scaling:
        rows = efficientnet_scaling()
        md = os.path.join(args.out, "efficientnet_scaling.md")
        with open(md, "w") as f:
            f.write(scaling_markdown(rows))
        with open(os.path.join(args.out, "efficientnet_scaling.csv"), "w") as f:
            f.write(scaling_csv(rows))
        print(scaling_markdown(rows))
        print(f"Wrote {md} and efficientnet_scaling.csv")
    return 0


def _standalone_parser() -> argparse.ArgumentParser:
    """A parser with only these two commands (for tests, and until kerascnn.cli registers them)."""
    parser = argparse.ArgumentParser(prog="kerascnn")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser
