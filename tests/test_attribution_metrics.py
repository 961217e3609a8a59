"""complexity, max_sensitivity and local_lipschitz against their formulas written out per image and per noisy copy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from xbench.errors import XbenchError
from xbench.interpreters import create_interpreter
from xbench.metrics import create_metric
from xbench.models import create_model
from xbench.space import InputSpace

SPACE = InputSpace((0.1307,), (0.3081,))


def test_complexity_is_the_entropy_of_the_normalised_map():
    maps = torch.randn(3, 28, 28) ** 3
    maps[1] = 0
    maps[2] = 0
    maps[2, 3, 4] = -5.0
    got = create_metric("complexity")(create_model("lenet").eval(), torch.zeros(3, 1, 28, 28),
                                      torch.zeros(3, dtype=torch.long), maps)["complexity"]
    assert got[0] == pytest.approx(entropy(maps[0].abs().flatten().double().numpy()), rel=1e-5)
    assert torch.isnan(got[1]) and got[2] == 0


class Recorder:
    """An interpreter's attribute() that keeps every batch it is asked to explain."""

    def __init__(self, interp):
        self.interp, self.calls = interp, []

    def __call__(self, x, target):
        self.calls.append((x.clone(), target.clone()))
        return self.interp.attribute(x, target)


@pytest.mark.parametrize("name,noise", [("max_sensitivity", {"radius": 0.05}), ("local_lipschitz", {"std": 0.1})])
def test_reexplaining_metrics_equal_their_formula_one_copy_at_a_time(name, noise):
    torch.manual_seed(0)
    model = create_model("lenet").eval()
    x = SPACE.to_input(torch.rand(5, 1, 28, 28))
    interp = create_interpreter("ig", model, SPACE, n_steps=4)
    target = model(x).argmax(1)
    maps = interp.attribute(x, target)
    rec = Recorder(interp)
    k = 3
    metric = create_metric(name, SPACE, n_samples=k, batch_size=4, **noise)  # 15 copies in batches of ≤ 4
    got = metric(model, x, torch.zeros(5, dtype=torch.long), maps, explain=rec)[name]
    xs = torch.cat([c[0] for c in rec.calls])
    ts = torch.cat([c[1] for c in rec.calls])
    assert len(xs) == 5 * k and max(len(c[0]) for c in rec.calls) <= 4
    assert torch.equal(ts, target.repeat_interleave(k))
    dpx = SPACE.to_pixels(xs) - SPACE.to_pixels(x).repeat_interleave(k, 0)
    if name == "max_sensitivity":
        assert float(dpx.abs().max()) <= 0.05 + 1e-6
    want = []
    for i in range(5):
        a = maps[i].flatten().double()
        vals = []
        for j in range(k):
            a2 = interp.attribute(xs[i * k + j][None], target[i:i + 1])[0].flatten().double()
            d = float((a2 - a).norm())
            vals.append(d / float(a.norm()) if name == "max_sensitivity" else d / (float(dpx[i * k + j].norm()) + 1e-10))
        want.append(max(vals))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4)
    again = create_metric(name, SPACE, n_samples=k, batch_size=64, **noise)(model, x, x[:, 0, 0, 0], maps,
                                                                           explain=interp.attribute)[name]
    torch.testing.assert_close(again, got)  # seeded per image: the batch size is memory only


def test_reexplaining_metrics_need_an_explainer_and_valid_settings():
    model = create_model("lenet").eval()
    with pytest.raises(XbenchError, match="explain"):
        create_metric("max_sensitivity")(model, torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long),
                                         torch.zeros(1, 28, 28))
    for name, bad in (("max_sensitivity", {"radius": 0}), ("local_lipschitz", {"std": -0.1}),
                      ("max_sensitivity", {"norm": "l3"}), ("local_lipschitz", {"n_samples": 0})):
        with pytest.raises(XbenchError):
            create_metric(name, **bad)
