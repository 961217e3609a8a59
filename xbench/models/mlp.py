"""Multi-layer perceptrons in the shapes of the interpretability-framework paper (seed 004): 4×300, 3×500, 2×1000."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..settings import Setting
from .base import MODELS, ChainModel

MLP_SHAPES = {"4x300": (300,) * 4, "3x500": (500,) * 3, "2x1000": (1000,) * 2}


@MODELS.register("mlp")
class MLP(ChainModel):
    """ReLU MLP on flattened images; ``shape`` is one of 4x300 (default), 3x500, 2x1000."""

    settings = {"shape": Setting("4x300", "hidden layers x width", choices=tuple(MLP_SHAPES))}

    def __init__(self, in_channels: int = 1, in_size: int = 28, num_classes: int = 10, *, shape: str):
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_channels * in_size * in_size
        hidden = MLP_SHAPES[shape]
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h)
            layers[f"relu{i}"] = nn.ReLU()
            width = h
        layers[f"fc{len(hidden) + 1}"] = nn.Linear(width, num_classes)
        super().__init__(layers, feature_layer=f"relu{len(hidden)}")
