"""The DC split (xbench/dc.py) against the model itself, against the pair rules written out, and its monotonicity."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from conftest import pair_layer
from xbench.dc import DCSplit, Split
from xbench.errors import XbenchError
from xbench.models import ChainModel, create_model

# (name, input shape, model kwargs): every model family the split promises; small widths/inputs keep it fast
MODELS = [("lenet", (1, 28, 28), {}), ("mlp", (1, 28, 28), {}), ("acnn_small", (1, 28, 28), {"width": 0.25}),
          ("acnn_base", (3, 128, 128), {"width": 0.1}), ("tv:resnet18", (3, 32, 32), {})]


def _model(name, shape, kw):
    torch.manual_seed(0)
    model = create_model(name, shape, 10, **kw).double().eval()
    for m in model.modules():  # non-trivial batch-norm statistics, so folding is really tested
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(-1.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize("name,shape,kw", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("recenter", ["none", "threshold"])
def test_g_minus_h_reproduces_the_logits_in_float64(name, shape, kw, recenter):
    model = _model(name, shape, kw)
    x = torch.randn(2, *shape, dtype=torch.float64)
    out = DCSplit(model, recenter=recenter)(x).out
    g, h = out.pos, out.neg
    assert (g >= 0).all() and (h >= 0).all()
    rel = ((g - h) - model(x)).abs().max() / model(x).abs().max()
    if recenter == "none" and name in ("acnn_small", "acnn_base", "tv:resnet18"):
        # without recentring the common mode grows like the product of |W| (~1e7 on acnn_small, ~1e23 on
        # resnet18): g and h are then too large for g − h to keep the logits' digits; that is why it exists
        assert g.abs().max() > 1e5 * model(x).abs().max()
    else:
        assert rel <= 1e-9, f"{name}: relative error {rel:.2e}"


def _bumped(split, shape, n_examples=32):
    """g, h at random pairs, and at the same pairs with one coordinate of a⁺ (then of a⁻) raised by 0.5."""
    gen = torch.Generator().manual_seed(1)
    p, n = (torch.rand(n_examples, *shape, generator=gen, dtype=torch.float64) for _ in range(2))
    bump = torch.zeros(n_examples, p[0].numel(), dtype=torch.float64)
    bump[torch.arange(n_examples), torch.randint(0, bump.shape[1], (n_examples,), generator=gen)] = 0.5
    bump = bump.view_as(p)
    base = split(Split.of_pair(p, n)).out
    return p, n, base, [split(Split.of_pair(p + bump, n)).out, split(Split.of_pair(p, n + bump)).out]


@pytest.mark.parametrize("name,shape,kw,relu", [(*m, "max") for m in MODELS] + [(*MODELS[0], "min"),
                                                                                 (*MODELS[1], "half")],
                         ids=[f"{m[0]}-max" for m in MODELS] + ["lenet-min", "mlp-half"])
def test_g_and_h_are_monotone_in_the_input_pair(name, shape, kw, relu):
    model = _model(name, shape, kw)
    split = DCSplit(model, relu=relu)  # maxpool "dc", no recentring: the construction itself
    p, n, base, raised = _bumped(split, shape, 32 if shape[0] == 1 else 12)
    for up in raised:
        for new, old in ((up.pos, base.pos), (up.neg, base.neg)):
            assert (new - old >= -1e-9 * old.abs().max()).all()
    if relu == "max":  # Theorem 1: g and h are convex (midpoint test on a random segment)
        q = torch.rand(p.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        ends = [split(Split.of_pair(a, n)).out for a in (p, q)]
        mid = split(Split.of_pair((p + q) / 2, n)).out
        for part in ("pos", "neg"):
            chord = (getattr(ends[0], part) + getattr(ends[1], part)) / 2
            assert (getattr(mid, part) <= chord + 1e-9 * chord.abs().max()).all()


def test_winner_take_all_pooling_is_not_monotone():
    """The same test catches wta max pooling (exact for f, but g and h jump when the winner changes)."""
    split = DCSplit(_model("lenet", (1, 28, 28), {}), maxpool="wta")
    _, _, base, raised = _bumped(split, (1, 28, 28), 128)
    assert any(bool((up.pos - base.pos < -1e-6).any()) for up in raised)


@pytest.mark.parametrize("name,shape,kw", MODELS[:4], ids=[m[0] for m in MODELS[:4]])
@pytest.mark.parametrize("relu,maxpool", [("max", "dc"), ("min", "wta"), ("half", "dc")])
def test_every_layer_follows_the_written_out_pair_rules(name, shape, kw, relu, maxpool):
    if name == "acnn_base":
        shape, kw = (3, 128, 128), {"width": 0.05}
    model = _model(name, shape, kw)
    x = torch.randn(2, *shape, dtype=torch.float64)
    names = [n for n, _ in model.chain()]
    out = DCSplit(model, relu=relu, maxpool=maxpool)(x, keep=tuple(names))
    p, n = x.clamp(min=0), (-x).clamp(min=0)
    for layer, m in model.chain():
        p, n = pair_layer(m, p, n, relu, maxpool)
        got = out.kept[layer]
        scale = (p.abs().max() + n.abs().max()).clamp(min=1e-300)
        assert ((got.pos - p).abs().max() / scale) < 1e-12, layer
        assert ((got.neg - n).abs().max() / scale) < 1e-12, layer


def test_batch_norm_is_folded_into_the_conv_before_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).double().eval()
    bn = model[1]
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(-2, 2)
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    out = DCSplit(model)(x, keep=("1",)).kept["1"]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Conv2d(2, 4, 3).double()
    folded.weight.data = model[0].weight * scale.view(-1, 1, 1, 1)
    folded.bias.data = (model[0].bias - bn.running_mean) * scale + bn.bias
    p, n = pair_layer(folded, x.clamp(min=0), (-x).clamp(min=0), "max", "dc")
    assert torch.allclose(out.pos, p, atol=1e-12) and torch.allclose(out.neg, n, atol=1e-12)


def test_unsupported_layers_and_training_mode_are_named():
    bad = ChainModel(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("act", nn.LeakyReLU()), ("flat", nn.Flatten())]),
                     feature_layer="act")
    bad.act = nn.GELU()  # swapped in after the chain check
    with pytest.raises(XbenchError, match=r"layer 'act' \(GELU\).*not supported"):
        DCSplit(bad)

    class Cat(nn.Module):
        def forward(self, x):
            return torch.cat([x, x], 1)

    with pytest.raises(XbenchError, match="operation 'cat'"):
        DCSplit(Cat())
    model = create_model("tv:resnet18", (3, 32, 32), 10)
    with pytest.raises(XbenchError, match="eval"):
        DCSplit(model)(torch.randn(1, 3, 32, 32))
    with pytest.raises(XbenchError, match="relu="):
        DCSplit(model.eval(), relu="maxx")


def test_recentring_removes_the_common_mode_and_keeps_g_minus_h():
    model = _model("lenet", (1, 28, 28), {})
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    plain = DCSplit(model)(x, keep=("relu3",))
    always = DCSplit(model, recenter="always")(x, keep=("relu3",))
    a = always.kept["relu3"]
    assert torch.equal(a.d, plain.kept["relu3"].d) and torch.allclose(a.s, a.d.abs())
    assert torch.allclose(always.out.pos - always.out.neg, plain.out.d, atol=1e-12)
