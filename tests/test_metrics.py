"""Every registered metric against the contract; each against an independent computation."""
from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from xbench.backtrack import Backtracker
from xbench.errors import XbenchError
from xbench.layers import orthogonality_error
from xbench.metrics import METRICS, create_metric
from xbench.metrics.perturbation import blur, pixel_order
from xbench.metrics.synthesis import partners
from xbench.models import ChainModel, create_model
from xbench.space import InputSpace

SPACE = InputSpace((0.1307,), (0.3081,))


@pytest.fixture(scope="module")
def setting(tiny_run):
    from xbench.train import load_run

    _, runs = tiny_run
    model, data, _ = load_run(runs[1]["run_dir"])
    x, y = data.inputs("heldout", range(6))
    maps = torch.randn(6, 28, 28, generator=torch.Generator().manual_seed(0))
    return model, data.space, x, y, maps


@pytest.mark.parametrize("name", METRICS.list())
def test_contract(name, setting):
    model, space, x, y, maps = setting
    metric = create_metric(name, space)
    explain = None
    if metric.needs_explainer:
        from xbench.interpreters import create_interpreter

        explain = create_interpreter("guided_backprop", model, space).attribute
    scores = metric(model, x, y, maps if metric.needs_maps else None, explain=explain)
    assert set(scores) == set(metric.score_directions())
    for v in scores.values():
        rows = 1 if not metric.needs_data or metric.pooled else len(x)
        assert v.shape[0] == rows and v.dtype == torch.float32
        if metric.level == "layer":
            assert v.shape[1] == len(metric.layer_names) > 0
        assert torch.isfinite(v).any()
    protocol = metric.protocol(tuple(x.shape[1:]))
    json.dumps(protocol)
    assert metric.key(tuple(x.shape[1:])) == create_metric(name, space).key(tuple(x.shape[1:]))
    assert metric.category in ("faithfulness", "invertibility", "decomposition", "robustness", "complexity",
                               "weights")
    with pytest.raises(XbenchError, match="unknown setting"):
        create_metric(name, space, nonsense=1)
    model.train()
    try:
        with pytest.raises(XbenchError, match="eval"):
            metric(model, x, y, maps)
    finally:
        model.eval()
    if metric.needs_maps:
        with pytest.raises(XbenchError, match="maps"):
            metric(model, x, y, None)


