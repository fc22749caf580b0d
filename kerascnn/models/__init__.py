"""The model zoo: one family per module. Importing this package registers every model."""

from kerascnn.models import densenet, efficientnet, mobilenet, resnet  # noqa: F401  (registration)
