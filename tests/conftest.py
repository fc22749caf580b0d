"""Shared pytest setup: quiet TensorFlow's C++ logging before anything imports Keras."""

import os

# Must be set before TensorFlow is first imported (by Keras), or the C++ logs are already on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_configure(config):
    # Keras' TensorFlow backend calls np.array() on tf.Variables (keras/src/backend/tensorflow/
    # core.py, e.g. in Model.save); NumPy 2 warns about it once per variable, thousands per run.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
