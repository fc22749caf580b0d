"""Training recipes: the optimizer, schedule, regularisation and BatchNormalization settings that
take a model from scratch to a known accuracy.

A recipe is a frozen dataclass: `dataclasses.replace(recipe, epochs=5)` makes a variant. The
settings that matter most when training from scratch on small data sets are the BN ones:
keras.applications' MobileNets use BN momentum 0.999, so after a few thousand steps the moving
statistics are still far from the data and inference-mode accuracy collapses (10% on
Fashion-MNIST after 5 epochs, see the design notes). Recipes set the momentum to 0.9 and, after
training, re-estimate the statistics over a pass of training batches ("precise BN").
"""

from __future__ import annotations

import dataclasses

OPTIMIZERS = ("sgd", "adamw")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to train.

    Attributes:
        optimizer: "sgd" (Nesterov momentum) or "adamw".
        learning_rate: peak learning rate, reached after the warm-up.
        momentum: SGD momentum.
        weight_decay: decoupled weight decay; BN parameters and biases are excluded.
        epochs: passes over the training data.
        batch_size: global batch size (split across replicas under a distribution strategy).
        warmup_epochs: linear warm-up from 0 to `learning_rate`.
        label_smoothing: cross-entropy label smoothing.
        bn_momentum: BatchNormalization momentum during training (None keeps the model's).
        precise_bn_steps: after training, re-estimate BN statistics over this many training
            batches (0 disables).
        aux_loss_weight: weight of auxiliary classifier losses (GoogLeNet: 0.3 each).
        augment: augmentations for the input pipeline ("flip", "crop", "random_resized_crop").
        mixup_alpha, cutmix_alpha: batch mixing (0 disables).
        mixed_precision: "auto" (mixed_float16 on a GPU), True or False.
        jit_compile: "auto" (XLA on a GPU), True or False.
        fused_bn: "auto" (on the TensorFlow backend), True or False: training-mode
            BatchNormalization runs TensorFlow's fused kernel during `train`
            (`kerascnn.training.fused_bn`; same values, fewer passes over memory).
        batch_splits: "auto" or a positive integer: each training batch runs as this many
            equal parts in one step, side by side on the CPU's cores, with one optimizer update
            (`kerascnn.training.split_batch`; BN normalises each part on its own). "auto" is 2
            on a CPU-only TensorFlow machine with 2 or more cores and batches of 64 or more,
            else 1 (no split).
        progressive_resizing: (fraction, size) pairs: epochs before `fraction` of the run train
            on images resized to `size`, the rest at the data's size
            (`kerascnn.training.progressive`; the model needs input_shape=(None, None, C)).
            Empty: off.
    """

    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    epochs: int = 30
    batch_size: int = 128
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    bn_momentum: float | None = 0.9
    precise_bn_steps: int = 100
    aux_loss_weight: float = 0.3
    augment: tuple = ("flip", "crop")
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mixed_precision: str | bool = "auto"
    jit_compile: str | bool = "auto"
    fused_bn: str | bool = "auto"
    batch_splits: str | int = "auto"
    progressive_resizing: tuple = ()

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {list(OPTIMIZERS)}. "
                             f"Received: optimizer={self.optimizer!r}")
        for name in ("learning_rate", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
        if not isinstance(self.epochs, int) or not isinstance(self.batch_size, int):
            raise ValueError("`epochs` and `batch_size` must be integers. Received: "
                             f"epochs={self.epochs!r}, batch_size={self.batch_size!r}")
        for name in ("weight_decay", "warmup_epochs", "label_smoothing", "mixup_alpha",
                     "cutmix_alpha", "precise_bn_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={getattr(self, name)!r}")
        if self.label_smoothing >= 1:
            raise ValueError(f"`label_smoothing` must be < 1. Received: {self.label_smoothing!r}")
        if self.bn_momentum is not None and not 0 <= self.bn_momentum < 1:
            raise ValueError(f"`bn_momentum` must be in [0, 1) or None. Received: {self.bn_momentum!r}")
        for name in ("mixed_precision", "jit_compile", "fused_bn"):
            if getattr(self, name) not in ("auto", True, False):
                raise ValueError(f"`{name}` must be 'auto', True or False. "
                                 f"Received: {name}={getattr(self, name)!r}")
        from kerascnn.training.progressive import check_schedule

        object.__setattr__(self, "progressive_resizing", check_schedule(self.progressive_resizing))
        splits = self.batch_splits
        if splits != "auto" and (isinstance(splits, bool) or not isinstance(splits, int)
                                 or splits < 1):
            raise ValueError("`batch_splits` must be 'auto' or a positive integer. "
                             f"Received: batch_splits={splits!r}")


# Named starting points. The Fashion-MNIST one is what `kerascnn demo` uses.
RECIPES = {
    "default": Recipe(),
    "cifar_resnet": Recipe(optimizer="sgd", learning_rate=0.1, weight_decay=5e-4 / 2, epochs=60,
                           batch_size=128, label_smoothing=0.0),
    # Measured on this CPU (MobileNetV2 1.0 at 32x32, 60k images, batch 128): after one epoch
    # SGD 0.1 reached 85.6 % test accuracy and 89.2 % after two (of three), where AdamW 2e-3 with
    # label smoothing 0.1 and pad-and-crop had 73.6 % and 79.5 % (of eight). Batch 256 at 0.2
    # with label smoothing 0.1 runs 17 % more images per second but ended lower (91.3 % after 12
    # epochs vs 92.0 % after 10 for MobileNetV2 0.5, output stride 16); see docs/main_job.md.
    # Label smoothing 0.1 is what the 93 % runs at 56x56 and 64x64 used (docs/main_job.md); at
    # 32x32 it scored 91.84 % against 91.63 % without (docs/recipe_search.md).
    "mobilenet_fashion_mnist": Recipe(optimizer="sgd", learning_rate=0.1, weight_decay=5e-5,
                                      epochs=10, batch_size=128, warmup_epochs=0.3,
                                      label_smoothing=0.1, augment=("flip",)),
}


def get_recipe(name_or_recipe="default", **overrides) -> Recipe:
    """A recipe by name (see `RECIPES`) or as given, with fields overridden.

    Raises:
        ValueError: unknown recipe name or bad field value; TypeError: unknown field.
    """
    if isinstance(name_or_recipe, Recipe):
        recipe = name_or_recipe
    elif name_or_recipe in RECIPES:
        recipe = RECIPES[name_or_recipe]
    else:
        raise ValueError(f"Unknown recipe {name_or_recipe!r}. Allowed: {sorted(RECIPES)} or a "
                         "Recipe instance.")
    fields = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"Unknown recipe field(s) {unknown}. Allowed: {sorted(fields)}")
    return dataclasses.replace(recipe, **overrides)
