"""Export a registered model or a .keras checkpoint as a phone bundle.

    python export/export_model.py mobilenet_v2 --input-size 96 --classes 10 \
        --quantize int8 --calibration fashion_mnist --labels fashion_mnist

The same as `kerascnn export ...`; the bundle goes to export/bundles/<model>/ unless --out says
otherwise. `--help` lists every option.
"""

import sys

from kerascnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
