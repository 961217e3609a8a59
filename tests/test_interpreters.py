"""Every registered interpreter against the contract, and each method against an independent computation."""
from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from xbench.backtrack import Backtracker
from xbench.errors import XbenchError
from xbench.interpreters import INTERPRETERS, create_interpreter
from xbench.interpreters._pair import call_model_function, guided_ig_numpy_shim, to_hwc
from xbench.interpreters.rise import rise_masks
from xbench.interpreters.sat import sat_by_loop
from xbench.models import ChainModel, create_model
from xbench.space import InputSpace

# smaller settings so the suite stays fast; every other setting is the interpreter's default
FAST = {"rise": {"n_masks": 400}, "xrai": {"steps": 16}, "smoothgrad": {"n_samples": 8}, "ig": {"n_steps": 16},
        "guided_ig": {"x_steps": 8}}
SPACE1 = InputSpace((0.1307,), (0.3081,))
SPACE3 = InputSpace((0.5, 0.4, 0.3), (0.25, 0.25, 0.25))


def _make(name, model, space, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cam's note about non-GAP heads; tested on its own below
        return create_interpreter(name, model, space, **{**FAST.get(name, {}), **kw})


def _gap(model):
    return any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())


@pytest.fixture(scope="module", params=["grey", "colour"])
def setting(request):
    torch.manual_seed(0)
    if request.param == "grey":
        model, space, shape = create_model("lenet", (1, 28, 28), 10), SPACE1, (1, 28, 28)
    else:
        model, space, shape = create_model("acnn_small", (3, 32, 32), 10, width=0.05), SPACE3, (3, 32, 32)
    x = space.to_input(torch.rand(4, *shape))
    return model.eval(), space, x


def _no_hooks(model):
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)
               for m in model.modules())


@pytest.mark.parametrize("name", INTERPRETERS.list())
def test_contract(name, setting):
    model, space, x = setting
    before = {k: v.clone() for k, v in model.state_dict().items()}
    interp = _make(name, model, space)
    maps = interp.attribute(x)
    assert maps.shape == (4, *x.shape[-2:]) and maps.dtype == torch.float32 and maps.device == x.device
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0
    assert not model.training and _no_hooks(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    record = interp.record()
    assert record["interpreter"] == name and set(interp.settings) <= set(record["interp_hparams"])
    assert interp.key == _make(name, model, space).key  # same settings, same cache key


@pytest.mark.parametrize("name", INTERPRETERS.list())
def test_batched_equals_one_image_at_a_time(name, setting):
    model, space, x = setting
    interp = _make(name, model, space)
    target = torch.tensor([3, 1, 4, 1])
    batched = interp.attribute(x, target)
    single = torch.cat([interp.attribute(x[i:i + 1], target[i:i + 1]) for i in range(len(x))])
    scale = single.abs().max().clamp(min=1e-12)
    assert (batched - single).abs().max() <= 1e-4 * scale + 1e-6


@pytest.mark.parametrize("name", INTERPRETERS.list())
def test_hooks_are_removed_after_an_error(name, setting):
    model, space, x = setting
    interp = _make(name, model, space)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))

    def boom(*_):
        raise RuntimeError("boom")

    handle = first.register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):  # baselines use no model: the error comes from the target pass
            interp.attribute(x, None if interp.baseline else torch.zeros(len(x), dtype=torch.long))
    finally:
        handle.remove()
    assert _no_hooks(model)


@pytest.mark.parametrize("name", INTERPRETERS.list())
def test_train_mode_and_bad_settings_are_refused(name, setting):
    model, space, x = setting
    with pytest.raises(XbenchError, match="unknown setting"):
        create_interpreter(name, model, space, no_such_setting=1)
    interp = _make(name, model, space)
    model.train()
    try:
        with pytest.raises(XbenchError, match="eval"):
            interp.attribute(x)
    finally:
        model.eval()


# ---------------------------------------------------------------------------------------------- method by method
def _gap_model():
    torch.manual_seed(0)
    return ChainModel(OrderedDict([
        ("conv1", nn.Conv2d(3, 6, 3, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(6, 8, 3, stride=2, padding=1)), ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(8, 5)),
    ]), feature_layer="relu2").eval()


