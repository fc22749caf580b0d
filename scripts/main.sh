#!/usr/bin/env bash
# The main job, set-up included: builds a model (default mobilenet_v2) and prints its layer
# table, parameter counts and feature maps.
#
# Usage: bash scripts/main.sh [NAME] [--input-size N] [--classes N] [--alpha A]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/kerascnn summary "$@"
