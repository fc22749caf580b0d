"""Process settings that must be made before TensorFlow is imported.

TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI, BF16 or AMX
(Intel's recent server parts). On others, such as the 2-core AMD EPYC (AVX2) this project is
developed on, it keeps its own Eigen kernels unless `TF_ENABLE_ONEDNN_OPTS=1` is set before the
import. There the oneDNN kernels train faster (docs/onednn.md, `benchmarks/onednn.py`):

- the main job's MobileNetV2 step (alpha 0.5, 32x32, batch 128): 160 -> 132 ms;
- unet_mobilenet_v2 / deeplabv3_plus_mobilenet_v2 (64x64, batch 32): 297 -> 225 ms and
  319 -> 211 ms.

Our entry points (the `kerascnn` command and the scripts in benchmarks/) call `prefer_onednn()`
first. Importing the package does not: a library should not change the process it is imported
into. In your own scripts, set `TF_ENABLE_ONEDNN_OPTS=1` in the environment or call
`prefer_onednn()` before anything imports TensorFlow.
"""

from __future__ import annotations

import os
import sys

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn() -> bool:
    """Asks TensorFlow for its oneDNN CPU kernels, unless the user has decided.

    Sets `TF_ENABLE_ONEDNN_OPTS=1` when the variable is unset and TensorFlow has not been imported
    yet (afterwards the variable has no effect, so it is left alone). An explicit value, 0
    included, is kept.

    Returns:
        True if this call set the variable.
    """
    if ONEDNN_VARIABLE in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ[ONEDNN_VARIABLE] = "1"
    return True
