"""What every xbench model offers: a named feature layer and, for chain models, the layer chain for backtracking."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..registry import Registry

MODELS: Registry = Registry("model")

# Layers backtrack.py knows how to invert; a chain made only of these can be traced back to the input.
CHAIN_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.LeakyReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d,
                nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)


class ChainModel(nn.Sequential):
    """A model that is a plain chain of named layers (Conv/Linear/ReLU/pool/flatten).

    ``feature_layer`` names the last conv block before global pooling (CAM, Grad-CAM and SAT read it);
    ``chain()`` lists the layers in forward order so backtracking can walk them in reverse.
    """

    feature_layer: str = ""

    def __init__(self, layers: "OrderedDict[str, nn.Module]", feature_layer: str):
        super().__init__(layers)
        bad = [n for n, m in layers.items() if not isinstance(m, CHAIN_LAYERS)]
        if bad:
            raise TypeError(f"layers {bad} cannot be backtracked")
        if feature_layer not in layers:
            raise ValueError(f"feature layer {feature_layer!r} is not a layer of this model")
        self.feature_layer = feature_layer

    def chain(self) -> list[tuple[str, nn.Module]]:
        return list(self.named_children())


def conv_out(size: int, k: int, s: int = 1, p: int = 0) -> int:
    return (size + 2 * p - k) // s + 1
