"""Any torchvision classifier, ``tv:<name>``, randomly initialised with ``num_classes`` outputs (no downloads)."""
from __future__ import annotations

from torch import nn

from .base import MODELS

# The last conv block before global pooling, per torchvision family (CAM, Grad-CAM).
_FEATURE_LAYERS = {"resnet": "layer4", "resnext": "layer4", "wide_resnet": "layer4", "regnet": "trunk_output",
                   "vgg": "features", "alexnet": "features", "densenet": "features", "mobilenet": "features",
                   "efficientnet": "features", "convnext": "features", "squeezenet": "features",
                   "mnasnet": "layers", "shufflenet": "conv5"}


@MODELS.register("tv", takes_arg=True)
def torchvision_model(name: str, in_channels: int = 3, in_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """A torchvision classifier by name (``tv:resnet18``); colour inputs only; not backtrackable."""
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"torchvision has no classifier {name!r}")
    if in_channels != 3:
        raise ValueError(f"tv:{name} takes colour images; this dataset has {in_channels} channel(s)")
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    model.feature_layer = next((v for k, v in _FEATURE_LAYERS.items() if name.startswith(k)), "")
    return model
