"""kerascnn.env: the entry points ask TensorFlow for its oneDNN CPU kernels, and those kernels give
the same models (the suite itself runs with the variable fixed, tests/conftest.py)."""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, **env_changes):
    """Runs `code` in a fresh interpreter (TensorFlow not imported yet) with the environment
    changed as given (None removes a variable); returns its stdout lines."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


CHECK = """
    import os
    from kerascnn.env import prefer_onednn
    print(prefer_onednn(), os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
    from tensorflow.python.util import _pywrap_util_port
    print(_pywrap_util_port.IsMklEnabled())
"""


def test_prefer_onednn_turns_the_kernels_on_when_unset():
    assert run_python(CHECK, TF_ENABLE_ONEDNN_OPTS=None) == ["True", "1", "True"]


def test_prefer_onednn_keeps_the_users_choice():
    assert run_python(CHECK, TF_ENABLE_ONEDNN_OPTS="0") == ["False", "0", "False"]


def test_prefer_onednn_does_nothing_once_tensorflow_is_imported():
    code = "import tensorflow\n" + textwrap.dedent(CHECK)
    # The kernels are then TensorFlow's choice for this CPU, whichever it is.
    assert run_python(code, TF_ENABLE_ONEDNN_OPTS=None)[:2] == ["False", "None"]


def test_the_cli_asks_for_onednn_and_the_package_does_not():
    code = """
        import os
        import kerascnn
        print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
        import kerascnn.cli
        print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
    """
    assert run_python(code, TF_ENABLE_ONEDNN_OPTS=None) == ["None", "1"]


@pytest.mark.parametrize("script", ["segmentation", "step_profile", "train_overhead"])
def test_benchmark_scripts_ask_for_onednn(script):
    """Run as a script: the variable is set before anything imports TensorFlow (checked by
    running the script's --help with TensorFlow's import replaced by a check)."""
    code = f"""
        import os, runpy, sys
        class Check:  # fails the import of tensorflow unless the variable is set by then
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "1":
                    raise ImportError("tensorflow imported before TF_ENABLE_ONEDNN_OPTS was set")
        sys.meta_path.insert(0, Check())
        sys.argv = ["{script}.py", "--help"]
        try:
            runpy.run_path("benchmarks/{script}.py", run_name="__main__")
        except SystemExit:
            pass
        print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"))
    """
    assert run_python(code, TF_ENABLE_ONEDNN_OPTS=None)[-1] == "1"


def test_a_segmentation_model_trains_and_exports_the_same_with_onednn():
    """With oneDNN's kernels a U-Net trains (finite loss that falls on a fixed batch) and its float
    TFLite file matches Keras within 1e-4, as on TensorFlow's own kernels."""
    code = """
        import numpy as np, keras
        import kerascnn
        from tensorflow.python.util import _pywrap_util_port
        from kerascnn.export import TFLiteModel, to_tflite
        print(_pywrap_util_port.IsMklEnabled())
        keras.utils.set_random_seed(0)
        model = kerascnn.build("unet_mobilenet_v2", input_shape=(64, 64, 3), classes=5,
                               alpha=0.35)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (8, 64, 64, 3)).astype("float32")
        y = (x[..., 0] > 0).astype("int32") * 2
        losses = model.fit(x, y, batch_size=8, epochs=12, verbose=0).history["loss"]
        print(bool(np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]))
        got = TFLiteModel(to_tflite(model, "float32"))(x[:2])
        print(float(np.abs(got - model.predict(x[:2], verbose=0)).max()) < 1e-4)
    """
    assert run_python(code, TF_ENABLE_ONEDNN_OPTS="1")[-3:] == ["True", "True", "True"]
