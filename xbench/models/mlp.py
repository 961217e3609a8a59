"""Multi-layer perceptrons in the shapes of the interpretability-framework paper (seed 004): 4×300, 3×500, 2×1000."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..settings import Setting
from .base import MODELS, ChainModel

MLP_SHAPES = {"4x300": (300,) * 4, "3x500": (500,) * 3, "2x1000": (1000,) * 2}


@MODELS.register("mlp")
class MLP(ChainModel):
    """ReLU MLP on flattened images; ``shape`` is one of 4x300 (default), 3x500, 2x1000.

    ``init_std`` σ draws every weight from N(0, σ²) and sets the biases to 0 (seed 004 / dlADMM start: σ = 0.1);
    none keeps PyTorch's default initialisation.
    """

    settings = {"shape": Setting("4x300", "hidden layers x width", choices=tuple(MLP_SHAPES)),
                "init_std": Setting(None, "weights ~ N(0, σ²) and zero biases (seed 004: 0.1); none = PyTorch's "
                                          "default", float, range="(0, inf)", optional=True)}

    def __init__(self, in_channels: int = 1, in_size: int = 28, num_classes: int = 10, *, shape: str,
                 init_std: float | None = None):
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_channels * in_size * in_size
        hidden = MLP_SHAPES[shape]
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h)
            layers[f"relu{i}"] = nn.ReLU()
            width = h
        layers[f"fc{len(hidden) + 1}"] = nn.Linear(width, num_classes)
        super().__init__(layers, feature_layer=f"relu{len(hidden)}")
        if init_std is not None:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, init_std)
                    nn.init.zeros_(m.bias)
