"""Shared pytest setup: quiet TensorFlow's C++ logging and fix its CPU kernels before anything
imports Keras; load the benchmark scripts, which are not a package, as modules."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# Must be set before TensorFlow is first imported (by Keras), or the C++ logs are already on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One choice of TensorFlow's CPU kernels for the whole run: the entry points under test
# (kerascnn.cli, the benchmarks) ask for oneDNN's when the variable is unset, and would otherwise
# switch the kernels of every later test in the same worker. "0" is TensorFlow's own default on
# the CPUs this suite is run on (AVX2, no AVX-512); tests/test_env.py runs the oneDNN path.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def pytest_configure(config):
    # Keras' TensorFlow backend calls np.array() on tf.Variables (keras/src/backend/tensorflow/
    # core.py, e.g. in Model.save); NumPy 2 warns about it once per variable, thousands per run.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.fixture(scope="session")
def load_benchmark():
    """A function that imports benchmarks/<name>.py as a module (once per session) and returns it."""
    def load(name):
        key = f"benchmark_{name}"
        if key not in sys.modules:
            path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
            spec = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
        return sys.modules[key]
    return load
