#!/usr/bin/env bash
# Runs the test suite in the project's virtual environment, setting it up first if needed.
#
# Usage: bash scripts/run_tests.sh [PYTEST ARGS...]     e.g. -m "not slow", -k mobilenet
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# Two workers (the CI machine has 2 cores); each model's generic checks stay on one worker.
exec .venv/bin/python -m pytest -q -ra -n 2 --dist loadgroup "$@"
