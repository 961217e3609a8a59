"""Which layers Bort constrains and how their weights are viewed — shared by optim, metrics and train.

A Conv/Linear weight is viewed as ``out × (in·kh·kw)``: rows are filters (upstream ``param.view(out, -1)``).
"""
from __future__ import annotations

import torch
from torch import nn

CONSTRAINED_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def constrained_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(module name, weight) of every Conv/Linear layer, in model order; biases and norms are never constrained."""
    return [(name, m.weight) for name, m in model.named_modules() if isinstance(m, CONSTRAINED_TYPES)]


def weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A Conv/Linear weight as its out × (in·k·k) matrix."""
    return weight.reshape(weight.shape[0], -1)


def orthogonality_error(weight: torch.Tensor) -> torch.Tensor:
    """‖W Wᵀ − I‖_F / √out for one layer (0 for orthonormal rows)."""
    w = weight_matrix(weight.detach())
    gram = w @ w.T
    gram.diagonal().sub_(1.0)
    return torch.linalg.matrix_norm(gram) / w.shape[0] ** 0.5


def mean_orthogonality_error(model: nn.Module) -> float:
    """Mean of :func:`orthogonality_error` over the constrained layers (the training log's ``ortho_error``)."""
    errs = [orthogonality_error(w) for _, w in constrained_weights(model)]
    return float(torch.stack(errs).mean()) if errs else float("nan")
