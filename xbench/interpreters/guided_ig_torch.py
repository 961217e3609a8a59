"""Guided IG's greedy path (Kapishnikov et al., 2021) as torch ops, batched over images, on the input's device.

The same algorithm as PAIR's ``guided_ig_impl`` (the reference in the tests), step for step: at each of the
``steps`` points one batched forward + backward gives every image's gradient; then, until each image's L1
distance to the input has shrunk to its target for this step, the features with the smallest |gradient| (the
``fraction`` quantile, numpy's ``interpolation='lower'`` = the k-th smallest) move towards the upper end of the
allowed band [α − max_dist, α + max_dist] of the straight path. Images that reach their target leave the inner loop
(a mask); the others go on, so one Python iteration serves every image. The path and the attribution are kept in
float64 as PAIR keeps them; gradients are taken in the model's own dtype.
"""
from __future__ import annotations

import torch
from torch import nn

EPSILON = 1e-9


def _grad(model: nn.Module, x: torch.Tensor, target: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    xg = x.to(dtype).requires_grad_(True)
    with torch.enable_grad():
        out = model(xg)
        (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), xg)
    return g.to(torch.float64)


def _isclose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """math.isclose(a, b, rel_tol=EPSILON, abs_tol=EPSILON), element-wise."""
    return (a - b).abs() <= torch.maximum(EPSILON * torch.maximum(a.abs(), b.abs()), torch.full_like(a, EPSILON))


def guided_ig(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor, steps: int = 200,
              fraction: float = 0.25, max_dist: float = 0.02) -> torch.Tensor:
    """Guided IG attributions [B,C,H,W] (float64) of ``target`` logits for inputs ``x`` from ``baseline``."""
    dtype = next(model.parameters()).dtype
    shape, b = x.shape, x.shape[0]
    xi, xb = x.detach().to(torch.float64).flatten(1), baseline.detach().to(torch.float64).flatten(1)
    xc, diff = xb.clone(), xi - xb
    l1_total = diff.abs().sum(1)
    attr = torch.zeros_like(xi)
    moving = diff != 0
    diff_safe = torch.where(moving, diff, 1.0)  # the divisor of a feature's position on the straight path
    k = int(fraction * (xi.shape[1] - 1)) + 1  # numpy quantile 'lower': the element at floor(q·(n − 1))
    for step in range(steps):
        grad_actual = _grad(model, xc.view(shape), target, dtype).flatten(1)
        grad = grad_actual.clone()
        alpha = (step + 1.0) / steps
        a_min, a_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        x_min, x_max = xb + diff * a_min, xb + diff * a_max
        l1_target = l1_total * (1 - (step + 1) / steps)
        active = l1_total > 0
        while bool(active.any()):
            x_old = xc.clone()
            x_alpha = torch.where(moving, (xc - xb) / diff_safe, a_max)
            xc = torch.where(active[:, None] & (x_alpha < a_min), x_min, xc)
            l1_current = (xc - xi).abs().sum(1)
            close = _isclose(l1_target, l1_current)
            grad = torch.where(xc == x_max, torch.inf, grad)
            g_abs = grad.abs()
            threshold = g_abs.kthvalue(k, dim=1, keepdim=True).values
            sel = (g_abs <= threshold) & (grad != torch.inf)
            l1_s = ((xc - x_max).abs() * sel).sum(1)
            gamma = torch.where(l1_s > 0, (l1_current - l1_target) / torch.where(l1_s > 0, l1_s, 1.0), torch.inf)
            move = (active & ~close)[:, None] & sel
            toward = torch.where((gamma > 1.0)[:, None], x_max, xc + (x_max - xc) * gamma.clamp(max=1.0)[:, None])
            xc = torch.where(move, toward, xc)
            attr += torch.where(active[:, None], (xc - x_old) * grad_actual, 0.0)
            active = active & ~close & (gamma > 1.0)
    return attr.view(shape)
