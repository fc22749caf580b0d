"""Training: recipes, `train` (model.fit with checkpoints, resumable backups and logs), precise BN,
hardware configuration and distribution strategies."""

from kerascnn.training.recipe import RECIPES, Recipe, get_recipe
from kerascnn.training.train import (AtomicCheckpoint, configure_for_hardware, get_strategy,
                                     precise_batchnorm, save_atomically, set_bn_momentum, train)

__all__ = ["AtomicCheckpoint", "RECIPES", "Recipe", "configure_for_hardware", "get_recipe",
           "get_strategy", "precise_batchnorm", "save_atomically", "set_bn_momentum", "train"]
