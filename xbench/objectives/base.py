"""The objective contract: how a training batch becomes a loss (orthogonal to the optimizer).

    objective = create_objective("adv-l1", space=dataset.space, eps=0.1, steps=1)
    loss, logits = objective(model, x, y)      # x in model input space; logits of what was trained on

Radii and penalty weights are in *pixel space* ([0, 1] per channel): an objective takes the dataset's
:class:`~xbench.space.InputSpace` and attacks ``to_input(to_pixels(x) + δ)``, so ``--adv-eps 0.1`` means a tenth
of the pixel range on every dataset, whatever its normalisation.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from ..settings import Setting, check
from ..space import InputSpace

OBJECTIVES: Registry = Registry("objective")


class Objective:
    """Base class: settings checked once; ``__call__(model, x, y) -> (loss, logits)``."""

    registry_name: ClassVar[str] = ""
    settings: ClassVar[dict[str, Setting]] = {}

    def __init__(self, space: InputSpace | None = None, **hparams: Any):
        self.space = space or InputSpace()
        self.hparams: dict[str, Any] = check(f"objective {self.registry_name}", self.settings, hparams)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


@OBJECTIVES.register("erm")
class ERM(Objective):
    """Plain training: the mean cross-entropy of the clean batch."""

    def __call__(self, model, x, y):
        logits = model(x)
        return F.cross_entropy(logits, y), logits


@contextmanager
def frozen_norm_statistics(model: nn.Module) -> Iterator[None]:
    """Batch-norm running statistics as they were before the block (attack passes must not move them)."""
    saved = [(b, b.detach().clone()) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def input_gradient(model: nn.Module, space: InputSpace, pixels: torch.Tensor, y: torch.Tensor,
                   create_graph: bool = False, logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example ∂ℓ/∂pixels, the per-example losses) for ℓ = cross-entropy, at ``pixels`` (pixel space).

    ``logits``: the model's output at ``pixels`` when already computed (from ``pixels`` with grad).
    """
    with torch.enable_grad():  # also under no_grad (an attack needs its gradient wherever it runs)
        if logits is None:
            pixels = pixels if pixels.requires_grad else pixels.detach().requires_grad_(True)
            logits = model(space.to_input(pixels))
        losses = F.cross_entropy(logits, y, reduction="none")
        # the sum's gradient is every example's own gradient: examples do not mix (but for train-mode batch norm)
        (grad,) = torch.autograd.grad(losses.sum(), pixels, create_graph=create_graph)
    return grad, losses
