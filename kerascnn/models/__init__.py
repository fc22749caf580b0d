"""The model zoo: one family per module. Importing this package registers every model."""

from kerascnn.models import efficientnet, mobilenet, resnet  # noqa: F401  (registration side effects)
