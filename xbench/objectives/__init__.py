"""Training objectives (``--method``): how a batch becomes a loss. ``erm`` and norm-regularised adversarial training.

    objective = create_objective("adv-group", space=dataset.space, eps=0.4, steps=3)
    loss, logits = objective(model, x, y)
"""
from __future__ import annotations

from ..space import InputSpace
from .base import OBJECTIVES, Objective
from . import adversarial  # noqa: F401  (registers the adversarial objectives)


def create_objective(name: str, space: InputSpace | None = None, **settings) -> Objective:
    """Build a registered objective for inputs in ``space``; settings override the declared defaults."""
    return OBJECTIVES.create(name, space, **settings)


def list_objectives(pattern: str = "*") -> list[str]:
    return OBJECTIVES.list(pattern)


__all__ = ["OBJECTIVES", "Objective", "create_objective", "list_objectives"]
