"""Training: recipes, `train` (model.fit with checkpoints, resumable backups and logs), precise BN,
the fused BN kernel and split-batch steps for training, hardware configuration, distribution strategies, and NumPy
segmentation metrics (`mean_iou`, `error_breakdown`)."""

from kerascnn.training.fused_bn import fused_batchnorm
from kerascnn.training.metrics import confusion_matrix, error_breakdown, iou_per_class, mean_iou
from kerascnn.training.recipe import RECIPES, Recipe, get_recipe
from kerascnn.training.split_batch import split_batch_step
from kerascnn.training.train import (AtomicCheckpoint, configure_for_hardware, get_strategy,
                                     multi_worker_compat, precise_batchnorm, save_atomically,
                                     set_bn_momentum, time_training_step, train)

__all__ = ["AtomicCheckpoint", "RECIPES", "Recipe", "configure_for_hardware", "confusion_matrix",
           "error_breakdown", "fused_batchnorm", "get_recipe", "get_strategy", "iou_per_class",
           "mean_iou", "multi_worker_compat", "precise_batchnorm", "save_atomically",
           "set_bn_momentum", "split_batch_step", "time_training_step", "train"]
