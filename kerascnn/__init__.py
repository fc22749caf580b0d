"""kerascnn: a Keras 3 zoo of classic and mobile convolutional networks.

Every model is built by name from one registry:

    >>> import kerascnn
    >>> model = kerascnn.build("mobilenet_v2", input_shape=(96, 96, 3), classes=10)
    >>> kerascnn.list_models("resnet*")
    >>> kerascnn.model_info("mobilenet_v2").as_dict()

Importing the package is light: Keras (and its backend) is imported only when the first model is
looked up or built.
"""

__version__ = "0.1.0"

from kerascnn.registry import ModelInfo, build, list_models, model_info, register_model

__all__ = ["ModelInfo", "build", "list_models", "model_info", "register_model", "__version__"]