def test_cam_equals_gradcam_times_hw_before_relu_on_a_gap_head():
    model = _gap_model()
    x = torch.randn(3, 3, 12, 12)
    target = torch.tensor([0, 2, 4])
    cam = create_interpreter("cam", model).attribute(x, target)
    grad = create_interpreter("gradcam", model, relu=False).attribute(x, target)
    assert torch.allclose(cam, grad * 6 * 6, atol=1e-5)
    assert create_interpreter("cam", model).hparams["rule"] == "exact"


def test_cam_says_when_the_head_is_not_gap_linear(monkeypatch):
    from xbench.interpreters import cam as cam_module

    monkeypatch.setattr(cam_module, "_WARNED", set())
    lenet = create_model("lenet").eval()
    with pytest.warns(UserWarning, match="not global-average-pool"):
        assert "local linear" in create_interpreter("cam", lenet).hparams["rule"]
    with pytest.raises(XbenchError, match="not global-average-pool"):
        create_interpreter("cam", lenet, strict=True)
    acnn = create_model("acnn_small", (1, 28, 28), 10, width=0.05).eval()
    with pytest.warns(UserWarning):
        assert "max-pool" in create_interpreter("cam", acnn).hparams["rule"]


def test_cam_local_linear_rule_reduces_to_cam_on_gap_heads():
    """The local linear rule is exact CAM when the head is GAP + linear: check it by forcing it."""
    from xbench.interpreters import cam as cam_module

    model = _gap_model()
    x = torch.randn(2, 3, 12, 12)
    exact = create_interpreter("cam", model).attribute(x, torch.tensor([1, 3]))
    forced = create_interpreter("cam", model)
    forced.kind, forced.linear = "other", None
    assert torch.allclose(forced.attribute(x, torch.tensor([1, 3])), exact, atol=1e-5)
    assert cam_module._head(model, "relu2")[0] == "gap"


def test_ig_completeness(tiny_run):
    """Σ attributions = f(x) − f(baseline) within 1 % (200 steps), on a trained model in float64."""
    from xbench.train import load_run

    _, runs = tiny_run
    model, data, _ = load_run(runs[1]["run_dir"])
    model = model.double()
    x = data.inputs("heldout", range(16))[0].double()
    with torch.no_grad():
        target = model(x).argmax(1)
        gap = (model(x) - model(data.space.constant(0.0, x))).gather(1, target[:, None]).squeeze(1)
    keep = gap.abs() > 0.1
    assert keep.sum() >= 8
    maps = create_interpreter("ig", model, data.space, n_steps=200).attribute(x[keep], target[keep]).double()
    assert ((maps.sum((1, 2)) - gap[keep]).abs() <= 0.01 * gap[keep].abs()).all()


@pytest.mark.parametrize("model_name,shape,kw", [("acnn_small", (1, 28, 28), {"width": 0.1}),
                                                 ("lenet", (1, 28, 28), {})])
def test_batched_sat_equals_the_per_channel_loop(model_name, shape, kw):
    torch.manual_seed(0)
    model = create_model(model_name, shape, 10, **kw).eval()
    x = torch.randn(5, *shape)
    sat = create_interpreter("sat", model, k=16, max_maps=40)  # several chunks
    assert (sat.attribute(x) - sat_by_loop(model, x, 16, 1000.0, 3.0)).abs().max() <= 1e-5


def test_guided_backprop_equals_backtracking_from_the_logits():
    """captum's guided backprop and xbench's g (guided rule) are independent implementations of one rule."""
    torch.manual_seed(0)
    model = create_model("lenet").eval()
    with torch.no_grad():
        model.fc3.bias.fill_(1.0)  # keep the final ReLU open so the test is not trivially zero
    x = torch.randn(3, 1, 28, 28)
    target = torch.tensor([1, 5, 7])
    gbp = create_interpreter("guided_backprop", model).attribute(x, target)
    bt = Backtracker(model, "relu5")
    ref = bt(torch.nn.functional.one_hot(target, 10).float(), x).sum(1)
    assert gbp.abs().max() > 0 and torch.allclose(gbp, ref, atol=1e-6)


def test_rise_masks_are_seeded_cached_and_match_the_recipe():
    a = rise_masks(0, 300, 7, 0.5, 28, 28)
    assert a is rise_masks(0, 300, 7, 0.5, 28, 28) or torch.equal(a, rise_masks(0, 300, 7, 0.5, 28, 28))
    assert a.shape == (300, 28, 28) and a.min() >= 0 and a.max() <= 1
    assert abs(a.mean().item() - 0.5) < 0.05
    assert not torch.equal(a, rise_masks(1, 300, 7, 0.5, 28, 28))


