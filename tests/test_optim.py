"""The Bort optimizer against autograd, plain torch optimizers, upstream's update order and closed-form limits."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from xbench.errors import XbenchError
from xbench.optim import BASELINES, OPTIMIZERS, Bort, bort_delta, create_optimizer, is_bort, param_groups

SHAPES = [(3, 7), (7, 3), (4, 2, 3, 3), (20, 2, 3, 3)]  # Linear wide/tall, Conv wide/tall (as out × in·k·k)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("a", [1.0, 2.5])
def test_l2_delta_is_the_gradient_of_the_frobenius_penalty(shape, a):
    w = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    m = w.reshape(shape[0], -1)
    penalty = 0.25 * (m @ m.T - a * torch.eye(shape[0], dtype=torch.float64)).square().sum()
    (grad,) = torch.autograd.grad(penalty, w)
    assert torch.allclose(bort_delta(w.detach(), "l2", a), grad, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
def test_l1_delta_is_the_subgradient_of_the_l1_penalty(shape):
    w = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    m = w.reshape(shape[0], -1)
    penalty = 0.5 * (m @ m.T - torch.eye(shape[0], dtype=torch.float64)).abs().sum()
    (grad,) = torch.autograd.grad(penalty, w)
    assert torch.allclose(bort_delta(w.detach(), "l1", 1.0), grad, atol=1e-10)


def test_ada_amplitude_is_squared_mean_row_norm():
    w = torch.randn(5, 9, dtype=torch.float64)
    a = w.norm(dim=1).mean() ** 2
    assert torch.allclose(bort_delta(w, "l2", "ada"), bort_delta(w, "l2", float(a)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _run(opt_name, steps=20, model=None, **kw):
    torch.manual_seed(0)
    model = model or Net()
    opt = create_optimizer(opt_name, model, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 2, 6, 6, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt


def _lamb(*args, **kw):
    from timm.optim import Lamb

    return Lamb(*args, **kw)


@pytest.mark.parametrize("bort,base,kw", [
    ("bort-s", torch.optim.SGD, dict(lr=0.05, weight_decay=0.01, momentum=0.9)),
    ("bort-a", torch.optim.AdamW, dict(lr=0.01, weight_decay=0.01)),
    ("bort-l", _lamb, dict(lr=0.01, weight_decay=0.01)),
])
def test_lambda_zero_is_bit_identical_to_plain_torch(bort, base, kw):
    ours, _ = _run(bort, bort_lambda=0.0, **kw)
    torch.manual_seed(0)
    ref_model = Net()
    wd = kw.pop("weight_decay")
    ref = base(param_groups(ref_model, wd), **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        x = torch.randn(8, 2, 6, 6, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        ref.zero_grad()
        nn.functional.cross_entropy(ref_model(x), y).backward()
        ref.step()
    for p, q in zip(ours.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS.list() if is_bort(n)])
def test_every_bort_optimizer_at_lambda_zero_is_its_registered_baseline(name):
    assert set(BASELINES) == {n for n in OPTIMIZERS.list() if is_bort(n)}
    base = BASELINES[name]
    kw = {k: v for k, v in dict(lr=0.02, weight_decay=0.01, momentum=0.9).items() if k in OPTIMIZERS.settings(base)}
    ours, _ = _run(name, bort_lambda=0.0, **kw)
    ref, _ = _run(base, **kw)
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_bort_l_is_lamb_after_a_decoupled_bort_step():
    """One step written out: p ← p − lr·λ·Δ(p) on the constrained weights, then timm's Lamb on the result."""
    from timm.optim import Lamb

    lr, lam = 0.01, 0.1
    ours, _ = _run("bort-l", steps=1, lr=lr, weight_decay=0.01, bort_lambda=lam)
    torch.manual_seed(0)
    ref = Net()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 2, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
    nn.functional.cross_entropy(ref(x), y).backward()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("weight"):
                p -= lr * lam * bort_delta(p, "l2", 1.0)
    Lamb(param_groups(ref, 0.01), lr=lr).step()
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-7)


