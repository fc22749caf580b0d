"""Runs the command-line interface: ``python -m kerascnn ...``."""

import sys

from kerascnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
