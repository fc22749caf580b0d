#!/usr/bin/env bash
# Sets up the project's virtual environment at .venv in the repository root. Idempotent: the venv
# is created once and the pip step re-runs only when pyproject.toml is newer than the stamp file.
#
# Usage: bash scripts/setup.sh      (PYTHON=python3.11 bash scripts/setup.sh to pick the interpreter)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.kerascnn-installed"
PYTHON="${PYTHON:-python3}"
TF_REQUIREMENT="tensorflow-cpu==2.21.0"

# --- Debian packages --------------------------------------------------------------------------
# System packages the project needs: the offline Fashion-MNIST files (the default data set), and
# a JDK with JUnit and Gson for the Android demo's core module tests.
DEBIAN_PACKAGES=(dataset-fashion-mnist default-jdk-headless junit4 libgoogle-gson-java)

install_debian_packages() {
    if [ "${#DEBIAN_PACKAGES[@]}" -eq 0 ]; then
        return 0
    fi
    local missing=() pkg
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "setup: Debian packages present: ${DEBIAN_PACKAGES[*]}"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: not root, skipping apt-get; please install: ${missing[*]}" >&2
        return 0
    fi
    echo "setup: apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}
# ----------------------------------------------------------------------------------------------

install_debian_packages

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating virtual environment $VENV ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv "$VENV"
else
    echo "setup: virtual environment $VENV exists"
fi

if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    echo "setup: pip install $TF_REQUIREMENT -e .[test] (a few minutes on a fresh machine)"
    (cd "$ROOT" && "$VENV/bin/python" -m pip install -q "$TF_REQUIREMENT" -e ".[test]")
    touch "$STAMP"
else
    echo "setup: packages up to date (delete $STAMP to reinstall)"
fi
