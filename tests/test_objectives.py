"""Training objectives: every entry against the contract, each attack and penalty against an independent computation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xbench.errors import UnknownNameError, XbenchError
from xbench.models import create_model
from xbench.objectives import OBJECTIVES, create_objective
from xbench.space import InputSpace

SPACE = InputSpace((0.1307,), (0.3081,))
FAST = {"adv-l1": {"steps": 2}, "adv-group": {"steps": 2}, "adv-elastic": {"steps": 2}}


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    model = create_model("lenet").double()
    with torch.no_grad():
        model.fc3.bias.fill_(0.5)
    pixels = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    return model, SPACE.to_input(pixels), torch.tensor([0, 1, 2, 3, 4, 5])


def _grad_pixels(model, x, y):
    pixels = SPACE.to_pixels(x).detach().requires_grad_(True)
    losses = F.cross_entropy(model(SPACE.to_input(pixels)), y, reduction="none")
    (g,) = torch.autograd.grad(losses.sum(), pixels)
    return g, losses.detach()


@pytest.mark.parametrize("name", OBJECTIVES.list())
def test_contract(name, batch):
    model, x, y = batch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    objective = create_objective(name, SPACE, **FAST.get(name, {}))
    loss, logits = objective(model, x, y)
    assert loss.ndim == 0 and torch.isfinite(loss) and logits.shape == (6, 10)
    model.zero_grad()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(XbenchError, match="unknown setting"):
        create_objective(name, SPACE, no_such_setting=1)


def test_erm_is_the_mean_cross_entropy(batch):
    model, x, y = batch
    loss, logits = create_objective("erm")(model, x, y)
    assert torch.equal(logits, model(x)) and torch.allclose(loss, F.cross_entropy(model(x), y))


def test_one_step_l1_attack_is_the_closed_form_dual_step(batch):
    """δ* = ε·sign(∇ₓℓ) in pixel space: an ℓ∞ step of exactly ε per pixel, whatever the input normalisation."""
    model, x, y = batch
    g, _ = _grad_pixels(model, x, y)
    x_adv = create_objective("adv-l1", SPACE, eps=0.1).perturb(model, x, y)
    want = SPACE.to_input(SPACE.to_pixels(x) + 0.1 * g.sign())
    assert torch.allclose(x_adv, want, atol=1e-12)
    assert torch.allclose((SPACE.to_pixels(x_adv) - SPACE.to_pixels(x)).abs().amax(), torch.tensor(0.1).double())


def test_one_step_group_attack_by_loop_over_patches(batch):
    model, x, y = batch
    g, _ = _grad_pixels(model, x, y)
    want = torch.zeros_like(g)
    k, eps = 5, 0.3  # 28 = 5·5 + 3: border patches are 5×3, 3×5 and 3×3
    for i in range(0, 28, k):
        for j in range(0, 28, k):
            patch = g[:, :, i:i + k, j:j + k]
            norm = patch.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            want[:, :, i:i + k, j:j + k] = eps * patch / norm
    x_adv = create_objective("adv-group", SPACE, eps=eps, group=k).perturb(model, x, y)
    assert torch.allclose(SPACE.to_pixels(x_adv) - SPACE.to_pixels(x), want, atol=1e-12)


@pytest.mark.parametrize("name,kw", [("adv-l1", {"eps": 1e-4}), ("adv-group", {"eps": 1e-3, "group": 4}),
                                     ("adv-elastic", {"eps": 1e-4, "eps2": 1e-4})])
def test_one_step_attack_reaches_the_fenchel_dual(batch, name, kw):
    """First order: ℓ(x + δ*) − R(δ*) − ℓ(x) = R*(∇ₓℓ), the dual norm written out here."""
    model, x, y = batch
    g, clean = _grad_pixels(model, x, y)
    objective = create_objective(name, SPACE, **kw)
    x_adv = objective.perturb(model, x, y)
    with torch.no_grad():
        gain = F.cross_entropy(model(x_adv), y, reduction="none") - clean
    flat = g.flatten(1)
    if name == "adv-l1":
        dual = kw["eps"] * flat.abs().sum(1)
    elif name == "adv-group":
        dual = kw["eps"] * g.unfold(2, 4, 4).unfold(3, 4, 4).square().sum((-1, -2)).sqrt().flatten(1).sum(1)
    else:  # ε₁‖g‖₁ + ε₂‖g‖₂², with R(δ*) = ε₂‖g‖₂² subtracted from the gain
        gain = gain - kw["eps2"] * flat.square().sum(1)
        dual = kw["eps"] * flat.abs().sum(1) + kw["eps2"] * flat.square().sum(1)
    assert torch.allclose(gain, dual, rtol=0.02)


def _pgd_by_loop(model, x, y, eps, steps, step):
    """Projected sign ascent in the ℓ∞ ball, one example at a time."""
    out = []
    for i in range(len(x)):
        pixels = SPACE.to_pixels(x[i:i + 1])
        delta = torch.zeros_like(pixels)
        for _ in range(steps):
            d = delta.clone().requires_grad_(True)
            loss = F.cross_entropy(model(SPACE.to_input(pixels + d)), y[i:i + 1])
            (g,) = torch.autograd.grad(loss, d)
            delta = torch.clamp(delta + step * eps * g.sign(), -eps, eps)
        out.append(SPACE.to_input(pixels + delta))
    return torch.cat(out)


def test_iterative_l1_attack_is_projected_sign_ascent(batch):
    model, x, y = batch
    x_adv = create_objective("adv-l1", SPACE, eps=0.2, steps=4, step=0.4).perturb(model, x, y)
    assert torch.allclose(x_adv, _pgd_by_loop(model, x, y, 0.2, 4, 0.4), atol=1e-10)
    g, clean = _grad_pixels(model, x, y)
    with torch.no_grad():
        assert (F.cross_entropy(model(x_adv), y, reduction="none") > clean).all()


def test_iterative_group_attack_stays_in_its_balls(batch):
    model, x, y = batch
    x_adv = create_objective("adv-group", SPACE, eps=0.5, group=7, steps=5).perturb(model, x, y)
    delta = SPACE.to_pixels(x_adv) - SPACE.to_pixels(x)
    norms = delta.unfold(2, 7, 7).unfold(3, 7, 7).square().sum((-1, -2)).sqrt()
    assert norms.max() <= 0.5 + 1e-9 and norms.max() > 0.49  # the ascent reaches the boundary


@pytest.mark.parametrize("name,dual", [
    ("adv-penalty-l1", lambda g: 0.1 * g.flatten(1).abs().sum(1)),
    ("adv-penalty-group", lambda g: 0.4 * g.unfold(2, 4, 4).unfold(3, 4, 4).square().sum((-1, -2)).sqrt()
     .flatten(1).sum(1)),
    ("adv-penalty-elastic", lambda g: 0.05 * g.flatten(1).abs().sum(1) + 0.01 * g.flatten(1).square().sum(1))])
def test_penalty_is_the_dual_norm_of_the_input_gradient(batch, name, dual):
    model, x, y = batch
    g, clean = _grad_pixels(model, x, y)
    loss, _ = create_objective(name, SPACE)(model, x, y)
    assert torch.allclose(loss, clean.mean() + dual(g).mean(), rtol=1e-9)


def test_penalty_gradient_equals_finite_differences(batch):
    """The double backward is right: d(loss)/d(one weight) against a central difference."""
    model, x, y = batch
    objective = create_objective("adv-penalty-l1", SPACE, eps=0.5)
    model.zero_grad()
    objective(model, x, y)[0].backward()
    w = model.fc2.weight
    h = 1e-6
    values = []
    for shift in (h, -2 * h, h):
        with torch.no_grad():
            w[3, 7] += shift
        values.append(objective(model, x, y)[0].item())
    up, down = values[:2]
    assert abs(w.grad[3, 7].item() - (up - down) / (2 * h)) <= 1e-5 * max(1.0, abs(w.grad[3, 7].item()))


def test_attacks_leave_batch_norm_statistics_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 3))
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 3, (8,))
    before = model[1].running_mean.clone()
    create_objective("adv-l1", steps=3).perturb(model, x, y)
    assert torch.equal(model[1].running_mean, before)
    create_objective("adv-l1", steps=3)(model, x, y)  # the training pass itself does update them
    assert not torch.equal(model[1].running_mean, before)


@pytest.mark.parametrize("bad,match", [({"eps": -0.1}, "eps=-0.1 is out of range"), ({"eps": float("nan")},
                                        "not finite"), ({"steps": 0}, "steps=0 is out of range")])
def test_bad_settings_are_one_line_errors(bad, match):
    with pytest.raises(XbenchError, match=match):
        create_objective("adv-l1", SPACE, **bad)
    with pytest.raises(UnknownNameError, match="did you mean adv-l1"):
        create_objective("adv-l2", SPACE)
