"""LeNet as the Bort paper trains it (upstream ExplainAttr ``lenet.py``), ReLU on the logits included."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .base import MODELS, ChainModel


@MODELS.register("lenet")
class LeNet(ChainModel):
    """LeNet-5: conv 6@5 → pool → conv 16@5 → pool → fc 120 → fc 84 → fc classes → ReLU (paper Table 1)."""

    def __init__(self, in_channels: int = 1, in_size: int = 28, num_classes: int = 10):
        s = in_size // 4 - 3  # 28 → 4, 32 → 5
        if s < 1:
            raise ValueError(f"lenet needs inputs of at least 16 pixels, not {in_size}")
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 6, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(6, 16, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(16 * s * s, 120)), ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(120, 84)), ("relu4", nn.ReLU()),
            ("fc3", nn.Linear(84, num_classes)), ("relu5", nn.ReLU()),  # upstream keeps a ReLU on the logits
        ]), feature_layer="relu2")
