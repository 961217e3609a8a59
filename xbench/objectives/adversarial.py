"""Norm-regularised adversarial training (Gong, Dou, Farnia, CVPR 2024; seed 003) as training objectives.

``adv-<geometry>`` trains on x + δ only (as the authors do): δ* in closed form (``steps`` 1, the "fast" variant) or
projected ascent from δ = 0 (``steps`` > 1, the iterative variant). ``adv-penalty-<geometry>`` trains on the clean
batch with the first-order equivalent ℓ + R*(∇ₓℓ) (one double backward). Geometries and their duals: ``norms.py``.
Attack passes leave batch-norm running statistics untouched (the authors' code lets every attack pass move them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..settings import Setting
from .base import OBJECTIVES, Objective, frozen_norm_statistics, input_gradient
from .norms import Box, Elastic, Groups

EPS = Setting(0.1, "radius ε in pixel space (l1: per pixel; group: L2 per group; elastic: ε₁)", range="[0, inf)")
EPS2 = Setting(0.01, "elastic ε₂: weight of the squared-L2 part of the dual, ε₁‖g‖₁ + ε₂‖g‖₂²", range="(0, inf)")
GROUP = Setting(4, "side k of the k×k pixel groups (per channel) of the group geometry", range="[1, inf)")
STEPS = Setting(1, "attack steps: 1 = the closed-form one-step attack, more = iterative projected ascent",
                range="[1, inf)")
STEP = Setting(None, "iterative step as a fraction of ε (default 2.5/steps)", float, range="(0, inf)", optional=True)


def _geometry(name: str, h: dict):
    if name == "l1":
        return Box(h["eps"])
    if name == "group":
        return Groups(h["eps"], h["group"])
    return Elastic(h["eps"], h["eps2"])


class _Attack(Objective):
    geometry_name = ""

    def perturb(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + δ in model input space (detached), δ the attack in pixel space."""
        h = self.hparams
        geometry = _geometry(self.geometry_name, h)
        pixels = self.space.to_pixels(x.detach())
        with frozen_norm_statistics(model):
            if h["steps"] == 1:
                delta = geometry.best(input_gradient(model, self.space, pixels, y)[0])
            else:
                step = h["step"] or 2.5 / h["steps"]
                delta = torch.zeros_like(pixels)
                for _ in range(h["steps"]):
                    delta = geometry.ascend(delta, input_gradient(model, self.space, pixels + delta, y)[0], step)
        return self.space.to_input(pixels + delta).detach()

    def __call__(self, model, x, y):
        logits = model(self.perturb(model, x, y))
        return F.cross_entropy(logits, y), logits


class _Penalty(Objective):
    geometry_name = ""

    def penalty(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(per-example losses, per-example R*(∇ₓℓ), logits), differentiable for the double backward."""
        pixels = self.space.to_pixels(x.detach()).requires_grad_(True)
        logits = model(self.space.to_input(pixels))
        grad, losses = input_gradient(model, self.space, pixels, y, create_graph=True, logits=logits)
        return losses, _geometry(self.geometry_name, self.hparams).dual(grad), logits

    def __call__(self, model, x, y):
        losses, dual, logits = self.penalty(model, x, y)
        return losses.mean() + dual.mean(), logits


@OBJECTIVES.register("adv-l1")
class AdvL1(_Attack):
    """Adversarial training in an ℓ∞ ball (dual: ε‖∇ₓℓ‖₁, sparse gradient maps); one-step = FGSM, more = PGD."""

    geometry_name = "l1"
    settings = {"eps": EPS, "steps": STEPS, "step": STEP}


@OBJECTIVES.register("adv-group")
class AdvGroup(_Attack):
    """Adversarial training with an L2 ball per k×k patch (dual: ε Σ_G ‖g_G‖₂, group-sparse gradient maps)."""

    geometry_name = "group"
    settings = {"eps": Setting(0.4, EPS.help, range=EPS.range), "group": GROUP, "steps": STEPS, "step": STEP}


@OBJECTIVES.register("adv-elastic")
class AdvElastic(_Attack):
    """Adversarial training against the elastic-net regulariser (dual: ε₁‖g‖₁ + ε₂‖g‖₂²)."""

    geometry_name = "elastic"
    settings = {"eps": Setting(0.05, EPS.help, range=EPS.range), "eps2": EPS2, "steps": STEPS, "step": STEP}


@OBJECTIVES.register("adv-penalty-l1")
class PenaltyL1(_Penalty):
    """Clean loss + ε‖∇ₓℓ‖₁ (the first-order adv-l1), by double backpropagation."""

    geometry_name = "l1"
    settings = {"eps": EPS}


@OBJECTIVES.register("adv-penalty-group")
class PenaltyGroup(_Penalty):
    """Clean loss + ε Σ_G ‖(∇ₓℓ)_G‖₂ (the first-order adv-group), by double backpropagation."""

    geometry_name = "group"
    settings = {"eps": AdvGroup.settings["eps"], "group": GROUP}


@OBJECTIVES.register("adv-penalty-elastic")
class PenaltyElastic(_Penalty):
    """Clean loss + ε₁‖∇ₓℓ‖₁ + ε₂‖∇ₓℓ‖₂² (the first-order adv-elastic), by double backpropagation."""

    geometry_name = "elastic"
    settings = {"eps": AdvElastic.settings["eps"], "eps2": EPS2}
