"""Analysis of the zoo's models: what a network costs and what it sees.

    >>> import kerascnn
    >>> from kerascnn import analysis
    >>> model = kerascnn.build("resnet50")
    >>> analysis.count_macs(model).total            # multiply-accumulates per image
    >>> analysis.activation_memory(model).peak_mib  # peak of live activations, batch 1, float32
    >>> analysis.receptive_field(model).final.size  # (483, 483)
    >>> analysis.count_paths(model)                 # 2**16 input-to-output paths
    >>> analysis.conv_output_size(224, 7, strides=2, padding=3)  # 112

- `macs`: MACs per layer type, with the conventions in its docstring; `conv_output_size`.
- `memory`: the sum of all layer outputs and the peak of live tensors during inference.
- `receptive_field`: size, jump and start of every layer's field (Araujo et al., Distill 2019).
- `graph`: the layer graph in execution order (the one module that reads Keras internals),
  path counts and depth in weight layers.
- `feature_maps`: activation grids from early to late layers, and hand-made edge filters.
- `compare`: tables and a bubble chart across models; EfficientNet scaling.

docs/analysis.md has the numbers for the zoo and the commands that reproduce them.
"""

import importlib
import sys
import types

# Public name -> submodule. The submodules import Keras, so they are loaded on first use: the
# command line (kerascnn.analysis.cli) registers its subcommands without importing Keras.
_EXPORTS = {
    "compare": ("ModelStats", "ScalingRow", "compare_models", "efficientnet_scaling",
                "model_stats", "write_comparison"),
    "feature_maps": ("edge_filters", "edge_kernel", "feature_maps"),
    "graph": ("Graph", "GraphNode", "count_paths", "depth", "walk", "weight_layer_count"),
    "macs": ("LayerMacs", "MacCount", "conv_output_size", "count_macs"),
    "memory": ("ActivationMemory", "activation_memory"),
    "receptive_field": ("LayerReceptiveField", "ReceptiveFields", "receptive_field"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'kerascnn.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kerascnn.analysis.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps `kerascnn.analysis.feature_maps` and `.receptive_field` the functions: after loading
    a submodule, the import system sets the package attribute of the same name to the module."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in _WHERE:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
