"""Walking a chain model layer by layer for the weight-level metrics (seed 004): hidden outputs, cached layer inputs.

A chain model is an ``nn.Sequential`` (every xbench model but ``tv:*``). Layer ``l`` is a constrained Conv/Linear
layer; its *output* a_l is read after the activation that follows it (the layer itself when none does), so a_{L−1},
the paper's "output", is the last hidden layer's activation.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import XbenchError
from ..layers import CONSTRAINED_TYPES

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU)


def constrained_or_fail(model: nn.Module, metric: str) -> None:
    if not any(isinstance(m, CONSTRAINED_TYPES) for m in model.modules()):
        raise XbenchError(f"{metric} scores Conv/Linear weights; this model has none")


def chain_layers(model: nn.Module, metric: str) -> list[tuple[str, int, nn.Module]]:
    """(name, position, layer) of every constrained layer of a chain model, in forward order."""
    constrained_or_fail(model, metric)
    if not isinstance(model, nn.Sequential):
        raise XbenchError(f"{metric} walks the model layer by layer and needs a chain model (nn.Sequential), not "
                          f"{type(model).__name__}")
    names = [n for n, _ in model.named_children()]
    out = [(names[i], i, m) for i, m in enumerate(model) if isinstance(m, CONSTRAINED_TYPES)]
    if not out:
        raise XbenchError(f"{metric} needs Conv/Linear layers in the chain itself (not nested)")
    return out


def hidden_outputs(model: nn.Module, metric: str) -> list[tuple[str, int]]:
    """(layer name, chain position where a_l is read) for every constrained layer but the last (the logits)."""
    layers = chain_layers(model, metric)
    out = []
    for name, i, _ in layers[:-1]:
        j = i + 1 if i + 1 < len(model) and isinstance(model[i + 1], ACTIVATIONS) else i
        out.append((name, j))
    if not out:
        raise XbenchError(f"{metric} reads hidden layers; this model has a single Conv/Linear layer")
    return out


def run_to(model: nn.Sequential, x: torch.Tensor, ends: list[int]) -> list[torch.Tensor]:
    """The outputs of the chain at positions ``ends`` (one forward, stopping at the last one needed)."""
    want, outs = set(ends), {}
    for j, m in enumerate(model):
        if j > max(ends):
            break
        x = m(x)
        if j in want:
            outs[j] = x
    return [outs[j] for j in ends]


def prefix(model: nn.Sequential, end: int) -> nn.Sequential:
    """The chain up to and including position ``end``: input → a_l as a function (torch.func)."""
    return nn.Sequential(*list(model)[: end + 1])  # plain Sequential: a subclass's slice would call its __init__


def suffix(model: nn.Sequential, start: int) -> nn.Sequential:
    """The chain from position ``start`` on."""
    return nn.Sequential(*list(model)[start:])
