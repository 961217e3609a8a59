"""Models: every registered model builds and names its feature layer; ACNN-Small/Base match the paper's tables."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from xbench.errors import XbenchError
from xbench.models import CHAIN_LAYERS, MODELS, ChainModel, create_model

SHAPES = {"lenet": (1, 28, 28), "acnn_small": (3, 32, 32), "acnn_base": (3, 224, 224), "mlp": (1, 28, 28),
          "tv": (3, 64, 64), "timm": (3, 32, 32)}
NAMES = {"tv": "tv:resnet18", "timm": "timm:resnet18"}


@pytest.mark.parametrize("name", MODELS.list())
def test_every_model_builds_and_names_its_feature_layer(name):
    assert name in SHAPES, "a new model needs an input shape here"
    model = create_model(NAMES.get(name, name), SHAPES[name], num_classes=7).eval()
    x = torch.randn(2, *SHAPES[name])
    assert model(x).shape == (2, 7)
    layer = model.feature_layer
    assert layer and model.get_submodule(layer) is not None
    if isinstance(model, ChainModel):
        chain = model.chain()
        assert [n for n, _ in chain] == [n for n, _ in model.named_children()]
        assert all(isinstance(m, CHAIN_LAYERS) for _, m in chain)


def _convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def _sizes(model, shape):
    sizes, x = [], torch.zeros(1, *shape)
    for name, m in model.chain():
        x = m(x)
        if isinstance(m, nn.Conv2d):
            sizes.append(x.shape[-1])
    return sizes


@pytest.mark.parametrize("shape,channels,sizes", [
    ((1, 28, 28), [8, 24, 288, 864, 2592], [26, 13, 12, 6, 6]),
    ((3, 32, 32), [24, 64, 512, 1536, 4608], [30, 15, 14, 7, 7]),
])
def test_acnn_small_width_one_is_table_4(shape, channels, sizes):
    model = create_model("acnn_small", shape, 10)
    convs = _convs(model)
    assert [c.out_channels for c in convs] == channels
    assert [c.kernel_size[0] for c in convs] == [5, 2, 4, 2, 3]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1]
    assert [c.padding[0] for c in convs] == [1, 0, 1, 0, 1]
    assert _sizes(model, shape) == sizes
    assert [n for n, m in model.chain() if isinstance(m, nn.ReLU)] == ["relu1", "relu3", "relu5"]
    assert isinstance(model.pool, nn.AdaptiveMaxPool2d) and model.fc.in_features == channels[-1]
    assert model.feature_layer == "relu5"


def test_acnn_small_width_multiplier():
    model = create_model("acnn_small", (1, 28, 28), 10, width=0.25)
    assert [c.out_channels for c in _convs(model)] == [2, 6, 72, 216, 648]
    with pytest.raises(XbenchError):
        create_model("acnn_small", (1, 28, 28), 10, width=0)


def test_acnn_base_is_table_5():
    model = create_model("acnn_base", (3, 224, 224), 1000)
    convs = _convs(model)
    assert [c.out_channels for c in convs] == [96, 96, 96, 256, 256, 256, 384, 384, 384, 1024, 1024, 1000]
    assert [c.kernel_size[0] for c in convs] == [10, 1, 3, 3, 1, 3, 3, 1, 3, 3, 1, 1]
    assert [c.stride[0] for c in convs] == [3, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 1]
    assert _sizes(model, (3, 224, 224)) == [75, 75, 37, 35, 35, 17, 15, 15, 7, 5, 5, 5]


def test_lenet_and_mlp_shapes():
    lenet = create_model("lenet", (1, 28, 28), 10)
    assert [m.out_channels for m in _convs(lenet)] == [6, 16] and lenet.fc1.in_features == 256
    assert create_model("lenet", (3, 32, 32), 10).fc1.in_features == 400
    assert isinstance(list(lenet.children())[-1], nn.ReLU)  # the paper's ReLU on the logits
    for shape, widths in [("4x300", [300] * 4), ("3x500", [500] * 3), ("2x1000", [1000] * 2)]:
        mlp = create_model("mlp", (1, 28, 28), 10, shape=shape)
        linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
        assert [m.out_features for m in linears] == widths + [10]
        assert sum(isinstance(m, nn.ReLU) for m in mlp.modules()) == len(widths)


def test_torchvision_model_errors_are_clear():
    with pytest.raises(XbenchError, match="no classifier"):
        create_model("tv:resnet999", (3, 32, 32), 10)
    with pytest.raises(XbenchError, match="colour"):
        create_model("tv:resnet18", (1, 28, 28), 10)
