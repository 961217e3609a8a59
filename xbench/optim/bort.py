"""The Bort optimizer (Zhang et al., ICLR 2023, Eq. 10) and its l1 variant (TPAMI 2026 extension).

Bort wraps a base optimizer and adds λ·Δ(W) for every constrained weight W (Conv/Linear, viewed out × in·k·k):

- ``l2``: Δ = W Wᵀ W − a W, the gradient of ¼‖W Wᵀ − a I‖²_F (the paper's Eq. 10 with its factor 4 absorbed);
- ``l1``: Δ = sign(W Wᵀ − a I) W, a subgradient of ½‖W Wᵀ − a I‖₁ (upstream ``l1-fullrow``).

The amplitude ``a`` is a number (default 1) or ``"ada"`` = (mean row norm)², recomputed every step; upstream
scripts spell adaptive as −1, which is accepted and mapped to ``"ada"``; other negative values are rejected.

Coupled (Bort-S): Δ joins the gradient before the base step, so it passes through weight decay and momentum exactly
as upstream ``BortS`` orders it (grad + λΔ, then + wd·p, then momentum). Decoupled (Bort-A): p ← p − lr·λ·Δ(p)
before the base step, outside Adam's moments; upstream ``BortA`` applies it after AdamW's decay, a difference of
order lr²·λ·wd. λ = 0 skips Bort entirely, so the base optimizer is reproduced bit for bit.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.optim import Optimizer

from ..layers import weight_matrix

MODES = ("l2", "l1")


def check_amplitude(amplitude: float | str) -> float | str:
    if amplitude == "ada" or amplitude == -1:
        return "ada"
    try:
        value = float(amplitude)
    except (TypeError, ValueError):
        raise ValueError(f"bort amplitude must be a positive number or 'ada', not {amplitude!r}") from None
    if value <= 0:
        raise ValueError(f"bort amplitude must be a positive number or 'ada' (-1), not {amplitude!r}")
    return value


def bort_delta(weight: torch.Tensor, mode: str = "l2", amplitude: float | str = 1.0) -> torch.Tensor:
    """Δ(W) for one weight, shaped like the weight."""
    w = weight_matrix(weight)
    a = w.norm(dim=1).mean().square() if amplitude == "ada" else amplitude
    out, inner = w.shape
    if mode == "l2":
        # W Wᵀ W associates either way; take the cheaper order (out×out Gram for wide W, in×in for tall W).
        d = (w @ w.T) @ w if out <= inner else w @ (w.T @ w)
        d = d - a * w
    elif mode == "l1":
        gram = w @ w.T
        gram.diagonal().sub_(a)
        d = torch.sign(gram) @ w
    else:
        raise ValueError(f"bort mode must be one of {MODES}, not {mode!r}")
    return d.view_as(weight)


class Bort(Optimizer):
    """Bort around any torch optimizer; shares the base's param groups, state and state_dict.

    Group keys ``bort_lambda``, ``bort_mode``, ``bort_amplitude`` and ``bort_coupled`` can differ per group; the
    default grouping (:func:`xbench.optim.param_groups`) sets ``bort_lambda = 0`` for biases and norm layers.
    """

    def __init__(self, base: Optimizer, lam: float = 0.1, mode: str = "l2", amplitude: float | str = 1.0,
                 coupled: bool = True):
        if lam < 0:
            raise ValueError(f"bort lambda must be >= 0, not {lam}")
        if mode not in MODES:
            raise ValueError(f"bort mode must be one of {MODES}, not {mode!r}")
        self.base = base
        defaults = dict(bort_lambda=lam, bort_mode=mode, bort_amplitude=check_amplitude(amplitude),
                        bort_coupled=coupled)
        # Optimizer.__init__ adopts the base's group dicts themselves (setdefault adds the bort keys), so an LR
        # scheduler or a user editing bort.param_groups edits the base too — one set of groups, as in timm Lookahead.
        super().__init__(base.param_groups, defaults)
        self.param_groups = base.param_groups
        self.state = base.state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lam = group["bort_lambda"]
            if lam == 0:
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                delta = bort_delta(p, group["bort_mode"], group["bort_amplitude"])
                if group["bort_coupled"]:
                    # upstream negates the task gradient for maximize, never the penalty
                    p.grad.add_(delta, alpha=-lam if group.get("maximize", False) else lam)
                else:
                    p.add_(delta, alpha=-group["lr"] * lam)
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups  # the base rebuilt its groups; keep sharing them
        self.state = self.base.state

    def __repr__(self) -> str:
        return f"Bort({self.base!r})"