def test_rise_equals_the_formula_by_loop():
    torch.manual_seed(0)
    model = create_model("lenet").eval()
    x = torch.randn(2, 1, 28, 28)
    target = torch.tensor([2, 6])
    maps = create_interpreter("rise", model, n_masks=200, batch_size=64).attribute(x, target)
    masks = rise_masks(0, 200, 7, 0.5, 28, 28)
    for i in range(2):
        ref = torch.zeros(28, 28)
        with torch.no_grad():
            for m in masks:
                ref += model(x[i:i + 1] * m).softmax(1)[0, target[i]] * m
        assert torch.allclose(maps[i], ref / (200 * 0.5), atol=1e-5)


def test_smoothgrad_is_the_mean_gradient_over_its_noise_set():
    torch.manual_seed(0)
    model = create_model("lenet").eval()
    x = SPACE1.to_input(torch.rand(2, 1, 28, 28))
    target = torch.tensor([3, 8])
    maps = create_interpreter("smoothgrad", model, SPACE1, n_samples=6, samples_per_batch=4).attribute(x, target)
    sigma = 0.15 * (1 / 0.3081)
    noise = torch.randn((6, 1, 28, 28), generator=torch.Generator().manual_seed(0)) * sigma
    for i in range(2):
        grads = []
        for e in noise:
            xi = (x[i:i + 1] + e).requires_grad_(True)
            (g,) = torch.autograd.grad(model(xi)[0, target[i]], xi)
            grads.append(g[0, 0])
        assert torch.allclose(maps[i], torch.stack(grads).mean(0), atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_pair_adapter_gives_hwc_gradients(channels):
    """PAIR's IG through our callback equals the same Riemann sum computed with autograd in NCHW."""
    import saliency.core as pair

    torch.manual_seed(0)
    model = create_model("acnn_small", (channels, 16, 16), 4, width=0.05).eval()
    x = torch.randn(1, channels, 16, 16)
    base = torch.zeros_like(x)
    mask = pair.IntegratedGradients().GetMask(to_hwc(x[0]), call_model_function(model, torch.device("cpu")),
                                              {"target": 2}, x_steps=10, x_baseline=to_hwc(base[0]))
    assert mask.shape == (16, 16, channels)
    ref = torch.zeros_like(x)
    for a in np.linspace(0, 1, 10):
        xa = (base + float(a) * (x - base)).requires_grad_(True)
        (g,) = torch.autograd.grad(model(xa)[0, 2], xa)
        ref += g * (x - base) / 10
    assert np.allclose(mask, ref[0].permute(1, 2, 0).numpy(), atol=1e-5)


def test_guided_ig_numpy_decision():
    """numpy ≥ 2.4 breaks PAIR's GuidedIG; the scoped shim fixes it and leaves numpy untouched."""
    import saliency.core as pair
    from saliency.core import guided_ig as pair_gig

    torch.manual_seed(0)
    model = create_model("lenet").eval()
    x = torch.randn(1, 1, 28, 28)
    cmf = call_model_function(model, torch.device("cpu"))
    args = dict(x_steps=6, fraction=0.5, max_dist=1.0)
    numpy_major_minor = tuple(int(v) for v in np.__version__.split(".")[:2])
    if numpy_major_minor >= (2, 4):
        with pytest.raises(TypeError, match="interpolation"):
            pair.GuidedIG().GetMask(to_hwc(x[0]), cmf, {"target": 1}, **args)
    with guided_ig_numpy_shim():
        pair.GuidedIG().GetMask(to_hwc(x[0]), cmf, {"target": 1}, **args)
    assert pair_gig.np is np
    if numpy_major_minor >= (2, 4):
        with pytest.raises(TypeError):
            np.quantile([1.0, 2.0], 0.5, interpolation="lower")


def test_guided_ig_without_deviation_is_left_riemann_ig():
    """max_dist = 0 keeps Guided IG on the straight line: Σ_i ∇f(b + i/S·(x−b))·(x−b)/S."""
    torch.manual_seed(0)
    model = create_model("lenet").eval()
    with torch.no_grad():
        model.fc3.bias.fill_(1.0)
    x = torch.randn(2, 1, 28, 28)
    target = torch.tensor([4, 9])
    maps = create_interpreter("guided_ig", model, x_steps=10, max_dist=0.0, baseline="zero").attribute(x, target)
    for i in range(2):
        ref = torch.zeros(1, 28, 28)
        for s in range(10):
            xa = (x[i:i + 1] * s / 10).requires_grad_(True)
            (g,) = torch.autograd.grad(model(xa)[0, target[i]], xa)
            ref += g[0] * x[i] / 10
        assert torch.allclose(maps[i], ref.sum(0), atol=1e-5)


def test_xrai_through_pair_end_to_end_and_segment_cache(monkeypatch):
    """Our captum-IG/cached-segment path against PAIR doing everything itself through the adapter."""
    import saliency.core as pair
    from saliency.core import xrai as pair_xrai
    from scipy.stats import spearmanr

    torch.manual_seed(0)
    model = create_model("lenet").eval()
    with torch.no_grad():
        model.fc3.bias.fill_(1.0)
    x = SPACE1.to_input(torch.rand(1, 1, 28, 28))
    target = torch.tensor([5])
    ours_pair_ig = create_interpreter("xrai", model, SPACE1, steps=32, ig_backend="pair").attribute(x, target)
    black = to_hwc(SPACE1.constant(0.0, x)[0])
    white = to_hwc(SPACE1.constant(1.0, x)[0])
    params = pair.XRAIParameters(steps=32)
    ref = pair.XRAI().GetMask(to_hwc(x[0]), call_model_function(model, torch.device("cpu")), {"target": 5},
                              baselines=[black, white], extra_parameters=params,
                              segments=pair_xrai._get_segments_felzenszwalb(to_hwc(SPACE1.to_pixels(x)[0])))
    assert np.allclose(ours_pair_ig[0].numpy(), ref, atol=1e-6)
    calls = []
    real = pair_xrai._get_segments_felzenszwalb
    monkeypatch.setattr(pair_xrai, "_get_segments_felzenszwalb", lambda im: calls.append(1) or real(im))
    ours = create_interpreter("xrai", model, SPACE1, steps=32).attribute(x, target)
    assert calls == []  # the image's segments were cached by the first call
    rho = spearmanr(ours[0].flatten().numpy(), ours_pair_ig[0].flatten().numpy()).statistic
    assert rho > 0.8


# ------------------------------------------------------------------------------------------------ planted signal
PATCH = (slice(3, 8), slice(9, 14))


@pytest.fixture(scope="module")
def planted():
    """A GAP CNN trained so that its decision depends only on a bright 5×5 patch at a known place."""
    g = torch.Generator().manual_seed(0)

    def batch(n):
        pixels = torch.rand(n, 1, 16, 16, generator=g) * 0.6
        y = torch.randint(0, 2, (n,), generator=g)
        pixels[y == 1, :, PATCH[0], PATCH[1]] = 0.9 + 0.1 * torch.rand(int((y == 1).sum()), 1, 5, 5, generator=g)
        return SPACE1.to_input(pixels), y

    torch.manual_seed(0)
    model = ChainModel(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, 16, 3, padding=1)), ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(16, 2)),
    ]), feature_layer="relu2")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        x, y = batch(64)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    x, y = batch(200)
    assert (model(x).argmax(1) == y).float().mean() > 0.97
    x = x[y == 1][:12]
    return model, x


def _top_fraction_in_patch(maps: torch.Tensor) -> float:
    inside = torch.zeros(maps.shape[-2:], dtype=torch.bool)
    inside[PATCH] = True
    flat = maps.flatten(1)
    k = int(0.1 * flat.shape[1])
    top = flat.topk(k, dim=1).indices
    return inside.flatten()[top].float().mean().item()


@pytest.mark.parametrize("name", INTERPRETERS.list())
def test_planted_signal(name, planted):
    model, x = planted
    maps = _make(name, model, SPACE1).attribute(x, torch.ones(len(x), dtype=torch.long))
    random_maps = torch.rand(maps.shape, generator=torch.Generator().manual_seed(1))
    ours, chance = _top_fraction_in_patch(maps), _top_fraction_in_patch(random_maps)
    if name == "random":  # the sanity baseline is the null this test measures against
        assert abs(ours - chance) < 0.2
        return
    assert ours > chance + 0.2, f"{name}: {ours:.2f} of its top-10% pixels in the patch vs {chance:.2f} at random"
