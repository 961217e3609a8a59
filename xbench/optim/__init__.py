"""Optimizers: ``sgd``, ``adamw``, ``lamb`` and their Bort twins ``bort-s`` (coupled), ``bort-a`` and ``bort-l``
(decoupled).

``create_optimizer(name, model, lr=..., ...)`` builds the param groups the same way for every name (Conv/Linear
weights with weight decay; biases and everything else without), so a pair differs only in the Bort term.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import constrained_weights
from ..registry import Registry
from ..settings import Setting
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


# The numbers a training recipe gives every optimizer, declared once: each entry takes the ones it uses, and
# train's own flags (TrainConfig) point at the same objects.
SETTINGS = {
    "lr": Setting(0.01, "learning rate", range="(0, inf)"),
    "weight_decay": Setting(0.01, "weight decay on Conv/Linear weights (none on biases and norms)", range="[0, inf)"),
    "momentum": Setting(0.0, "SGD momentum", range="[0, 1)"),
    "bort_lambda": Setting(0.1, "Bort's lambda (0 = the base optimizer, bit for bit)", range="[0, inf)"),
    "bort_mode": Setting("l2", "Bort penalty: l2 (W Wt W - aW) or l1 (sign(W Wt - aI) W)", choices=MODES),
    "bort_amplitude": Setting(1.0, "Bort amplitude a, or ada = (mean row norm)^2 every step (-1: upstream's "
                                   "spelling of ada)", range="(0, inf)", choices=("ada", -1)),
}


def _take(*names: str) -> dict[str, Setting]:
    return {n: SETTINGS[n] for n in names}


_BORT = ("bort_lambda", "bort_mode", "bort_amplitude")


@OPTIMIZERS.register("sgd", settings=_take("lr", "weight_decay", "momentum"))
def sgd(model: nn.Module, *, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """Plain SGD (torch.optim.SGD), coupled weight decay."""
    return torch.optim.SGD(_without_bort(param_groups(model, weight_decay)), lr=lr, momentum=momentum)


@OPTIMIZERS.register("adamw", settings=_take("lr", "weight_decay"))
def adamw(model: nn.Module, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (torch.optim.AdamW, betas 0.9/0.999), decoupled weight decay."""
    return torch.optim.AdamW(_without_bort(param_groups(model, weight_decay)), lr=lr)


@OPTIMIZERS.register("bort-s", settings=_take("lr", "weight_decay", "momentum", *_BORT))
def bort_s(model: nn.Module, *, lr: float, weight_decay: float, momentum: float, bort_lambda: float,
           bort_mode: str, bort_amplitude: float | str) -> Bort:
    """Bort around SGD: λΔ coupled into the gradient (before weight decay and momentum)."""
    base = torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum)  # "other" keeps λ 0
    return Bort(base, bort_lambda, bort_mode, bort_amplitude, coupled=True)


@OPTIMIZERS.register("bort-a", settings=_take("lr", "weight_decay", *_BORT))
def bort_a(model: nn.Module, *, lr: float, weight_decay: float, bort_lambda: float, bort_mode: str,
           bort_amplitude: float | str) -> Bort:
    """Bort around AdamW: −lr·λΔ applied to the weights, decoupled from Adam's moments."""
    base = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    return Bort(base, bort_lambda, bort_mode, bort_amplitude, coupled=False)


@OPTIMIZERS.register("lamb", settings=_take("lr", "weight_decay"))
def lamb(model: nn.Module, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """LAMB (timm.optim.Lamb: betas 0.9/0.999, trust ratio, global grad-norm clip 1), weight decay in the update."""
    from timm.optim import Lamb

    return Lamb(_without_bort(param_groups(model, weight_decay)), lr=lr)


@OPTIMIZERS.register("bort-l", settings=_take("lr", "weight_decay", *_BORT))
def bort_l(model: nn.Module, *, lr: float, weight_decay: float, bort_lambda: float, bort_mode: str,
           bort_amplitude: float | str) -> Bort:
    """Bort around LAMB: −lr·λΔ applied to the weights, decoupled from LAMB's moments and trust ratio."""
    from timm.optim import Lamb

    base = Lamb(param_groups(model, weight_decay), lr=lr)
    return Bort(base, bort_lambda, bort_mode, bort_amplitude, coupled=False)


BASELINES = {"bort-s": "sgd", "bort-a": "adamw", "bort-l": "lamb"}  # each Bort optimizer and the one it wraps


def _without_bort(groups: list[dict]) -> list[dict]:
    return [{k: v for k, v in g.items() if not k.startswith("bort_")} for g in groups]


def is_bort(name: str) -> bool:
    return name.startswith("bort")


def create_optimizer(name: str, model: nn.Module, **settings):
    """Build a registered optimizer over ``model`` with xbench's param groups; settings are checked (``SETTINGS``)."""
    return OPTIMIZERS.create(name, model, **settings)


def list_optimizers(pattern: str = "*") -> list[str]:
    return OPTIMIZERS.list(pattern)


__all__ = ["OPTIMIZERS", "Bort", "bort_delta", "check_amplitude", "MODES", "param_groups", "create_optimizer",
           "list_optimizers", "is_bort", "SETTINGS", "BASELINES"]
