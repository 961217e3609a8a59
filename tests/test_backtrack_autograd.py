"""Backtracking on any model through autograd: equal to the chain path on chain models; SAT and the backtracking
metrics on a ResNet; CAM, Grad-CAM and SAT on a ViT's token grid."""
from __future__ import annotations

import copy
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from test_backtrack import CASES, _odd_model
from xbench.backtrack import Backtracker
from xbench.backtrack_autograd import AutogradBacktracker, backtracker, token_grid
from xbench.errors import XbenchError
from xbench.interpreters import create_interpreter
from xbench.metrics import create_metric
from xbench.models import create_model
from xbench.space import InputSpace

SPACE3 = InputSpace((0.5, 0.4, 0.3), (0.25, 0.25, 0.25))


def _no_hooks(model):
    return all(not (m._forward_hooks or m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("relu", ["guided", "plain", "none"])
@pytest.mark.parametrize("name,shape,kw,layer", CASES)
def test_autograd_path_equals_the_chain_path(name, shape, kw, layer, relu):
    torch.manual_seed(0)
    model = (_odd_model() if name == "odd" else create_model(name, shape, 10, **kw)).eval()
    x = torch.randn(3, *shape)
    chain, auto = Backtracker(model, layer, relu=relu), AutogradBacktracker(model, layer, relu=relu)
    z, trace = chain.forward(x)
    za, trace_a = auto.forward(x)
    assert torch.allclose(z, za, atol=1e-6)
    s = torch.randn(3 * 4, *z.shape[1:])  # 4 maps per image, image-major
    diff = (chain.backward(s, trace) - auto.backward(s, trace_a)).abs().max()
    assert diff <= 1e-5, float(diff)
    assert _no_hooks(model) and isinstance(backtracker(model, layer), Backtracker)


class _TestGuided(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * ((a > 0) & (g > 0))


class _GuidedModule(nn.Module):
    def forward(self, a):
        return _TestGuided.apply(a)


def _guided_copy(model):
    """A copy whose every nn.ReLU is a guided one (ResNet blocks reuse theirs: replacing the attribute covers both)."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for n, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, n, _GuidedModule())
    return model


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = create_model("tv:resnet18", (3, 32, 32), 10).eval()
    x = SPACE3.to_input(torch.rand(4, 3, 32, 32))
    return model, x


def test_sat_on_a_resnet_equals_its_algorithm_by_loop(resnet):
    model, x = resnet
    sat = create_interpreter("sat", model, SPACE3, k=6)
    maps = sat.attribute(x)
    assert maps.shape == (4, 32, 32) and torch.isfinite(maps).all() and maps.abs().sum() > 0 and _no_hooks(model)
    assert torch.allclose(torch.cat([sat.attribute(x[i:i + 1]) for i in range(4)]), maps, atol=1e-4)
    guided = _guided_copy(model)
    for i in range(2):  # Algorithm 1 written out: one channel of one image per plain autograd pass
        xi = x[i:i + 1].clone().requires_grad_(True)
        store = {}
        h = guided.layer4.register_forward_hook(lambda m, inp, o: store.__setitem__("z", o))
        guided(xi)
        h.remove()
        z = store["z"][0]
        y = z.detach().flatten(1).max(1).values
        ref = torch.zeros(32, 32)
        for c in y.topk(6).indices.tolist():
            pos = z[c].detach().flatten().argmax()
            (s,) = torch.autograd.grad(z[c].flatten()[pos] * 1000.0, xi, retain_graph=True)
            s = s[0].abs().sum(0)
            ref += y[c] * (s > 3.0 * s.mean()).float()
        assert torch.allclose(maps[i], ref, atol=1e-3)


def test_recon_ratio_decomposition_and_synthesis_on_a_resnet(resnet):
    model, x = resnet
    y = model(x).argmax(1)
    rr = create_metric("recon_ratio", SPACE3)
    ratios = rr(model, x, y)["recon_ratio"]
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert rr.layer_names == convs and ratios.shape == (4, len(convs)) and torch.isfinite(ratios).all()
    z = x.clone().requires_grad_(True)  # first layer by autograd: z − Wᵀ W z, W z the bias-free conv
    s = F.conv2d(z, model.conv1.weight, None, 2, 3)
    (z_hat,) = torch.autograd.grad(s, z, s.detach())
    ref = (x - z_hat).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert torch.allclose(ratios[:, 0], ref, rtol=1e-4)
    dec = create_metric("decomposition", SPACE3, k=8)(model, x, y)
    assert torch.isfinite(dec["correlation"]).all() and dec["correlation"].abs().sum() > 0
    syn = create_metric("synthesis", SPACE3, k=8)
    scores = syn(model, x, y)
    assert set(scores) == {"fooling", "source_similarity", "target_similarity"}
    adv = syn.details["adversarial"]
    assert adv.min() >= 0 and adv.max() <= 1 and adv.shape[1:] == x.shape[1:]
    assert _no_hooks(model)


def test_a_model_without_a_feature_layer_names_the_hparam():
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), relu=nn.ReLU(), flat=nn.Flatten(),
                                      fc=nn.Linear(4 * 30 * 30, 10))).eval()
    with pytest.raises(XbenchError, match=r"--hparam sat\.layer="):
        create_interpreter("sat", model, SPACE3)
    with pytest.raises(XbenchError, match=r"--hparam decomposition\.layer="):
        create_metric("decomposition", SPACE3)(model, torch.randn(2, 3, 32, 32), torch.zeros(2).long())
    sat = create_interpreter("sat", model, SPACE3, layer="relu", k=2)
    assert sat.attribute(torch.randn(2, 3, 32, 32)).shape == (2, 32, 32)


def test_token_grid_drops_the_class_token():
    tokens = torch.arange(2 * 5 * 3).float().view(2, 5, 3)  # 1 class token + a 2×2 grid, 3 channels
    grid = token_grid(tokens, nn.Identity())
    assert grid.shape == (2, 3, 2, 2) and torch.equal(grid[1, 2].flatten(), tokens[1, 1:, 2])


@pytest.fixture(scope="module")
def deit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=10,
                              pretrained=False).eval()
    return model, SPACE3.to_input(torch.rand(3, 3, 32, 32))


def test_cam_gradcam_and_sat_on_a_vit_token_grid(deit):
    model, x = deit
    target = torch.tensor([1, 2, 3])
    store = {}  # reference: gradients of the block's tokens, class token dropped, as a 4×4 grid
    h = model.blocks[1].register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg).gather(1, target[:, None]).sum(), store["a"])
    h.remove()
    a = store["a"].detach()[:, 1:].transpose(1, 2).reshape(3, -1, 4, 4)
    g = g[:, 1:].transpose(1, 2).reshape(3, -1, 4, 4)
    up = lambda m: F.interpolate(m[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    ref_gc = up((g.mean((2, 3), keepdim=True) * a).sum(1).clamp(min=0))
    gc = create_interpreter("gradcam", model, SPACE3, layer="blocks.1").attribute(x, target)
    assert torch.allclose(gc, ref_gc, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cam = create_interpreter("cam", model, SPACE3, layer="blocks.1").attribute(x, target)
    assert torch.allclose(cam, up((a * g).sum(1) * 16), atol=1e-4)
    sat = create_interpreter("sat", model, SPACE3, layer="blocks.1", k=4).attribute(x, target)
    assert sat.shape == (3, 32, 32) and torch.isfinite(sat).all() and sat.abs().sum() > 0 and _no_hooks(model)


def test_gradcam_and_sat_on_a_swin_stage():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", img_size=56, embed_dim=16, depths=(1, 1),
                              num_heads=(1, 2), num_classes=10, pretrained=False).eval()
    x, target = SPACE3.to_input(torch.rand(2, 3, 56, 56)), torch.tensor([3, 5])
    store = {}  # reference: the stage's channels-last output [B,7,7,C] moved to [B,C,7,7]
    h = model.layers[1].register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    (g,) = torch.autograd.grad(model(x.clone().requires_grad_(True)).gather(1, target[:, None]).sum(), store["a"])
    h.remove()
    a, g = store["a"].detach().permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)
    ref = F.interpolate((g.mean((2, 3), keepdim=True) * a).sum(1).clamp(min=0)[:, None], size=(56, 56),
                        mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(create_interpreter("gradcam", model, SPACE3, layer="layers.1").attribute(x, target), ref,
                          atol=1e-5)
    sat = create_interpreter("sat", model, SPACE3, layer="layers.1", k=4).attribute(x, target)
    assert sat.shape == (2, 56, 56) and torch.isfinite(sat).all() and sat.abs().sum() > 0 and _no_hooks(model)
