"""SplitGrad, SplitCAM and SplitLRP against independent computations (the registry-wide contract is in
test_interpreters.py and picks them up by name)."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import pair_layer
from xbench.errors import XbenchError
from xbench.interpreters import create_interpreter
from xbench.interpreters.base import upsample
from xbench.models import ChainModel, create_model


def _lenet(bias: bool = True):
    torch.manual_seed(0)
    model = create_model("lenet").double().eval()
    with torch.no_grad():
        model.fc3.bias.fill_(0.5)  # keep the logits' ReLU open
        if not bias:
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.bias.zero_()
    return model


def _mlp():
    torch.manual_seed(0)
    return ChainModel(OrderedDict([("flatten", nn.Flatten()), ("fc1", nn.Linear(12, 9)), ("relu1", nn.ReLU()),
                                   ("fc2", nn.Linear(9, 7)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(7, 4))]),
                      feature_layer="relu2").double().eval()


def _input_gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    return grad


@pytest.mark.parametrize("model_name", ["lenet", "tv:resnet18"])
def test_split_grad_g_minus_h_is_the_plain_gradient(model_name):
    """∂g − ∂h = ∂f at any α: the shift moves only the common mode."""
    torch.manual_seed(0)
    shape = (1, 28, 28) if model_name == "lenet" else (3, 32, 32)
    model = create_model(model_name, shape, 10).double().eval()
    x = torch.randn(3, *shape, dtype=torch.float64)
    target = torch.tensor([1, 4, 7])
    maps = create_interpreter("split_grad", model, stream="g-h", alpha=0.3).attribute(x.double(), target)
    ref = _input_gradient(model, x, target).sum(1)
    assert torch.allclose(maps.double(), ref, rtol=1e-5, atol=1e-6 * ref.abs().max())


def _split_gradients_by_loop(model, x, target, alpha):
    """extensions.md §1.2 by hand: the four sensitivities walked back layer by layer, α-shift at every affine input.

    Forward keeps each ReLU's z⁺ ≥ z⁻ mask; backward: Linear δ_in⁺ = W⁺ᵀδ⁺ + W⁻ᵀδ⁻, δ_in⁻ = W⁻ᵀδ⁺ + W⁺ᵀδ⁻;
    ReLU (max) δ_in⁺ = δ⁺·m, δ_in⁻ = δ⁻ + δ⁺·(1 − m); shift δ^± ← δ^± − α(δ⁺ + δ⁻).
    """
    layers = [m for _, m in model.chain()][1:]
    p, n = x.flatten(1).clamp(min=0), (-x.flatten(1)).clamp(min=0)
    masks = []
    for m in layers:
        if isinstance(m, nn.ReLU):
            masks.append((p >= n).double())
        p, n = pair_layer(m, p, n)
    one_hot = F.one_hot(target, p.shape[1]).double()
    out = {}
    for part, (dp, dn) in {"g": (one_hot, 0 * one_hot), "h": (0 * one_hot, one_hot)}.items():
        relu_masks = list(masks)
        for m in reversed(layers):
            if isinstance(m, nn.ReLU):
                mask = relu_masks.pop()
                dp, dn = dp * mask, dn + dp * (1 - mask)
            else:
                wp, wn = m.weight.clamp(min=0), (-m.weight).clamp(min=0)
                dp, dn = dp @ wp + dn @ wn, dp @ wn + dn @ wp
                shift = alpha * (dp + dn)
                dp, dn = dp - shift, dn - shift
        out[part] = (dp, dn)
    return out


@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.5])
def test_split_grad_streams_equal_the_shifted_split_backward_by_hand(alpha):
    model = _mlp()
    x = torch.randn(5, 1, 3, 4, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 1])
    ref = _split_gradients_by_loop(model, x, target, alpha)
    for stream, (part, side) in {"+g": ("g", 0), "-g": ("g", 1), "+h": ("h", 0), "-h": ("h", 1)}.items():
        maps = create_interpreter("split_grad", model, stream=stream, alpha=alpha).attribute(x, target)
        assert torch.allclose(maps.double(), ref[part][side].view(5, 3, 4), atol=1e-6), (stream, alpha)
    if alpha == 0.5:  # the shift at its end point leaves ±(δ⁺ − δ⁻)/2: half the plain gradient
        plain = _input_gradient(model, x, target).sum(1)
        got = create_interpreter("split_grad", model, stream="+g", alpha=0.5).attribute(x, target)
        assert torch.allclose(got.double(), plain / 2, atol=1e-6)


def test_split_grad_does_not_depend_on_recentring():
    model = _lenet()
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    interp = create_interpreter("split_grad", model, stream="-h")
    plain = interp.attribute(x)
    for recenter in ("always", "threshold"):
        interp.split.recenter = recenter
        assert torch.allclose(interp.attribute(x), plain, atol=1e-6 * plain.abs().max())


@pytest.mark.parametrize("stream", ["+g", "-h", "g"])
def test_split_cam_equals_autograd_through_the_written_out_pairs(stream):
    """At α = 0 without recentring, SplitCAM is δ^{±,T} ⊙ a^± at the layer, δ by autograd through pair_layer."""
    model = _lenet()
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    target = torch.tensor([2, 5, 8])
    p, n = x.clamp(min=0), (-x).clamp(min=0)
    for name, m in model.chain():
        p, n = pair_layer(m, p, n)
        if name == "relu2":
            p, n = p.detach().requires_grad_(True), n.detach().requires_grad_(True)
            at = (p, n)
    part = p if stream.endswith("g") else n
    dp, dn = torch.autograd.grad(part.gather(1, target[:, None]).sum(), at)
    a_p, a_n = at
    cam = {"+g": dp * a_p, "-h": dn * a_n, "g": dp * a_p + dn * a_n}[stream].sum(1)
    maps = create_interpreter("split_cam", model, stream=stream, alpha=0.0, recenter="none").attribute(x, target)
    ref = upsample(cam.detach(), (28, 28))
    assert torch.allclose(maps.double(), ref, rtol=1e-5, atol=1e-6 * ref.abs().max())


def test_split_cam_g_minus_h_is_gradient_times_activation():
    model = _lenet()
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    target = torch.tensor([0, 3, 9])
    store = {}
    handle = model.relu2.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        logits = model(x.requires_grad_(True))
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), store["a"])
    finally:
        handle.remove()
    ref = upsample((grad * store["a"]).sum(1).detach(), (28, 28))
    for recenter in ("none", "threshold"):
        maps = create_interpreter("split_cam", model, stream="g-h", recenter=recenter).attribute(x.detach(), target)
        assert torch.allclose(maps.double(), ref, rtol=1e-5, atol=1e-6 * ref.abs().max())


def _eps_lrp_by_loop(model, x, target, eps):
    """ε-LRP (z-rule) on the split network of an MLP, relevance kept per stream and per node, no autograd."""
    layers = [m for _, m in model.chain()][1:]
    p, n = x.flatten(1).clamp(min=0), (-x.flatten(1)).clamp(min=0)
    trace = []
    for m in layers:
        trace.append((p, n))
        p, n = pair_layer(m, p, n)
    one_hot = F.one_hot(target, p.shape[1]).double()
    out = {}
    for part, (rp, rn) in {"g": (one_hot * p, 0 * p), "h": (0 * n, one_hot * n)}.items():
        for m, (ap, an) in zip(reversed(layers), reversed(trace)):
            if isinstance(m, nn.ReLU):  # a′⁺ = max(z⁺, z⁻) sends its relevance to the winner; a′⁻ = z⁻ passes
                win = (ap >= an).double()
                rp, rn = rp * win, rn + rp * (1 - win)
            else:
                wp, wn = m.weight.clamp(min=0), (-m.weight).clamp(min=0)
                zp, zn = pair_layer(m, ap, an)
                sp, sn = rp / (zp + eps), rn / (zn + eps)
                rp, rn = ap * (sp @ wp + sn @ wn), an * (sp @ wn + sn @ wp)
        out[part] = rp + rn
    return out


def test_split_lrp_equals_the_z_rule_written_out():
    model = _mlp()
    x = torch.randn(5, 1, 3, 4, dtype=torch.float64)
    target = torch.tensor([3, 2, 1, 0, 3])
    ref = _eps_lrp_by_loop(model, x, target, eps=0.05)  # a large ε, so its place in the rule is checked
    for stream, want in {"g": ref["g"], "h": ref["h"], "g-h": ref["g"] - ref["h"]}.items():
        maps = create_interpreter("split_lrp", model, stream=stream, eps=0.05, recenter="none").attribute(x, target)
        assert torch.allclose(maps.double(), want.view(5, 3, 4), atol=1e-9), stream


@pytest.mark.parametrize("recenter", ["none", "threshold", "always"])
def test_split_lrp_conserves_the_logit_at_alpha_zero(recenter):
    """Without biases (which absorb relevance) R_g − R_h sums to the logit; recentring passes relevance through."""
    model = _lenet(bias=False)
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    interp = create_interpreter("split_lrp", model, eps=1e-12, recenter=recenter)
    maps = interp._attribute(x, target)  # before attribute's cast to float32
    assert maps.dtype == torch.float64
    want = logits.gather(1, target[:, None]).squeeze(1)
    assert torch.allclose(maps.sum((1, 2)), want, rtol=1e-6)


def test_split_settings_are_checked():
    model = _lenet()
    with pytest.raises(XbenchError, match="alpha=0.7 is out of range"):
        create_interpreter("split_cam", model, alpha=0.7)
    with pytest.raises(XbenchError, match="stream="):
        create_interpreter("split_grad", model, stream="g+h")
    with pytest.raises(XbenchError, match="no layer"):
        create_interpreter("split_cam", model, layer="conv9")


def test_explain_refuses_bad_split_input_before_writing(tiny_run, tmp_path, monkeypatch, capsys):
    import shutil

    from xbench import dc_rules
    from xbench.cli import main

    _, runs = tiny_run
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.pt", "config.json"):
        shutil.copy(f"{runs[0]['run_dir']}/{name}", run / name)
    assert main(["explain", "--runs", str(run), "--interp", "cam,split_cam", "--hparam", "split_cam.alpha=0.7",
                 "--quiet"]) == 2
    assert "alpha=" in capsys.readouterr().err
    monkeypatch.delitem(dc_rules.RULES, nn.MaxPool2d)  # lenet's pooling, as if it had no rule
    assert main(["explain", "--runs", str(run), "--interp", "cam,split_lrp", "--quiet"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "warning" not in line]  # cam's note
    assert len(err) == 1 and "layer 'pool1' (MaxPool2d)" in err[0] and "not supported" in err[0]
    assert not (run / "maps").exists()
