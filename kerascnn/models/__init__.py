"""The model zoo: one family per module. Importing this package registers every model."""

from kerascnn.models import (alexnet, densenet, efficientnet, googlenet, lenet,  # noqa: F401
                             mobilenet, resnet, vgg)
