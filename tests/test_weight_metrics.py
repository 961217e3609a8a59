"""Seed 004's weight-level metrics against plain computations written here: loops over rows and pairs, one model copy
per zeroed row, torch.autograd.functional.jacobian per example; on lenet (conv rows = filters) and mlp."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

from xbench.errors import XbenchError
from xbench.layers import constrained_weights
from xbench.metrics import create_metric
from xbench.metrics.stability import directions
from xbench.models import create_model
from xbench.space import InputSpace

SPACE = InputSpace((0.1307,), (0.3081,))
MODELS = [("lenet", {}), ("mlp", {"shape": "4x300", "init_std": 0.1})]
JAC_LAYERS = {"lenet": (0, 3), "mlp": (0, 1, 2, 3)}  # lenet: conv1 and fc2 (whose path holds every layer kind)


def _model(name, kw, seed=0):
    torch.manual_seed(seed)
    return create_model(name, **kw).eval()


def _data(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return SPACE.to_input(torch.rand(n, 1, 28, 28, generator=g)), torch.randint(0, 10, (n,), generator=g)


def _rows(w):
    return w.detach().reshape(w.shape[0], -1).double().numpy()


def _hidden(model, px):
    """a_l after the activation following each Conv/Linear layer but the last, by walking the children."""
    names = [n for n, m in model.named_children() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]
    out, z, last = {}, SPACE.to_input(px), None
    for n, m in model.named_children():
        z = m(z)
        if n in names:
            last = n
        elif last is not None and isinstance(m, nn.ReLU):
            out[last], last = z, None
    return [out[n] for n in names]


@pytest.mark.parametrize("name,kw", MODELS)
def test_sparsity_and_disentanglement_equal_loops_over_rows(name, kw):
    model = _model(name, kw)
    x, y = _data(1)
    sp = create_metric("weight_sparsity", SPACE, weight_threshold=0.01, row_threshold=0.5)(model, x, y)
    dis_metric = create_metric("disentanglement", SPACE)
    dis = dis_metric(model, x, y)
    for j, (_, w) in enumerate(constrained_weights(model)):
        m = _rows(w)
        rows = [np.sqrt(sum(v * v for v in r)) for r in m]
        assert sp["l11"][0, j] == pytest.approx(np.abs(m).sum(), rel=1e-5)
        assert sp["l21"][0, j] == pytest.approx(sum(rows), rel=1e-5)
        assert sp["mean_abs"][0, j] == pytest.approx(np.abs(m).sum() / m.size, rel=1e-5)
        assert sp["weights_below"][0, j] == pytest.approx((np.abs(m) < 0.01).mean(), abs=1e-6)
        assert sp["rows_below"][0, j] == pytest.approx(np.mean([r < 0.5 for r in rows]), abs=1e-6)
        if len(m) > 300:
            continue
        cos = [np.dot(m[i], m[k]) / (rows[i] * rows[k]) for i in range(len(m)) for k in range(i + 1, len(m))]
        a = np.abs(cos)
        assert dis["mean_abs_cos"][0, j] == pytest.approx(a.mean(), rel=1e-5)
        assert dis["max_abs_cos"][0, j] == pytest.approx(a.max(), rel=1e-5)
        assert dis["frac_le_0.1"][0, j] == pytest.approx((a <= 0.1).mean(), abs=1e-6)
        assert dis["frac_le_0.2"][0, j] == pytest.approx((a <= 0.2).mean(), abs=1e-6)
        assert dis_metric.details["hist_cos"][j].sum() == len(cos)


def _jacobian(f, p):
    """torch.autograd.functional.jacobian, forward mode where its vmap allows (no max-pool), else reverse mode."""
    try:
        return torch.autograd.functional.jacobian(f, p, vectorize=True, strategy="forward-mode")
    except RuntimeError:
        return torch.autograd.functional.jacobian(f, p, vectorize=True)


def _risk(model, x, y):
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


@pytest.mark.parametrize("name,kw", MODELS)
def test_faithfulness_equals_one_model_copy_per_zeroed_row(name, kw):
    model = _model(name, kw)
    x, y = _data(8)
    metric = create_metric("faithfulness", SPACE, batch_size=64)  # small passes: several chunks per layer
    got = metric(model, x, y)
    base = _risk(model, x, y)
    start = 0
    for j, (layer, w) in enumerate(constrained_weights(model)):
        if name == "mlp" and layer in ("fc1", "fc2", "fc3"):  # 300 copies each; fc4, fc5 cover the mlp path
            start += w.shape[0]
            continue
        u = []
        for i in range(w.shape[0]):
            twin = copy.deepcopy(model)
            with torch.no_grad():
                dict(twin.named_modules())[layer].weight[i] = 0
            u.append(_risk(twin, x, y) - base)
        u = np.array(u)
        norms = np.linalg.norm(_rows(w), axis=1)
        mine = metric.details["risk_increase"][start:start + len(u)]
        np.testing.assert_allclose(mine, u, atol=2e-5)
        start += len(u)
        assert got["pearson"][0, j] == pytest.approx(np.corrcoef(u, norms)[0, 1], abs=2e-3)
        # ranks of near-equal risk increases flip with float noise, so the rank formula is checked on the metric's u
        assert got["spearman"][0, j] == pytest.approx(np.corrcoef(rankdata(mine), rankdata(norms))[0, 1], abs=1e-6)


@pytest.mark.parametrize("name,kw", MODELS)
def test_c1_ratios_lipschitz_and_bound_against_loops_and_jacobians(name, kw):
    model = _model(name, kw)
    x, y = _data(3)
    metric = create_metric("stability_c1", SPACE, directions=4, power_iters=100)
    got = metric(model, x, y)
    px = SPACE.to_pixels(x)
    u = directions(x, 4, 0)
    assert torch.allclose(u.norm(dim=2), torch.ones(3, 4))
    for k, r in enumerate((0.01, 0.1, 1.0)):
        ratios = [[(a2 - a1).norm() / r for a1, a2 in zip(_hidden(model, px[i:i + 1]),
                                                          _hidden(model, px[i:i + 1] + r * u[i, d].view(1, 1, 28, 28)))]
                  for i in range(3) for d in range(4)]
        ratios = torch.tensor([[float(v.detach()) for v in row] for row in ratios])  # [pairs, L]
        assert torch.allclose(got[f"max_r{k + 1}"][0], ratios.max(0).values, rtol=1e-3)
        assert torch.allclose(got[f"median_r{k + 1}"][0], ratios.median(0).values, rtol=1e-3) or k == 0
    n_hidden = got["lipschitz"].shape[1]
    for j in JAC_LAYERS[name]:
        sig = max(float(torch.linalg.matrix_norm(_jacobian(
            lambda p: _hidden(model, p)[j].flatten(), px[i:i + 1]).reshape(-1, 784), ord=2)) for i in range(3))
        # power iteration approaches σ_max from below; random N(0, 0.1²) layers have close top singular values
        assert sig * 0.97 <= float(got["lipschitz"][0, j]) <= sig * (1 + 1e-4)
    bound, z, idx = 1 / 0.3081, x[:1], 0  # ∏ operator norms, each from the layer's explicit matrix
    for m in model.children():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and idx < n_hidden:
            lin = (lambda v, m=m: F.linear(v, m.weight)) if isinstance(m, nn.Linear) else (
                lambda v, m=m: F.conv2d(v, m.weight, None, m.stride, m.padding))
            mat = _jacobian(lambda v: lin(v).flatten(), z).reshape(-1, z[0].numel())
            bound *= float(torch.linalg.matrix_norm(mat.detach().double(), ord=2))
            assert float(got["upper_bound"][0, idx]) == pytest.approx(bound, rel=1e-3)
            idx += 1
        z = m(z)
    assert (got["upper_bound"] >= got["lipschitz"] * (1 - 1e-3)).all()
    assert (got["lipschitz"] >= got["max_r1"] * (1 - 1e-3)).all()  # a sampled ratio at a small radius ≤ ‖J‖


@pytest.mark.parametrize("name,kw", MODELS)
def test_c2_ratios_and_pattern_changes_against_per_point_jacobians(name, kw):
    model = _model(name, kw)
    x, y = _data(1)
    got = create_metric("stability_c2", SPACE, directions=3)(model, x, y)
    px = SPACE.to_pixels(x)
    u = directions(x, 3, 0)

    def jac(p, j):
        return _jacobian(lambda q: _hidden(model, q)[j].flatten(), p)

    def pattern(p, j):
        return torch.cat([(a > 0).flatten() for a in _hidden(model, p)[: j + 1]])

    for j in JAC_LAYERS[name]:
        j0 = [jac(px[i:i + 1], j) for i in range(1)]
        for k, r in enumerate((0.01, 0.1, 1.0)):
            ratios, changed = [], []
            for i in range(1):
                p0 = px[i:i + 1]
                for d in range(3):
                    p1 = p0 + r * u[i, d].view(1, 1, 28, 28)
                    ratios.append(float((jac(p1, j) - j0[i]).norm()) / r)
                    changed.append(bool((pattern(p1, j) != pattern(p0, j)).any()))
            assert float(got[f"max_r{k + 1}"][0, j]) == pytest.approx(max(ratios), rel=1e-3, abs=1e-3)
            assert float(got[f"changed_r{k + 1}"][0, j]) == pytest.approx(np.mean(changed))
            if not any(changed):
                assert max(ratios) < 1e-3  # a ReLU net's Jacobian is constant inside an activation region


def test_weight_metrics_refuse_models_without_constrained_layers_and_bad_settings():
    model = nn.Sequential(nn.Flatten()).eval()
    x, y = _data(2)
    for name in ("weight_sparsity", "disentanglement", "faithfulness", "stability_c1", "stability_c2"):
        with pytest.raises(XbenchError, match="Conv/Linear"):
            create_metric(name, SPACE)(model, x, y)
    for name, bad in (("stability_c1", {"radius1": 0}), ("stability_c2", {"radius3": -1}),
                      ("stability_c1", {"norm": "l3"}), ("faithfulness", {"norm": "fro"})):
        with pytest.raises(XbenchError):
            create_metric(name, SPACE, **bad)
