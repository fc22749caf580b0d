"""The model zoo: one family per module. Importing this package registers every model."""

from kerascnn.models import (alexnet, densenet, efficientnet, googlenet, lenet,  # noqa: F401
                             mobilenet, resnet, vgg)
# Segmentation models build on the classifiers above as backbones, so they register after them.
from kerascnn.models import segmentation  # noqa: F401,E402
