"""The model registry: one name per architecture, with what a user needs to know about it.

A registry entry is a small function that calls its family builder; `register_model` records it
together with a `ModelInfo`. `build(name, **kwargs)` looks the name up and calls the builder, so
every model in the zoo is reached the same way:

    >>> import kerascnn
    >>> model = kerascnn.build("mobilenet_v2", input_shape=(96, 96, 3), classes=10)
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
from typing import Callable, Mapping

TASKS = ("classification", "segmentation")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw pixels in [0, 255] become the model's input: ``x * scale + offset`` per channel.

    Attributes:
        scale: multiplier per channel (a tuple with one value per channel).
        offset: added after scaling, per channel.
        channels: number of input channels the model expects (1 or 3).
        channel_order: "RGB", "BGR" (keras.applications' Caffe-style ResNets) or "L" (grayscale).
        mode: a short name for the convention ("tf", "torch", "caffe", "unit").
    """

    scale: tuple
    offset: tuple
    channels: int = 3
    channel_order: str = "RGB"
    mode: str = "tf"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _per_channel(value, channels):
    return tuple(float(value) for _ in range(channels)) if not isinstance(value, tuple) else value


def preprocessing_tf(channels: int = 3) -> Preprocessing:
    """Inputs in [-1, 1]: the MobileNet / Inception convention."""
    return Preprocessing(_per_channel(1 / 127.5, channels), _per_channel(-1.0, channels),
                         channels, "RGB" if channels == 3 else "L", "tf")


def preprocessing_torch() -> Preprocessing:
    """ImageNet mean/std normalisation on [0, 1] inputs (torchvision's convention)."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return Preprocessing(tuple(1 / (255.0 * s) for s in std),
                         tuple(-m / s for m, s in zip(mean, std)), 3, "RGB", "torch")


def preprocessing_caffe() -> Preprocessing:
    """BGR order with the ImageNet mean subtracted, no scaling (keras.applications ResNet v1)."""
    bgr_mean = (103.939, 116.779, 123.68)
    return Preprocessing((1.0, 1.0, 1.0), tuple(-m for m in bgr_mean), 3, "BGR", "caffe")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model.

    Attributes:
        name: registry key (the builder function's name).
        family: architecture family, e.g. "mobilenet", "resnet".
        task: "classification" or "segmentation".
        paper: title and link of the paper that introduced the architecture.
        default_input_shape: (height, width, channels) the published model uses.
        min_input_size: smallest height/width the architecture accepts.
        preprocessing: how pixels in [0, 255] are turned into the model's input.
        published_accuracy: e.g. {"imagenet_top1": 71.8, "source": "..."}; empty when unknown.
        keras_applications: name of the keras.applications counterpart, if there is one.
        builder: the function that builds the model.
    """

    name: str
    family: str
    task: str
    paper: str
    default_input_shape: tuple
    min_input_size: int
    preprocessing: Preprocessing
    published_accuracy: Mapping = dataclasses.field(default_factory=dict)
    keras_applications: str | None = None
    builder: Callable | None = dataclasses.field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "builder"}
        data["preprocessing"] = self.preprocessing.as_dict()
        data["published_accuracy"] = dict(self.published_accuracy)
        return data


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(*, family: str, paper: str, default_input_shape=(224, 224, 3),
                   min_input_size: int = 32, preprocessing: Preprocessing | None = None,
                   task: str = "classification", published_accuracy: Mapping | None = None,
                   keras_applications: str | None = None):
    """Decorator that registers a model builder under its function name.

    Raises:
        ValueError: if the name is already registered or the task is unknown.
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}. Received: task={task!r}")

    def decorator(fn):
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"A model named {name!r} is already registered "
                             f"(by {_REGISTRY[name].builder.__module__}).")
        _REGISTRY[name] = ModelInfo(
            name=name, family=family, task=task, paper=paper,
            default_input_shape=tuple(default_input_shape), min_input_size=int(min_input_size),
            preprocessing=preprocessing or preprocessing_tf(default_input_shape[-1]),
            published_accuracy=dict(published_accuracy or {}),
            keras_applications=keras_applications, builder=fn)
        return fn

    return decorator


def _ensure_loaded():
    # Importing the model modules runs their @register_model decorators.
    from kerascnn import models  # noqa: F401


def _lookup(name: str) -> ModelInfo:
    _ensure_loaded()
    if not isinstance(name, str):
        raise TypeError(f"A model name must be a string. Received: {name!r} of type {type(name).__name__}")
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown model name {name!r}.{hint} "
                     f"`kerascnn.list_models()` lists the {len(_REGISTRY)} registered models.")


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Sorted registry names matching a shell-style wildcard pattern, optionally for one task.

    Example:
        >>> kerascnn.list_models("mobilenet*")
        ['mobilenet_v1', 'mobilenet_v2', 'mobilenet_v3_large', 'mobilenet_v3_small']
    """
    _ensure_loaded()
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be None or one of {TASKS}. Received: task={task!r}")
    return sorted(n for n, info in _REGISTRY.items()
                  if fnmatch.fnmatchcase(n, pattern.lower()) and (task is None or info.task == task))


def model_info(name: str) -> ModelInfo:
    """The `ModelInfo` of a registered model. Raises ValueError for an unknown name."""
    return _lookup(name)


def build(name: str, **kwargs):
    """Builds a registered model by name.

    Args:
        name: a registry key from `list_models()`.
        **kwargs: keyword arguments of that model's builder (input_shape, classes, alpha, ...).

    Returns:
        A `keras.Model`.

    Raises:
        ValueError: unknown name (with the closest names) or a bad argument value.
        TypeError: an argument the builder does not take.
    """
    info = _lookup(name)
    params = inspect.signature(info.builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise TypeError(f"{info.name}() got unexpected keyword argument(s) {unknown}. "
                        f"Allowed: {sorted(params)}")
    return info.builder(**kwargs)
