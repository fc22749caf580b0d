"""The models are backend-agnostic Keras 3: they build and run on JAX without TensorFlow.

Keras picks its backend once per process, so the JAX check runs in a subprocess with
KERAS_BACKEND=jax.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

JAX_SCRIPT = textwrap.dedent("""
    import sys

    import numpy as np

    import keras
    import kerascnn

    assert keras.backend.backend() == "jax", keras.backend.backend()
    cases = [  # (name, build arguments, output shape)
        ("mobilenet_v2", dict(alpha=0.35, input_shape=(32, 32, 3), classes=10), (2, 10)),
        ("mobilenet_v3_small", dict(input_shape=(32, 32, 3), classes=10), (2, 10)),
        ("resnet20_cifar", dict(input_shape=(32, 32, 3)), (2, 10)),
        ("resnet50_v2", dict(input_shape=(32, 32, 3), classes=10), (2, 10)),
    ]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    for name, kwargs, shape in cases:
        model = kerascnn.build(name, **kwargs)
        # predict() runs the model under jax.jit: faster than op-by-op eager dispatch here.
        y = model.predict(x, verbose=0)
        print(name, y.shape, flush=True)
        assert y.shape == shape, (name, y.shape)
        assert np.all(np.isfinite(y)), name
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5, err_msg=name)
        loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
        assert not loaded, f"building {name} imported TensorFlow: {loaded[:5]}"
    print("backend", keras.backend.backend())
    print("OK")
""")


def test_models_build_and_run_on_jax_without_tensorflow():
    """mobilenet_v2/v3, a CIFAR ResNet and a ResNetV2 build and run on the JAX backend, and
    nothing under kerascnn.models/blocks imports TensorFlow (DESIGN.md section 3)."""
    pytest.importorskip("jax", reason="jax is not installed in this interpreter; "
                                      "the JAX backend check needs it")
    env = dict(os.environ, KERAS_BACKEND="jax",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("JAX_PLATFORMS", "cpu")
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (f"JAX subprocess failed (exit {result.returncode})\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-5000:]}")
    assert result.stdout.splitlines()[-2:] == ["backend jax", "OK"], result.stdout
