"""Integrated Gradients (Sundararajan et al., 2017) through captum, batched over images and steps."""
from __future__ import annotations

import torch
from captum.attr import IntegratedGradients

from ..errors import XbenchError
from .base import INTERPRETERS, Interpreter, reduce_channels

BASELINES = {"black": 0.0, "white": 1.0}


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

    defaults = {"n_steps": 50, "method": "gausslegendre", "baseline": "black", "reduce": "sum",
                "internal_batch_size": 512}
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
