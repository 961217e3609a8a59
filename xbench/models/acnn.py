"""ACNN-Small (paper Table 4) and ACNN-Base (paper Table 5): all-convolutional nets, pooling replaced by strided convs."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..settings import Setting
from .base import MODELS, ChainModel

WIDTH = Setting(1.0, "channel width multiplier (1 = the paper's table)", range="(0, inf)")

ACNN_SMALL_CHANNELS = {1: (8, 24, 288, 864, 2592), 3: (24, 64, 512, 1536, 4608)}  # MNIST / CIFAR-10 variants


@MODELS.register("acnn_small")
class ACNNSmall(ChainModel):
    """ACNN-Small: 5 convs (k5 p1, k2 s2, k4 p1, k2 s2, k3 p1), ReLU after 1/3/5, global max pool, linear head.

    ``width`` scales every channel count (1.0 = Table 4 exactly) so CPU runs can shrink it. Grey inputs use the
    MNIST channel list, colour inputs the CIFAR-10 one.
    """

    settings = {"width": WIDTH}

    def __init__(self, in_channels: int = 1, in_size: int = 28, num_classes: int = 10, *, width: float):
        base = ACNN_SMALL_CHANNELS[1 if in_channels == 1 else 3]
        c1, c2, c3, c4, c5 = (max(1, round(c * width)) for c in base)
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, c1, 5, padding=1)), ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(c1, c2, 2, stride=2)),
            ("conv3", nn.Conv2d(c2, c3, 4, padding=1)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(c3, c4, 2, stride=2)),
            ("conv5", nn.Conv2d(c4, c5, 3, padding=1)), ("relu5", nn.ReLU()),
            ("pool", nn.AdaptiveMaxPool2d(1)), ("flatten", nn.Flatten()),
            ("fc", nn.Linear(c5, num_classes)),
        ]), feature_layer="relu5")


ACNN_BASE = (  # (out channels, kernel, stride, padding) per conv, paper Table 5
    (96, 10, 3, 4), (96, 1, 1, 0), (96, 3, 2, 0), (256, 3, 1, 0), (256, 1, 1, 0), (256, 3, 2, 0),
    (384, 3, 1, 0), (384, 1, 1, 0), (384, 3, 2, 0), (1024, 3, 1, 0), (1024, 1, 1, 0), (None, 1, 1, 0))


@MODELS.register("acnn_base")
class ACNNBase(ChainModel):
    """ACNN-Base: 12 convs with ReLU (the last one gives class maps), dropout after conv9, global max pool; 224²."""

    settings = {"width": WIDTH}

    def __init__(self, in_channels: int = 3, in_size: int = 224, num_classes: int = 1000, *, width: float):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = in_channels
        for i, (c, k, s, p) in enumerate(ACNN_BASE, start=1):
            c_out = num_classes if c is None else max(1, round(c * width))
            layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, k, stride=s, padding=p)
            layers[f"relu{i}"] = nn.ReLU()
            if i == 9:
                layers["drop9"] = nn.Dropout(0.5)
            c_in = c_out
        layers["pool"] = nn.AdaptiveMaxPool2d(1)  # the paper's choice (upstream code averages)
        layers["flatten"] = nn.Flatten()
        super().__init__(layers, feature_layer="relu8")  # the paper visualises the 8th layer
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
