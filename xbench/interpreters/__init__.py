"""Interpreters: ``create_interpreter("sat", model, space=...)``; ``attribute(x, target) -> [B,H,W]``."""
from __future__ import annotations

from torch import nn

from ..space import InputSpace
from .base import INTERPRETERS, Interpreter, reduce_channels
from . import baselines, cam, gradcam, guided_backprop, guided_ig, ig, rise, sat, smoothgrad, split, xrai  # noqa: F401 (registers)

MISSION = ("cam", "ig", "rise", "xrai", "guided_ig", "sat")  # the Bort paper's Table 3 interpreters
BASELINES = ("random", "edge")  # sanity baselines (no model), marked on every leaderboard


def create_interpreter(name: str, model: nn.Module, space: InputSpace | None = None, **hparams) -> Interpreter:
    """Build a registered interpreter for ``model`` (inputs in ``space``); hparams override the defaults."""
    return INTERPRETERS.create(name, model, space, **hparams)


def list_interpreters(pattern: str = "*") -> list[str]:
    return INTERPRETERS.list(pattern)


__all__ = ["BASELINES", "INTERPRETERS", "Interpreter", "MISSION", "create_interpreter", "list_interpreters", "reduce_channels"]
