"""The three perturbation geometries of norm-regularised adversarial training (seed 003, ``extensions.md`` §2).

Each is a regulariser R(δ) on the perturbation with its Fenchel conjugate R*(g) on the input gradient g; the
first-order inner maximum max_δ ℓ + gᵀδ − R(δ) is ℓ + R*(g), reached at δ* ∈ ∂R*(g):

| geometry | R(δ) | R*(g) | δ* |
|---|---|---|---|
| ``l1`` (sparse maps) | indicator ‖δ‖∞ ≤ ε | ε‖g‖₁ | ε·sign(g) |
| ``group`` (k×k patches per channel) | indicator ‖δ_G‖₂ ≤ ε ∀G | ε Σ_G ‖g_G‖₂ | ε·g_G/‖g_G‖₂ |
| ``elastic`` | Σ_i (|δ_i| − ε₁)₊² / (4ε₂) | ε₁‖g‖₁ + ε₂‖g‖₂² | ε₁·sign(g) + 2ε₂·g |

All tensors are [B,C,H,W] in pixel space; sums are per example.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_TINY = 1e-12  # zero-gradient groups: the direction is 0, not NaN (the authors' code divides by zero there)


class Box:
    """R = indicator of the ℓ∞ ball of radius ε: sparse gradient maps (``adv-l1``)."""

    def __init__(self, eps: float):
        self.eps = eps

    def dual(self, g: torch.Tensor) -> torch.Tensor:
        return self.eps * g.abs().flatten(1).sum(1)

    def best(self, g: torch.Tensor) -> torch.Tensor:
        return self.eps * g.sign()

    def ascend(self, delta: torch.Tensor, g: torch.Tensor, step: float) -> torch.Tensor:
        """One projected steepest-ascent step of ``step``·ε in the ball's own geometry (PGD)."""
        return (delta + step * self.best(g)).clamp(-self.eps, self.eps)


class Groups:
    """R = indicator of ‖δ_G‖₂ ≤ ε for every k×k patch G of every channel: group-sparse maps (``adv-group``)."""

    def __init__(self, eps: float, k: int):
        self.eps, self.k = eps, k

    def norms(self, t: torch.Tensor) -> torch.Tensor:
        """‖t_G‖₂ per group, broadcast back to every pixel of its group (border groups may be smaller)."""
        sums = F.avg_pool2d(t.square(), self.k, self.k, ceil_mode=True, divisor_override=1)
        full = sums.sqrt().repeat_interleave(self.k, -2).repeat_interleave(self.k, -1)
        return full[..., : t.shape[-2], : t.shape[-1]]

    def dual(self, g: torch.Tensor) -> torch.Tensor:
        sums = F.avg_pool2d(g.square(), self.k, self.k, ceil_mode=True, divisor_override=1)
        return self.eps * (sums + _TINY ** 2).sqrt().flatten(1).sum(1)  # smooth at 0 for the double backward

    def best(self, g: torch.Tensor) -> torch.Tensor:
        return self.eps * g / self.norms(g).clamp(min=_TINY)

    def ascend(self, delta: torch.Tensor, g: torch.Tensor, step: float) -> torch.Tensor:
        delta = delta + step * self.best(g)
        return delta * (self.eps / self.norms(delta).clamp(min=_TINY)).clamp(max=1.0)


class Elastic:
    """R(δ) = Σ (|δ_i| − ε₁)₊² / (4ε₂): elastic-net maps (``adv-elastic``); no hard constraint."""

    def __init__(self, eps: float, eps2: float):
        self.eps, self.eps2 = eps, eps2

    def penalty(self, delta: torch.Tensor) -> torch.Tensor:
        return (delta.abs() - self.eps).clamp(min=0).square().flatten(1).sum(1) / (4 * self.eps2)

    def dual(self, g: torch.Tensor) -> torch.Tensor:
        return self.eps * g.abs().flatten(1).sum(1) + self.eps2 * g.square().flatten(1).sum(1)

    def best(self, g: torch.Tensor) -> torch.Tensor:
        return self.eps * g.sign() + 2 * self.eps2 * g

    def ascend(self, delta: torch.Tensor, g: torch.Tensor, step: float) -> torch.Tensor:
        """Ascent on ℓ(x+δ) − R(δ) along the per-example L2-normalised direction (the authors' iterative variant),
        of length ``step``·ε₁·√d: as long as one sign step of the same ε₁."""
        v = g - (delta.abs() - self.eps).clamp(min=0) * delta.sign() / (2 * self.eps2)
        length = v.flatten(1).norm(dim=1).clamp(min=_TINY).view(-1, *[1] * (v.ndim - 1))
        return delta + step * self.eps * v[0].numel() ** 0.5 * v / length
