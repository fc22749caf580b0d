"""Regenerates the model table in README.md from the registry.

Builds every registered model at its defaults (``weights=None``), counts its parameters and writes
a Markdown table between the ``<!-- model-table -->`` and ``<!-- /model-table -->`` markers.

Usage:
    .venv/bin/python scripts/model_table.py           # rewrite README.md in place
    .venv/bin/python scripts/model_table.py --check   # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout even without an installed package

from kerascnn import cli, registry  # noqa: E402  (cli sets TF_CPP_MIN_LOG_LEVEL first)

BEGIN, END = "<!-- model-table -->", "<!-- /model-table -->"


def model_table() -> str:
    """The Markdown table of all registered models, one row each, in natural name order."""
    import keras

    rows = ["| Model | Family | Default input | Parameters | Published top-1 (%) | Source |",
            "|---|---|---|---:|---|---|"]
    for name in sorted(registry.list_models(), key=cli.natural_key):
        info = registry.model_info(name)
        params = cli.build_model(name).count_params()
        keras.backend.clear_session()  # keep memory flat across ~20 large models
        source = str(info.published_accuracy.get("source", "")).replace("|", "\\|")
        rows.append(f"| `{name}` | {info.family} | {'x'.join(map(str, info.default_input_shape))} "
                    f"| {params:,} | {cli.published_top1(info)} | {source} |")
    return "\n".join(rows)


def replace_table(text: str, table: str) -> str:
    """Returns `text` with the content between the markers replaced by `table`.

    Raises:
        ValueError: if the markers are missing or out of order.
    """
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md must contain {BEGIN} followed by {END}.")
    return f"{text[:start + len(BEGIN)]}\n{table}\n{text[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when README.md is out of date")
    parser.add_argument("--readme", type=pathlib.Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)

    cli.import_keras_quietly()
    text = args.readme.read_text(encoding="utf-8")
    new_text = replace_table(text, model_table())
    if args.check:
        if new_text != text:
            print(f"{args.readme} model table is out of date; run: "
                  f".venv/bin/python scripts/model_table.py", file=sys.stderr)
            return 1
        print(f"{args.readme} model table is up to date.")
        return 0
    if new_text != text:
        args.readme.write_text(new_text, encoding="utf-8")
        print(f"Updated the model table in {args.readme}.")
    else:
        print(f"{args.readme} model table was already up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
