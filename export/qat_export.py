"""Fine-tune a trained float checkpoint with quantization-aware training, then export the bundle.

    python export/qat_export.py runs/mobilenet_v2/best.keras --data fashion_mnist --steps 300

The same as `kerascnn qat ...`: writes export/bundles/<model>_qat/ (model.keras, float32 and QAT
int8 TFLite files, labels, metadata, report) unless --out says otherwise. `--help` lists every
option.
"""

import sys

from kerascnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["qat", *sys.argv[1:]]))
