"""Guided IG in torch against PAIR's guided_ig_impl (float64, same inputs and settings)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import saliency.core as pair

from xbench.interpreters import create_interpreter
from xbench.interpreters._pair import guided_ig_numpy_shim
from xbench.interpreters.guided_ig_torch import guided_ig
from xbench.models import create_model
from xbench.space import InputSpace


def _pair64(model, x, base, target, **kw):
    """PAIR's Guided IG, one image at a time, through a float64 gradient callback written here."""
    out = []
    for i in range(len(x)):
        def cmf(batch, call_model_args=None, expected_keys=None, i=i):
            xb = torch.as_tensor(np.asarray(batch), dtype=torch.float64).permute(0, 3, 1, 2).requires_grad_(True)
            (g,) = torch.autograd.grad(model(xb)[:, int(target[i])].sum(), xb)
            return {pair.INPUT_OUTPUT_GRADIENTS: g.permute(0, 2, 3, 1).numpy()}

        with guided_ig_numpy_shim():
            a = pair.GuidedIG().GetMask(x[i].permute(1, 2, 0).numpy(), cmf, {}, x_baseline=base[i].permute(1, 2, 0)
                                        .numpy(), **kw)
        out.append(torch.from_numpy(np.asarray(a)).permute(2, 0, 1))
    return torch.stack(out)


@pytest.mark.parametrize("model_name,shape,kw", [
    ("lenet", (1, 28, 28), dict(x_steps=8, fraction=0.5, max_dist=1.0)),
    ("acnn_small", (3, 20, 20), dict(x_steps=6, fraction=0.25, max_dist=0.1)),
])
def test_torch_guided_ig_equals_pair_in_float64(model_name, shape, kw):
    torch.manual_seed(0)
    extra = {"width": 0.05} if model_name == "acnn_small" else {}
    model = create_model(model_name, shape, 10, **extra).double().eval()
    x = torch.randn(3, *shape, dtype=torch.float64)
    base = torch.zeros_like(x)
    # a random baseline (a constant one ties many gradients exactly, and the greedy choice among ties then follows
    # the last bit of the convolution's summation order), and one image equal to its baseline in places
    base[1] = 0.3 * torch.randn_like(x[1])
    x[2, :, :4] = base[2, :, :4]
    target = torch.tensor([1, 4, 7])
    ref = _pair64(model, x, base, target, **kw)
    ours = guided_ig(model, x, base, target, kw["x_steps"], kw["fraction"], kw["max_dist"])
    rel = (ours - ref).abs().max() / ref.abs().max()
    assert rel <= 1e-4, float(rel)


def test_backends_agree_on_a_float32_model_and_record_who_did_it():
    torch.manual_seed(0)
    model = create_model("lenet", (1, 28, 28), 10).eval()
    space = InputSpace((0.1307,), (0.3081,))
    x = space.to_input(torch.rand(2, 1, 28, 28))
    a = create_interpreter("guided_ig", model, space, x_steps=5)
    b = create_interpreter("guided_ig", model, space, x_steps=5, backend="pair")
    assert (a.backend, b.backend) == ("xbench", "saliency") and a.key != b.key
    ma, mb = a.attribute(x), b.attribute(x)
    assert ma.shape == mb.shape == (2, 28, 28)
    assert (ma - mb).abs().max() / mb.abs().max() < 1e-2  # float32 gradients: near ties may pick other features
