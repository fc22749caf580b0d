#!/usr/bin/env bash
# The main job, set-up included: trains mobilenet_v2 on Fashion-MNIST (offline), fine-tunes it with
# quantization-aware training, writes the phone bundle to export/bundles/mobilenet_v2/ and prints
# accuracy, size and latency of every TFLite variant.
#
# Usage: bash scripts/main.sh [--model NAME] [--epochs N] [--data SOURCE] [--out DIR] ...
#        (all flags: .venv/bin/kerascnn demo --help)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/kerascnn demo "$@"
