"""Guided Backpropagation (Springenberg et al., 2015) through captum ``GuidedBackprop``."""
from __future__ import annotations

import warnings

import torch
from captum.attr import GuidedBackprop as _GBP

from ..settings import Setting
from .base import INTERPRETERS, Interpreter, reduce_channels


@INTERPRETERS.register("guided_backprop")
class GuidedBackprop(Interpreter):
    """Guided backprop (captum; overrides nn.ReLU modules), channels summed."""

    settings = {"reduce": Setting("sum", "how channels become one map: sum (signed), abs (sum of |.|) or max", choices=("sum", "abs", "max"))}
    backend = "captum"

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum warns about ReLU backward hooks on every call
            attr = _GBP(self.model).attribute(x, target=target)
        return reduce_channels(attr.detach(), self.hparams["reduce"])