def test_bort_s_follows_upstream_order():
    """grad + λΔ, then + wd·p, then momentum, then p −= lr·buf — written out by hand on the constrained group."""
    lr, wd, mom, lam = 0.05, 0.01, 0.9, 0.1
    model, _ = _run("bort-s", steps=5, lr=lr, weight_decay=wd, momentum=mom, bort_lambda=lam)
    torch.manual_seed(0)
    ref = Net()
    bufs = {}
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(8, 2, 6, 6, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        ref.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        with torch.no_grad():
            for name, p in ref.named_parameters():
                constrained = name.endswith("weight")
                d = p.grad.clone()
                if constrained:
                    d = d + lam * bort_delta(p, "l2", 1.0)
                    d = d + wd * p
                bufs[name] = d if name not in bufs else mom * bufs[name] + d
                p -= lr * bufs[name]
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("name", ["bort-s", "bort-a"])  # bort-l: the same decoupled step as bort-a
@pytest.mark.parametrize("out,inp", [(2, 6), (6, 2)])
def test_zero_task_loss_converges_to_orthonormal(name, out, inp):
    torch.manual_seed(0)
    layer = nn.Linear(inp, out, bias=False)
    opt = create_optimizer(name, layer, lr=0.1, weight_decay=0.0, bort_lambda=1.0)
    for _ in range(10_000):
        opt.zero_grad()
        (layer(torch.ones(1, inp)).sum() * 0).backward()
        opt.step()
    w = layer.weight.detach()
    gram = w @ w.T if out <= inp else w.T @ w  # WWᵀ = I for wide W; WᵀW = I for tall W
    assert torch.allclose(gram, torch.eye(min(out, inp)), atol=1e-3)


def test_biases_are_not_constrained():
    torch.manual_seed(0)
    model = Net()
    bias = model.fc.bias.detach().clone()
    opt = create_optimizer("bort-s", model, lr=0.1, bort_lambda=1.0)
    for _ in range(10):
        opt.zero_grad()
        (model(torch.randn(2, 2, 6, 6)).sum() * 0).backward()
        opt.step()
    assert torch.equal(model.fc.bias, bias)
    assert not torch.equal(model.fc.weight, Net().fc.weight)


@pytest.mark.parametrize("name", OPTIMIZERS.list())
def test_state_dict_round_trip(name):
    """Save after 5 steps, load into a fresh optimizer, continue: the same as never stopping."""
    mom = {"momentum": 0.9} if "momentum" in OPTIMIZERS.settings(name) else {}
    full, _ = _run(name, steps=10, lr=0.01, weight_decay=0.01, **mom)
    half, opt = _run(name, steps=5, lr=0.01, weight_decay=0.01, **mom)
    model2 = copy.deepcopy(half)
    opt2 = create_optimizer(name, model2, lr=0.5, weight_decay=0.3)  # wrong settings, overwritten by the load
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.param_groups[0]["weight_decay"] == 0.01
    g = torch.Generator().manual_seed(1)
    for i in range(10):
        x = torch.randn(8, 2, 6, 6, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        if i < 5:
            continue
        opt2.zero_grad()
        nn.functional.cross_entropy(model2(x), y).backward()
        opt2.step()
    for p, q in zip(full.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_works_under_an_lr_scheduler():
    torch.manual_seed(0)
    model = Net()
    opt = create_optimizer("bort-s", model, lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(6):
        opt.zero_grad()
        model(torch.randn(2, 2, 6, 6)).sum().backward()
        opt.step()
        sched.step()
        lrs.append(opt.base.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.1, 0.05, 0.05, 0.025, 0.025, 0.0125])
    assert isinstance(opt, Bort) and opt.param_groups is opt.base.param_groups


def test_settings_are_validated():
    model = Net()
    with pytest.raises(XbenchError):
        create_optimizer("bort-s", model, lr=-1)
    with pytest.raises(XbenchError):
        create_optimizer("bort-s", model, lr=0.1, bort_amplitude=-2)
    with pytest.raises(XbenchError):
        create_optimizer("bort-s", model, lr=0.1, bort_mode="l3")
    opt = create_optimizer("bort-s", model, lr=0.1, bort_amplitude=-1)  # upstream's spelling of adaptive
    assert opt.param_groups[0]["bort_amplitude"] == "ada"
