"""Integrated Gradients (Sundararajan et al., 2017) through captum, batched over images and steps."""
from __future__ import annotations

import torch
from captum.attr import IntegratedGradients

from ..errors import XbenchError
from ..settings import Setting
from .base import INTERPRETERS, Interpreter, reduce_channels

BASELINES = {"black": 0.0, "white": 1.0}
BASELINE = Setting("black", "baseline image: black or white in pixel space, zero in input space",
                   choices=("black", "white", "zero"))


def baseline_of(interp: Interpreter, x: torch.Tensor, name: str) -> torch.Tensor:
    """A baseline image in input space: black/white are pixel-space constants, ``zero`` is 0 in input space."""
    if name == "zero":
        return torch.zeros_like(x)
    if name not in BASELINES:
        raise XbenchError(f"baseline must be black, white or zero, not {name!r}")
    return interp.space.constant(BASELINES[name], x)


@INTERPRETERS.register("ig")
class IG(Interpreter):
    """Integrated Gradients (captum), black baseline in pixel space, channels summed (keeps completeness).

    ``internal_batch_size`` bounds the inputs per forward pass (captum chunks the steps), so memory stays bounded
    for any number of images and steps.
    """

    settings = {"n_steps": Setting(50, "integration steps", range="[1, inf)"),
                "method": Setting("gausslegendre", "captum's integration rule",
                                  choices=("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                                           "riemann_middle")),
                "baseline": BASELINE,
                "reduce": Setting("sum", "how channels become one map: sum (signed), abs (sum of |.|) or max", choices=("sum", "abs", "max")),
                "internal_batch_size": Setting(512, "inputs per forward pass (captum chunks the steps)",
                                               range="[1, inf)", memory=True)}
    backend = "captum"

    def attributions(self, x: torch.Tensor, target: torch.Tensor, baseline: str | None = None) -> torch.Tensor:
        """Per-channel IG [B,C,H,W] (XRAI reuses it with its own baselines)."""
        ig = IntegratedGradients(self.model)
        base = baseline_of(self, x, baseline or self.hparams["baseline"])
        return ig.attribute(x, baselines=base, target=target, n_steps=self.hparams["n_steps"],
                            method=self.hparams["method"],
                            internal_batch_size=max(x.shape[0], self.hparams["internal_batch_size"])).detach()

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return reduce_channels(self.attributions(x, target), self.hparams["reduce"])