# --------------------------------------------------------------------------------------- deletion / insertion
def _loop_curve(model, x, m, mode, step, substrate, score="softmax"):
    """The protocol written out: one image, one step at a time."""
    c, h, w = x.shape
    order = sorted(range(h * w), key=lambda i: (-float(m.flatten()[i]), i))  # descending, ties by index
    with torch.no_grad():
        cls = int(model(x[None]).argmax(1))
    cur = (x if mode == "deletion" else substrate).clone()
    goal = substrate if mode == "deletion" else x
    points = [0]
    while points[-1] < h * w:
        points.append(min(points[-1] + step, h * w))
    curve = []
    for k, n in enumerate(points):
        if k:
            for i in order[points[k - 1]:n]:
                cur[:, i // w, i % w] = goal[:, i // w, i % w]
        with torch.no_grad():
            out = model(cur[None])[0]
        curve.append(float(out.softmax(0)[cls] if score == "softmax" else out[cls]))
    return np.array(curve), np.array(points) / (h * w)


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("step", [7, 40])  # 784/40 leaves a partial last step
def test_perturbation_equals_the_plain_loop(setting, mode, step):
    model, space, x, y, maps = setting
    maps = maps.round(decimals=0)  # many ties, to check the tie-break
    metric = create_metric(mode, space, step=step, batch_size=100)
    auc = metric(model, x, y, maps)[mode]
    for i in range(len(x)):
        sub = torch.zeros_like(x[i]) if mode == "deletion" else blur(x[i:i + 1])[0]
        curve, frac = _loop_curve(model, x[i], maps[i], mode, step, sub)
        assert np.allclose(metric.details["curves"][i], curve, atol=1e-6)
        assert np.allclose(metric.details["fractions"], frac)
        assert abs(float(auc[i]) - np.trapezoid(curve, frac)) < 1e-6


@pytest.mark.parametrize("name", ["deletion", "insertion", "srg"])
def test_curve_points_that_change_nothing_reuse_the_clean_pass(setting, name):
    """The clean image goes through the model once per image (the pass that fixes the class), not again as a
    curve point: B + B·K·(P − 1) inputs for K orders of P points."""
    model, space, x, y, maps = setting
    seen = []
    hook = model.register_forward_pre_hook(lambda mod, args: seen.append(len(args[0])))
    try:
        metric = create_metric(name, space, step=98)  # 784 / 98: P = 9 points
        metric(model, x, y, maps)
    finally:
        hook.remove()
    k = 2 if name == "srg" else 1
    assert sum(seen) == len(x) * (1 + k * 8)


def test_upstream_variant_normalises_by_the_clean_logit_and_averages(setting):
    model, space, x, y, maps = setting
    metric = create_metric("deletion", space, step=50, score="logit_normalized", auc="mean")
    auc = metric(model, x, y, maps)["deletion"]
    curve, _ = _loop_curve(model, x[0], maps[0], "deletion", 50, torch.zeros_like(x[0]), score="logit")
    assert abs(float(auc[0]) - (curve / curve[0]).mean()) < 1e-5


def test_constant_model_and_oracle_maps():
    class Constant(nn.Module):
        def forward(self, x):
            return torch.tensor([[0.0, 1.0, 2.0]]).expand(len(x), 3)

    x = torch.rand(3, 1, 8, 8)
    const = create_metric("deletion", step=5)(Constant().eval(), x, None, torch.rand(3, 8, 8))["deletion"]
    p = torch.tensor([0.0, 1.0, 2.0]).softmax(0)[2]
    assert torch.allclose(const, p.expand(3), atol=1e-6)

    patch = torch.zeros(8, 8, dtype=torch.bool)
    patch[2:5, 3:6] = True
    lin = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        lin[1].weight.zero_()
        lin[1].weight[1, patch.flatten()] = 3.0
        lin[1].bias.copy_(torch.tensor([2.0, 0.0]))
    x = torch.rand(4, 1, 8, 8) * 0.2
    x[:, :, patch] = 1.0
    oracle = patch.float().expand(4, 8, 8) + 0.01 * torch.rand(4, 8, 8)
    rand = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(3))
    lin.eval()
    for mode, better in (("deletion", lambda a, b: a < b), ("insertion", lambda a, b: a > b)):
        metric = create_metric(mode, step=2, substrate="zero")
        a, b = metric(lin, x, None, oracle)[mode], metric(lin, x, None, rand)[mode]
        assert better(a, b).all() and (a >= 0).all() and (a <= 1).all()


def test_pixel_order_is_stable_and_blur_has_zero_padding():
    m = torch.tensor([[[1.0, 3.0], [3.0, 0.0]]])
    assert pixel_order(m).tolist() == [[2, 0, 1, 3]]  # ties (the two 3s) keep index order
    img = torch.ones(1, 1, 32, 32)
    b = blur(img)
    assert torch.allclose(b[0, 0, 16, 16], torch.tensor(1.0), atol=1e-5) and b[0, 0, 0, 0] < 0.5


# ---------------------------------------------------------------------------------------------- model metrics
def test_recon_ratio_is_eq_4_checked_by_autograd(setting):
    model, space, x, y, _ = setting
    metric = create_metric("recon_ratio", space)
    ratios = metric(model, x, y)["recon_ratio"]
    z = x
    col = 0
    for name, m in model.chain():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            zz = z.clone().requires_grad_(True)
            s = (nn.functional.conv2d(zz, m.weight, None, m.stride, m.padding) if isinstance(m, nn.Conv2d)
                 else zz @ m.weight.T)
            (z_hat,) = torch.autograd.grad(s, zz, grad_outputs=s.detach())  # Wᵀ(Wz) as a vector-Jacobian product
            ref = (z - z_hat).flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1)
            assert metric.layer_names[col] == name
            assert torch.allclose(ratios[:, col], ref, rtol=1e-4)
            col += 1
        with torch.no_grad():
            z = m(z)
    assert col == len(metric.layer_names)


