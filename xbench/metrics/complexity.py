"""Complexity of a map: how concentrated its mass is (seed 003's "sparser gradient maps")."""
from __future__ import annotations

import torch

from .base import METRICS, Metric


@METRICS.register("sparseness")
class Sparseness(Metric):
    """Gini index of |map| per image (Quantus Sparseness, Chalasani et al. 2020): 1 = one pixel, 0 = flat.

    G = 1 − 2 Σ_k (a_(k)/‖a‖₁)·(d − k + ½)/d over the d pixel values a sorted ascending (Hurley and Rickard), the
    same number as the mean-difference Gini coefficient; NaN for an all-zero map. Quantus adds 1e-7 to every value.
    """

    category = "complexity"
    higher_is_better = True
    needs_maps = True

    def compute(self, model, x, y, maps):
        a = maps.detach().abs().flatten(1).double().sort(dim=1).values
        d = a.shape[1]
        total = a.sum(1)
        weights = (d - torch.arange(1, d + 1, dtype=a.dtype, device=a.device) + 0.5) / d
        gini = 1 - 2 * (a * weights).sum(1) / total.clamp(min=torch.finfo(a.dtype).tiny)
        return torch.where(total > 0, gini, torch.full_like(gini, float("nan")))


@METRICS.register("complexity")
class Complexity(Metric):
    """Entropy of the normalised |map| per image (Quantus Complexity, Bhatt et al. 2020): low = concentrated.

    H = −Σ p_k log p_k with p = |a|/‖a‖₁ over the pixels (natural log, 0·log 0 = 0), between 0 (one pixel) and
    log(H·W) (flat); NaN for an all-zero map. Quantus writes −Σ p·log(p + 1e-12).
    """

    category = "complexity"
    higher_is_better = False
    needs_maps = True

    def compute(self, model, x, y, maps):
        a = maps.detach().abs().flatten(1).double()
        total = a.sum(1, keepdim=True)
        p = a / total.clamp(min=torch.finfo(a.dtype).tiny)
        h = -torch.special.xlogy(p, p).sum(1)
        return torch.where(total[:, 0] > 0, h, torch.full_like(h, float("nan")))
