"""backtrack.py: g against autograd with a guided ReLU, batched maps against one map at a time."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from xbench.backtrack import Backtracker, one_hot_maps, top_channels
from xbench.errors import XbenchError
from xbench.models import ChainModel, create_model


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes the gradient only where input > 0 and gradient > 0 (paper A.4)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * ((a > 0) & (g > 0))


def _autograd_g(model, layer, x, s):
    """Guided backprop from ``layer`` by autograd: the independent reference for g."""
    x = x.clone().requires_grad_(True)
    h = x
    for name, m in model.chain():
        h = _GuidedReLU.apply(h) if isinstance(m, nn.ReLU) else m(h)
        if name == layer:
            break
    (grad,) = torch.autograd.grad(h, x, grad_outputs=s)
    return grad


def _odd_model():
    """Strides that leave a remainder, padding, a max pool with padding, a dense tail: the awkward cases."""
    return ChainModel(OrderedDict([
        ("conv1", nn.Conv2d(2, 5, 3, stride=2, padding=1)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
        ("conv2", nn.Conv2d(5, 7, 2, stride=2)), ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(7 * 2 * 2, 6)), ("relu3", nn.ReLU()),
    ]), feature_layer="relu2")


CASES = [
    ("lenet", (1, 28, 28), {}, "relu2"),
    ("lenet", (1, 28, 28), {}, "relu4"),
    ("acnn_small", (1, 28, 28), {"width": 0.1}, "relu5"),
    ("acnn_small", (3, 32, 32), {"width": 0.05}, "relu5"),
    ("mlp", (1, 28, 28), {"shape": "2x1000"}, "relu2"),
    ("odd", (2, 19, 19), {}, "relu3"),
]


@pytest.mark.parametrize("name,shape,kw,layer", CASES)
def test_g_equals_guided_backprop_by_autograd(name, shape, kw, layer):
    torch.manual_seed(0)
    model = _odd_model() if name == "odd" else create_model(name, shape, 10, **kw)
    model.eval()
    x = torch.randn(3, *shape)
    bt = Backtracker(model, layer)
    z, trace = bt.forward(x)
    s = torch.randn_like(z)
    assert torch.allclose(bt.backward(s, trace), _autograd_g(model, layer, x, s), atol=1e-5)


def test_several_maps_per_image_equal_one_at_a_time():
    torch.manual_seed(0)
    model = create_model("acnn_small", (1, 28, 28), 10, width=0.1).eval()
    x = torch.randn(3, 1, 28, 28)
    bt = Backtracker(model)
    z, trace = bt.forward(x)
    s = torch.randn(3, 4, *z.shape[1:])  # 4 maps per image
    batched = bt.backward(s.flatten(0, 1), trace).view(3, 4, 1, 28, 28)
    for i in range(3):
        _, single = bt.forward(x[i:i + 1])
        for j in range(4):
            assert torch.allclose(batched[i, j], bt.backward(s[i, j:j + 1], single)[0], atol=1e-6)


def test_transpose_rule_is_eq_4_on_a_linear_layer():
    """Without ReLUs g is Wᵀ: for orthonormal rows, g(W z) = z projected on the row space."""
    layer = nn.Linear(8, 3, bias=True)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(8, 3))
        layer.weight.copy_(q.T)
    model = ChainModel(OrderedDict(fc=layer), feature_layer="fc")
    z = torch.randn(2, 8)
    s = z @ layer.weight.T  # no bias: Eq. 4
    assert torch.allclose(Backtracker(model, "fc")(s, z), z @ q @ q.T, atol=1e-6)


def test_one_hot_and_top_channels():
    z = torch.zeros(2, 4, 3, 3)
    z[0, 2, 1, 1] = 5.0
    z[0, 0, 0, 2] = 3.0
    z[1, 3, 2, 0] = 7.0
    z[1, 1, 1, 1] = 1.0
    values, channels, positions = top_channels(z, 2)
    assert channels.tolist() == [[2, 0], [3, 1]] and values.tolist() == [[5.0, 3.0], [7.0, 1.0]]
    assert positions.tolist() == [[4, 2], [6, 4]]
    maps = one_hot_maps((4, 3, 3), channels, positions, 10.0)
    assert maps.shape == (4, 4, 3, 3) and maps.sum() == 40.0 and maps[2, 3, 2, 0] == 10.0
    _, ch, _ = top_channels(z, 2, exclude_border=True)  # channel 0 and 3 peak on the border
    assert ch[0, 0] == 2 and ch[1, 0] == 1
    assert top_channels(z, 99)[1].shape == (2, 4)  # k capped at the channel count


def test_non_chain_models_and_unknown_layers_are_clear_errors():
    with pytest.raises(XbenchError, match="chain model"):
        Backtracker(create_model("tv:resnet18", (3, 32, 32), 10))
    with pytest.raises(XbenchError, match="not in the chain"):
        Backtracker(create_model("lenet"), "conv9")


@pytest.mark.parametrize("name,shape,kw,layer", CASES + [("acnn_small", (1, 28, 28), {"width": 0.1}, "conv4")])
@pytest.mark.parametrize("relu", ["guided", "plain", "none"])
def test_one_hot_shortcut_equals_dense_backward(name, shape, kw, layer, relu):
    torch.manual_seed(0)
    model = _odd_model() if name == "odd" else create_model(name, shape, 10, **kw)
    model.eval()
    x = torch.randn(3, *shape)
    bt = Backtracker(model, layer, relu=relu)
    z, trace = bt.forward(x)
    z4 = z if z.ndim == 4 else z[:, :, None, None]
    values, channels, positions = top_channels(z4, 5)
    dense = bt.backward(one_hot_maps(z4.shape[1:], channels, positions, 7.0).view(-1, *z.shape[1:]), trace)
    fast = bt.backward_one_hot(trace, z.shape[1:], channels, positions, 7.0)
    assert torch.allclose(fast, dense, atol=1e-5)
