#!/usr/bin/env bash
# Runs the test suite in the project's virtual environment, setting it up first if needed.
#
# Usage: bash scripts/run_tests.sh [PYTEST ARGS...]     e.g. -k mobilenet
#
# Tests marked `slow` (multi-GB conversions of the VGG16 FCNs) are left out unless the arguments
# choose markers themselves: `bash scripts/run_tests.sh -m ""` runs everything,
# `bash scripts/run_tests.sh -m slow` only them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# Two workers (the CI machine has 2 cores); each model's generic checks stay on one worker.
markers=(-m "not slow")
for arg in "$@"; do
    if [ "$arg" = "-m" ] || [[ "$arg" == -m?* ]]; then
        markers=()
    fi
done
# A crashed worker (e.g. killed for memory) ends the run instead of leaving it waiting:
# with --dist loadgroup, a restarted worker was seen to hang the whole session.
exec .venv/bin/python -m pytest -q -ra -n 2 --dist loadgroup --max-worker-restart=0 "${markers[@]}" "$@"