def test_recon_ratio_is_zero_for_orthonormal_rows_on_their_row_space():
    q, _ = torch.linalg.qr(torch.randn(10, 4))
    fc = nn.Linear(10, 4)
    with torch.no_grad():
        fc.weight.copy_(q.T)
    model = ChainModel(OrderedDict(flatten=nn.Flatten(), fc=fc), feature_layer="fc").eval()
    z = (torch.randn(3, 4) @ q.T).view(3, 1, 2, 5)
    assert create_metric("recon_ratio")(model, z, None)["recon_ratio"].abs().max() < 1e-5


def test_gram_statistics(setting):
    model, space, x, y, _ = setting
    metric = create_metric("gram")
    s = metric(model, x, y)
    for j, (name, m) in enumerate((n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))):
        w = m.weight.detach().reshape(m.weight.shape[0], -1).double().numpy()
        g = w @ w.T
        off = g[~np.eye(len(g), dtype=bool)]
        assert metric.layer_names[j] == name
        assert np.isclose(s["diag_mean"][0, j], np.diag(g).mean(), rtol=1e-5)
        assert np.isclose(s["offdiag_std"][0, j], off.std(), rtol=1e-4, atol=1e-7)
        assert np.isclose(s["ortho_error"][0, j], float(orthogonality_error(m.weight)), rtol=1e-5)
        assert metric.details["hist_diag"][j].sum() == len(g)
    q, _ = torch.linalg.qr(torch.randn(6, 3))
    fc = nn.Linear(6, 3)
    with torch.no_grad():
        fc.weight.copy_(q.T)
    ortho = create_metric("gram")(nn.Sequential(fc).eval(), x, y)
    assert ortho["ortho_error"].abs().max() < 1e-5 and abs(float(ortho["diag_mean"][0, 0]) - 1) < 1e-5


def test_decomposition_backtracks_k_binary_variables(setting):
    model, space, x, y, _ = setting
    metric = create_metric("decomposition", space, k=8)
    s = metric(model, x, y)
    bt = Backtracker(model)
    for i in range(len(x)):  # written out: one image, the k one-hots summed in one map
        z, trace = bt.forward(x[i:i + 1])
        top = z[0].flatten(1).max(1).values.topk(8).indices
        z0 = torch.zeros_like(z)
        for c in top.tolist():
            z0[0, c].view(-1)[z[0, c].flatten().argmax()] = 1.0
        rec = bt.backward(z0, trace).flatten()
        img = space.to_pixels(x[i:i + 1]).flatten()
        ref = np.corrcoef(rec.numpy(), img.numpy())[0, 1]
        assert abs(float(s["correlation"][i]) - ref) < 1e-4
    assert ((s["silhouette"] >= -1) & (s["silhouette"] <= 1) | s["silhouette"].isnan()).all()


def test_synthesis_pairs_and_scores(setting):
    model, space, x, y, _ = setting
    assert partners(torch.tensor([1, 1, 2, 1])).tolist() == [2, 2, 3, 2]
    assert partners(torch.tensor([4, 4])).tolist() == [-1, -1]
    metric = create_metric("synthesis", space, k=16)
    s = metric(model, x, y)
    assert set(s["fooling"][~s["fooling"].isnan()].tolist()) <= {0.0, 1.0}
    adv = metric.details["adversarial"]
    assert adv.min() >= 0 and adv.max() <= 1 and adv.shape[1:] == x.shape[1:]
