"""The DC split's pieces (``dc.py``): the pair type, the rule table keyed by module type, and the gradient helpers.

A rule maps (module, s_in, d_in, d_out, context) to s_out, where s = a⁺ + a⁻ and d = a⁺ − a⁻ (d_out is the model's
own module applied to d_in). The derivations sit in ``dc.py``'s docstring.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import XbenchError

AFFINE = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class Split:
    """One tensor as a pair: s = a⁺ + a⁻ (common mode), d = a⁺ − a⁻ (the activation itself)."""

    s: torch.Tensor
    d: torch.Tensor

    @property
    def pos(self) -> torch.Tensor:
        return (self.s + self.d) / 2

    @property
    def neg(self) -> torch.Tensor:
        return (self.s - self.d) / 2

    @staticmethod
    def of_pair(pos: torch.Tensor, neg: torch.Tensor) -> "Split":
        return Split(pos + neg, pos - neg)


def center(x: torch.Tensor) -> Split:
    """The input split x⁺ = ReLU(x), x⁻ = ReLU(−x)."""
    return Split(x.abs(), x)


class ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient times ``factor`` (the α-shift on the common mode)."""

    @staticmethod
    def forward(ctx, s, factor):
        ctx.factor = factor
        return s.view_as(s)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


class StreamGrad(torch.autograd.Function):
    """Identity forward on (s, d); backward scales ∂/∂a⁺ by kp and ∂/∂a⁻ by kn (elementwise)."""

    @staticmethod
    def forward(ctx, s, d, kp, kn):
        ctx.save_for_backward(kp, kn)
        return s.view_as(s), d.view_as(d)

    @staticmethod
    def backward(ctx, gs, gd):
        kp, kn = ctx.saved_tensors
        plus, minus = (gs + gd) * kp, (gs - gd) * kn  # δ⁺ = σ + ρ, δ⁻ = σ − ρ, each scaled
        return (plus + minus) / 2, (plus - minus) / 2, None, None


class Replace(torch.autograd.Function):
    """Forward ``new`` (a recentred s); backward passes the gradient to the old s unchanged."""

    @staticmethod
    def forward(ctx, old, new):
        return new.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def ratio(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(old > 0, new / old.clamp(min=torch.finfo(old.dtype).tiny), torch.ones_like(old))


# -- the rule table: module type → s′ from (module, s, d_in, d_out, context) ------------------------------------
def _affine_rule(m, s, d_in, d_out, c):
    w, b = c.abs_weights(m)
    if isinstance(m, nn.Linear):
        return F.linear(s, w, b)
    return F.conv2d(s, w, b, m.stride, m.padding, m.dilation, m.groups)


def _norm_rule(m, s, d_in, d_out, c):
    if m in c.folded:  # already in the conv before it
        return s
    scale, shift = bn_affine(m)
    view = (1, -1) + (1,) * (s.ndim - 2)
    return scale.abs().view(view) * s + shift.abs().view(view)


def _relu_rule(m, s, d_in, d_out, c):
    if c.relu == "half":
        return s
    negative = d_in.clamp(max=0)  # −ReLU(−d)
    return s - negative if c.relu == "max" else s + negative


def _maxpool_rule(m, s, d_in, d_out, c):
    if c.maxpool == "wta":
        _, idx = F.max_pool2d(d_in, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)
        return s.flatten(2).gather(2, idx.flatten(2)).view_as(d_out)
    window_sum = F.avg_pool2d(s - d_in, m.kernel_size, m.stride, m.padding, m.ceil_mode, True, divisor_override=1)
    # max pooled again rather than d_out reused: s′ must not depend on d′, or ∂/∂d′ would count s′'s path twice
    return F.max_pool2d(d_in, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode) + window_sum


def _adaptive_maxpool_rule(m, s, d_in, d_out, c):
    if c.maxpool == "wta":
        _, idx = F.adaptive_max_pool2d(d_in, m.output_size, return_indices=True)
        return s.flatten(2).gather(2, idx.flatten(2)).view_as(d_out)
    if any(i % o for i, o in zip(d_in.shape[-2:], d_out.shape[-2:])):
        raise XbenchError(f"dc split: adaptive max pooling {tuple(d_in.shape[-2:])} → {tuple(d_out.shape[-2:])} "
                          f"has unequal windows; only whole divisions are supported")
    kh, kw = (i // o for i, o in zip(d_in.shape[-2:], d_out.shape[-2:]))
    return F.adaptive_max_pool2d(d_in, m.output_size) + F.adaptive_avg_pool2d(s - d_in, m.output_size) * (kh * kw)


RULES: dict[type, Callable] = {
    nn.Conv2d: _affine_rule, nn.Linear: _affine_rule, nn.BatchNorm1d: _norm_rule, nn.BatchNorm2d: _norm_rule,
    nn.ReLU: _relu_rule, nn.MaxPool2d: _maxpool_rule, nn.AdaptiveMaxPool2d: _adaptive_maxpool_rule,
    nn.AvgPool2d: lambda m, s, d_in, d_out, c: F.avg_pool2d(s, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                                              m.count_include_pad, m.divisor_override),
    nn.AdaptiveAvgPool2d: lambda m, s, d_in, d_out, c: F.adaptive_avg_pool2d(s, m.output_size),
    nn.Flatten: lambda m, s, d_in, d_out, c: s.flatten(m.start_dim, m.end_dim),
    nn.Dropout: lambda m, s, d_in, d_out, c: s,
    nn.Identity: lambda m, s, d_in, d_out, c: s,
}
# functions and tensor methods between modules: residual addition, and shape changes applied to both streams
ADD = (operator.add, operator.iadd, torch.add)
RESHAPE_FUNCTIONS = (torch.flatten, torch.reshape)
RESHAPE_METHODS = ("flatten", "view", "reshape", "contiguous")
SHAPE_METHODS = ("size", "dim")


def bn_affine(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval batch norm as y = scale·x + shift (per channel)."""
    scale = m.weight.detach() if m.affine else torch.ones_like(m.running_var)
    scale = scale / torch.sqrt(m.running_var + m.eps)
    shift = (m.bias.detach() if m.affine else 0) - m.running_mean * scale
    return scale, shift


@dataclass
class Context:
    relu: str
    maxpool: str
    folded: dict  # conv/linear → the batch norm folded into it; also bn → conv
    cache: dict = field(default_factory=dict)

    def abs_weights(self, m: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(|W|, |b|) of the affine map, with a following batch norm folded in; once per forward pass."""
        if m not in self.cache:
            w = m.weight.detach()
            b = m.bias.detach() if m.bias is not None else None
            bn = self.folded.get(m)
            if bn is not None:
                scale, shift = bn_affine(bn)
                w = w * scale.view(-1, *([1] * (w.ndim - 1)))
                b = (b if b is not None else 0) * scale + shift
            self.cache[m] = (w.abs(), None if b is None else b.abs())
        return self.cache[m]
