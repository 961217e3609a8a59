"""The sparseness metric (Gini index of |map|) against the mean-difference Gini written out."""
from __future__ import annotations

import torch

from xbench.metrics import create_metric
from xbench.models import create_model


def test_gini_equals_the_mean_difference_formula():
    torch.manual_seed(0)
    model = create_model("lenet").eval()
    x = torch.randn(4, 1, 28, 28)
    maps = torch.randn(4, 28, 28) ** 3
    maps[1] = 0
    maps[2] = 1.0  # flat: 0
    maps[3] = 0
    maps[3, 5, 7] = -2.0  # one pixel: (d − 1)/d
    got = create_metric("sparseness")(model, x, torch.zeros(4, dtype=torch.long), maps)["sparseness"]
    a = maps[0].abs().flatten().double()
    want = (a[:, None] - a[None, :]).abs().sum() / (2 * a.numel() * a.sum())
    assert torch.isclose(got[0].double(), want, atol=1e-6)
    assert torch.isnan(got[1]) and abs(got[2]) < 1e-6 and torch.isclose(got[3], torch.tensor(783 / 784))
