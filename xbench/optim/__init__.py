"""Optimizers: ``sgd``, ``adamw`` and their Bort twins ``bort-s`` (coupled) and ``bort-a`` (decoupled).

``create_optimizer(name, model, lr=..., ...)`` builds the param groups the same way for every name (Conv/Linear
weights with weight decay; biases and everything else without), so a pair differs only in the Bort term.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import XbenchError
from ..layers import constrained_weights
from ..registry import Registry
from .bort import MODES, Bort, bort_delta, check_amplitude

OPTIMIZERS: Registry = Registry("optimizer")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Group 1: Conv/Linear weights (weight decay, Bort on). Group 2: the rest (no decay, Bort off)."""
    constrained = {id(w) for _, w in constrained_weights(model)}
    weights = [p for p in model.parameters() if id(p) in constrained and p.requires_grad]
    rest = [p for p in model.parameters() if id(p) not in constrained and p.requires_grad]
    groups = [{"params": weights, "weight_decay": weight_decay, "name": "constrained"}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0, "name": "other", "bort_lambda": 0.0})
    return groups


@OPTIMIZERS.register("sgd")
def sgd(groups, lr: float, momentum: float = 0.0, **_) -> torch.optim.Optimizer:
    """Plain SGD (torch.optim.SGD), coupled weight decay."""
    return torch.optim.SGD(_without_bort(groups), lr=lr, momentum=momentum)


@OPTIMIZERS.register("adamw")
def adamw(groups, lr: float, betas: tuple[float, float] = (0.9, 0.999), **_) -> torch.optim.Optimizer:
    """AdamW (torch.optim.AdamW), decoupled weight decay."""
    return torch.optim.AdamW(_without_bort(groups), lr=lr, betas=betas)


@OPTIMIZERS.register("bort-s")
def bort_s(groups, lr: float, momentum: float = 0.0, bort_lambda: float = 0.1, bort_mode: str = "l2",
           bort_amplitude: float | str = 1.0, **_) -> Bort:
    """Bort around SGD: λΔ coupled into the gradient (before weight decay and momentum)."""
    base = torch.optim.SGD(groups, lr=lr, momentum=momentum)  # keeps the groups' own bort_lambda (0 for "other")
    return Bort(base, bort_lambda, bort_mode, bort_amplitude, coupled=True)


@OPTIMIZERS.register("bort-a")
def bort_a(groups, lr: float, betas: tuple[float, float] = (0.9, 0.999), bort_lambda: float = 0.1,
           bort_mode: str = "l2", bort_amplitude: float | str = 1.0, **_) -> Bort:
    """Bort around AdamW: −lr·λΔ applied to the weights, decoupled from Adam's moments."""
    base = torch.optim.AdamW(groups, lr=lr, betas=betas)
    return Bort(base, bort_lambda, bort_mode, bort_amplitude, coupled=False)


def _without_bort(groups: list[dict]) -> list[dict]:
    return [{k: v for k, v in g.items() if not k.startswith("bort_")} for g in groups]


def is_bort(name: str) -> bool:
    return name.startswith("bort")


def create_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float = 0.0, **settings):
    """Build a registered optimizer over ``model`` with xbench's param groups."""
    if lr <= 0:
        raise XbenchError(f"learning rate must be positive, not {lr}")
    if weight_decay < 0:
        raise XbenchError(f"weight decay must be >= 0, not {weight_decay}")
    factory = OPTIMIZERS.get(name)
    try:
        return factory(param_groups(model, weight_decay), lr=lr, **settings)
    except ValueError as err:
        raise XbenchError(f"optimizer {name!r}: {err}") from err


def list_optimizers(pattern: str = "*") -> list[str]:
    return OPTIMIZERS.list(pattern)


__all__ = ["OPTIMIZERS", "Bort", "bort_delta", "check_amplitude", "MODES", "param_groups", "create_optimizer",
           "list_optimizers", "is_bort"]
