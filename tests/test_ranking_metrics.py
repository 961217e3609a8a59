"""MoRF/LeRF/srg from one curve engine, ROAD's imputation, road, baselines — against independent computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import lil_matrix
from scipy.sparse.linalg import spsolve

from xbench.errors import XbenchError
from xbench.metrics import create_metric
from xbench.metrics.imputation import impute
from xbench.models import create_model
from xbench.space import InputSpace

SPACE = InputSpace((0.1307,), (0.3081,))
# ROAD's neighbors_weights: ((dy, dx), weight)
ROAD_WEIGHTS = [((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
                ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6)]


def scipy_impute(img: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """ROAD's NoisyLinearImputer (noise off) written out: one sparse system per image, scipy's spsolve."""
    c, h, w = img.shape
    flat, rem = img.reshape(c, -1).astype(np.float64), removed.reshape(-1)
    idx = np.flatnonzero(rem)
    var = -np.ones(h * w, dtype=int)
    var[idx] = np.arange(len(idx))
    a, b = lil_matrix((len(idx), len(idx))), np.zeros((len(idx), c))
    for e, i in enumerate(idx):
        y0, x0 = divmod(int(i), w)
        total = 0.0
        for (dy, dx), wt in ROAD_WEIGHTS:
            y, x = y0 + dy, x0 + dx
            if 0 <= y < h and 0 <= x < w:
                total += wt
                j = y * w + x
                if rem[j]:
                    a[e, var[j]] = -wt
                else:
                    b[e] += wt * flat[:, j]
        a[e, e] = total
    out = flat.copy()
    out[:, idx] = spsolve(a.tocsc(), b).reshape(len(idx), c).T
    return out.reshape(c, h, w)


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    model = create_model("lenet", (1, 28, 28), 10).eval()
    x = SPACE.to_input(torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    maps = torch.randn(3, 28, 28, generator=torch.Generator().manual_seed(2)).round()  # ties on purpose
    return model, x, maps


def test_imputation_equals_scipy_per_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 12, 10, generator=g)
    removed = torch.rand(4, 1, 12, 10, generator=g) < torch.tensor([0.1, 0.5, 0.9, 0.0]).view(4, 1, 1, 1)
    removed[3, 0, 2:9, 3:8] = True  # one big hole
    out = impute(x, removed)
    for i in range(4):
        ref = scipy_impute(x[i].numpy(), removed[i, 0].numpy())
        assert np.abs(out[i].numpy() - ref).max() <= 1e-4
    assert torch.equal(out[~removed.expand_as(x)], x[~removed.expand_as(x)])  # kept pixels untouched
    single = torch.cat([impute(x[i:i + 1], removed[i:i + 1]) for i in range(4)])  # nothing batch-global
    assert (single - out).abs().max() <= 1e-5
    everything = impute(x[:1], torch.ones(1, 1, 12, 10, dtype=torch.bool))
    assert torch.equal(everything, torch.zeros_like(everything))  # no kept pixel: 0 (+ noise)


@pytest.mark.parametrize("h, w", [(64, 64), (37, 50)])
def test_imputation_of_large_smooth_holes_equals_scipy(h, w):
    """The hard case: MoRF of a smooth map leaves one hole covering most of the image (condition number ~1e4),
    where float32 CG alone stalls ~1e-3 away; odd sizes exercise the multigrid's uneven coarsening."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 2, h, w, generator=g)
    smooth = torch.nn.functional.interpolate(torch.rand(3, 1, 3, 3, generator=g), size=(h, w), mode="bilinear")
    removed = smooth > smooth.flatten(1).quantile(torch.tensor([0.5, 0.1, 0.02]), dim=1).diagonal().view(3, 1, 1, 1)
    out = impute(x, removed)
    for i in range(3):
        assert np.abs(out[i].numpy() - scipy_impute(x[i].numpy(), removed[i, 0].numpy())).max() <= 1e-4


def test_multigrid_preconditioner_is_symmetric_positive_definite():
    """CG stays exact only with an SPD preconditioner: Pᵀ is the transpose of P, and the V-cycle is SPD."""
    from xbench.metrics import imputation as imp
    g = torch.Generator().manual_seed(4)
    for n in (10, 11):
        c, f = torch.rand(2, 3, n, generator=g, dtype=torch.float64), torch.rand(2, 3, 2 * n - n % 2, dtype=torch.float64)
        pc = imp._prolong_1d(c, -1, f.shape[-1])
        assert torch.allclose((pc * f).sum(), (c * imp._restrict_1d(f, -1)).sum())
    r = (torch.rand(2, 1, 30, 27, generator=g) < 0.7).double()
    levels = imp._hierarchy(r)
    a, b = r * torch.randn(2, 2, 1, 30, 27, generator=g, dtype=torch.float64)
    va, vb = imp._vcycle(levels, a), imp._vcycle(levels, b)
    assert torch.allclose((va * b).sum((1, 2, 3)), (a * vb).sum((1, 2, 3)))
    assert bool(((va * a).sum((1, 2, 3)) > 0).all())


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_lerf_is_morf_of_the_negated_map(lenet, mode):
    model, x, maps = lenet
    lerf = create_metric(mode, SPACE, order="lerf", step=30)
    morf = create_metric(mode, SPACE, order="morf", step=30)
    a, b = lerf(model, x, None, maps)[mode], morf(model, x, None, -maps)[mode]
    assert torch.equal(a, b)
    assert lerf.key((1, 28, 28)) != morf.key((1, 28, 28))


