"""Metrics: ``create_metric("deletion", space=...)``; ``metric(model, x, y, maps) -> {score: Tensor[B]}``."""
from __future__ import annotations

from ..space import InputSpace
from .base import CATEGORIES, METRICS, Metric, check_category, pearson
from . import (complexity, decomposition, invertibility, perturbation, road, robustness, stability,  # noqa: F401
               synthesis, weight_props, weights)

for _name in METRICS.list():
    check_category(METRICS.get(_name))


def create_metric(name: str, space: InputSpace | None = None, **params) -> Metric:
    """Build a registered metric; params override its defaults."""
    return METRICS.create(name, space, **params)


def list_metrics(pattern: str = "*") -> list[str]:
    return METRICS.list(pattern)


__all__ = ["METRICS", "Metric", "CATEGORIES", "create_metric", "list_metrics", "pearson"]
