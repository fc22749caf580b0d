"""Small helpers shared by the test modules (importable because pytest puts tests/ on sys.path)."""

import numpy as np

import kerascnn


def small_input(name):
    """The smallest input shape a registered model accepts: (min_size, min_size, channels)."""
    info = kerascnn.model_info(name)
    size = info.min_input_size
    return (size, size, info.default_input_shape[-1])


def randomise(model, seed=0):
    """Random weights, BN statistics included (gamma and variance positive), so that a weight
    copied into the wrong layer changes the output."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(0.0, 0.05, w.shape)
        if "gamma" in w.path or "variance" in w.path:
            value = 1.0 + np.abs(value)
        w.assign(value.astype("float32"))