@pytest.mark.parametrize("substrate", ["zero", "noisy_linear"])
def test_srg_is_lerf_minus_morf_from_separate_runs(lenet, substrate):
    model, x, maps = lenet
    kw = dict(step=40, substrate=substrate, noise=0.0)
    srg = create_metric("srg", SPACE, **kw)(model, x, None, maps)
    morf = create_metric("deletion", SPACE, order="morf", **kw)(model, x, None, maps)["deletion"]
    lerf = create_metric("deletion", SPACE, order="lerf", **kw)(model, x, None, maps)["deletion"]
    assert torch.allclose(srg["morf"], morf, atol=1e-6) and torch.allclose(srg["lerf"], lerf, atol=1e-6)
    assert torch.allclose(srg["srg"], lerf - morf, atol=1e-6)


def _road_loop(model, x, m, percentages, fill):
    """ROAD written out for one image: per percentage and order, remove, fill, score the clean prediction."""
    h, w = x.shape[-2:]
    with torch.no_grad():
        cls = int(model(x[None]).argmax(1))
    flat = m.flatten().tolist()
    morf = sorted(range(h * w), key=lambda i: (-flat[i], i))
    lerf = sorted(range(h * w), key=lambda i: (flat[i], i))
    out = []
    for order in (morf, lerf):
        scores = []
        for p in percentages:
            removed = torch.zeros(h * w, dtype=torch.bool)
            removed[order[:int(h * w * p / 100)]] = True
            img = fill(x, removed.view(h, w))
            with torch.no_grad():
                scores.append(float(model(img[None].float())[0].softmax(0)[cls]))
        out.append(np.mean(scores))
    return out


def test_road_equals_the_plain_loop(lenet):
    model, x, maps = lenet
    grid = [5, 30, 70, 100]
    zero = create_metric("road", SPACE, percentages="5,30,70,100", substrate="zero")(model, x, None, maps)
    nl = create_metric("road", SPACE, percentages="100,5,30,70", noise=0)(model, x, None, maps)
    for i in range(2):
        m0, l0 = _road_loop(model, x[i], maps[i], grid, lambda img, r: torch.where(r, 0.0, img))
        m1, l1 = _road_loop(model, x[i], maps[i], grid, lambda img, r: torch.from_numpy(
            scipy_impute(img.numpy(), r.numpy())))
        assert abs(zero["road_morf"][i] - m0) < 1e-6 and abs(zero["road_lerf"][i] - l0) < 1e-6
        assert abs(nl["road_morf"][i] - m1) < 1e-4 and abs(nl["road_lerf"][i] - l1) < 1e-4
        assert abs(nl["road"][i] - (l1 - m1)) < 2e-4


def test_road_noise_is_seeded_and_batch_independent(lenet):
    model, x, maps = lenet
    metric = create_metric("road", SPACE, percentages="20,60", noise=0.1)
    full = metric(model, x, None, maps)["road"]
    single = torch.cat([metric(model, x[i:i + 1], None, maps[i:i + 1])["road"] for i in range(len(x))])
    assert torch.allclose(full, single, atol=1e-5)
    other = create_metric("road", SPACE, percentages="20,60", noise=0.1, noise_seed=1)(model, x, None, maps)["road"]
    assert not torch.equal(full, other)


@pytest.mark.parametrize("name, params", [("road", {"percentages": "0,50"}), ("road", {"percentages": "50,101"}),
                                          ("road", {"percentages": "ten"}), ("deletion", {"order": "random"}),
                                          ("srg", {"substrate": "grey"})])
def test_bad_settings_are_one_line_errors(name, params):
    with pytest.raises(XbenchError) as err:
        create_metric(name, SPACE, **params)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------- sanity baselines
def test_random_baseline_is_seeded_uniform_and_differs_per_image():
    from xbench.interpreters import create_interpreter

    model = create_model("lenet", (1, 28, 28), 10).eval()
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    maps = create_interpreter("random", model, SPACE).attribute(x)
    assert maps.min() >= 0 and maps.max() < 1 and abs(float(maps.mean()) - 0.5) < 0.01
    assert abs(float(maps.flatten().var()) - 1 / 12) < 0.003  # U(0, 1)
    assert float(np.corrcoef(maps[0].flatten(), maps[1].flatten())[0, 1]) < 0.2  # one map per image
    assert torch.equal(maps, create_interpreter("random", model, SPACE).attribute(x))
    assert not torch.equal(maps, create_interpreter("random", model, SPACE, seed=1).attribute(x))


def test_edge_baseline_is_the_sobel_magnitude():
    from scipy.ndimage import sobel

    from xbench.interpreters import create_interpreter

    space = InputSpace((0.5, 0.4, 0.3), (0.25, 0.25, 0.25))
    pixels = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Identity().eval()  # no model is used
    maps = create_interpreter("edge", model, space).attribute(space.to_input(pixels), torch.zeros(2))
    p = pixels.double().numpy()
    ref = np.stack([sum(np.hypot(sobel(p[i, c], axis=0, mode="nearest"), sobel(p[i, c], axis=1, mode="nearest"))
                        for c in range(3)) for i in range(2)])
    assert np.abs(maps.numpy() - ref).max() < 1e-4
