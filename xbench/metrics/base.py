"""The metric contract.

    metric = create_metric("deletion", space=dataset.space, step=10)
    scores = metric(model, x, y, maps)      # {score name: Tensor[B]} — one value per example, no aggregation

Settings go to ``__init__``, data to ``__call__``. Class attributes say what a metric is: ``category``
(faithfulness, invertibility, decomposition, robustness, complexity, weights), ``higher_is_better`` (of its primary
score), ``needs_maps``. A metric may give several named scores (``scores`` maps each name to its direction; the
first is the primary). Layer-level metrics (``level = "layer"``) return [B, L] per score (one column per layer named
in ``layer_names``); model-level ones that need no data, and ``pooled`` ones (a correlation or quantiles over every
example), return [1, L]. ``details`` keeps arrays worth a figure
(curves, histograms, reconstructions) from the last call. A metric with ``needs_explainer`` re-explains inputs
it perturbs: the caller passes ``explain=interp.attribute`` (inputs [B,C,H,W], targets [B] → maps [B,H,W]).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import XbenchError
from ..registry import Registry
from ..settings import Setting, check, keyed
from ..space import InputSpace

METRICS: Registry = Registry("metric")
CATEGORIES = ("faithfulness", "invertibility", "decomposition", "robustness", "complexity", "weights")


class Metric:
    """Base class: settings, validation, records."""

    registry_name: ClassVar[str] = ""
    category: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    needs_maps: ClassVar[bool] = False
    level: ClassVar[str] = "example"  # or "layer"
    needs_data: ClassVar[bool] = True  # False: scores the weights only, called once per model
    example_details: ClassVar[tuple[str, ...]] = ()  # details with one row per example (joined across batches)
    scores: ClassVar[dict[str, bool]] = {}  # extra named scores → higher_is_better; empty = one score
    needs_all: ClassVar[bool] = False  # sees every example in one call (pairs examples), batches inside
    needs_explainer: ClassVar[bool] = False  # re-explains perturbed inputs through ``explain`` (implies needs_maps)
    pooled: ClassVar[bool] = False  # one value per layer from all examples together (a correlation, quantiles): [1, L]
    settings: ClassVar[dict[str, Setting]] = {}

    def __init__(self, space: InputSpace | None = None, **params: Any):
        self.space = space or InputSpace()
        self.params: dict[str, Any] = check(f"metric {self.registry_name}", self.settings, params)
        self.layer_names: list[str] = []
        self.details: dict[str, Any] = {}

    @classmethod
    def score_directions(cls) -> dict[str, bool]:
        return dict(cls.scores) if cls.scores else {cls.registry_name: cls.higher_is_better}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 maps: torch.Tensor | None = None, explain=None) -> dict[str, torch.Tensor]:
        if model.training:
            raise XbenchError(f"{self.registry_name}: call model.eval() first")
        if self.needs_maps:
            if maps is None:
                raise XbenchError(f"{self.registry_name} scores saliency maps; give it maps")
            if maps.shape != (x.shape[0], *x.shape[-2:]):
                raise XbenchError(f"{self.registry_name}: maps {tuple(maps.shape)} do not match inputs "
                                  f"{tuple(x.shape)}")
        if self.needs_explainer and explain is None:
            raise XbenchError(f"{self.registry_name} re-explains perturbed inputs; give it explain=interp.attribute")
        self.explain = explain
        self.details = {}
        out = self.compute(model, x, y, maps)
        if isinstance(out, torch.Tensor):
            out = {next(iter(self.score_directions())): out}
        return {k: v.detach().float().cpu() for k, v in out.items()}

    def compute(self, model, x, y, maps) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError

    def protocol(self, shape: tuple[int, int, int]) -> dict[str, Any]:
        """The full protocol for records: settings with everything resolved for inputs of ``shape``."""
        return dict(self.params)

    def key(self, shape: tuple[int, int, int]) -> str:
        """Short hash of the protocol without memory-only settings: the job's identity in results and side files."""
        blob = json.dumps([self.registry_name, keyed(self.settings, self.protocol(shape))], sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation of two [B, N] tensors (0 where either row is constant)."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 0, (a * b).sum(1) / den.clamp(min=1e-30), torch.zeros_like(den))


def check_category(cls) -> None:
    if cls.category not in CATEGORIES:
        raise ValueError(f"{cls.__name__}.category must be one of {CATEGORIES}")
