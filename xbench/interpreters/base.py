"""The interpreter contract.

    interp = create_interpreter("sat", model, space=dataset.space, k=32)
    maps = interp.attribute(x, target)      # x [B,C,H,W] in model input space, target [B] → [B,H,W] float32

Maps are raw (signed, unnormalised), at input resolution, on x's device. Normalisation or abs happens once, on the
metric side, for every method alike. ``model.eval()`` is the caller's promise and is checked. Every hyperparameter
is declared in ``settings`` (type, default, range, description; ``settings.py``), checked on creation and recorded
(``interp.hparams``) with every map; memory-only ones (batch sizes) stay out of the cache key.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from ..errors import XbenchError
from ..registry import Registry
from ..settings import Setting, check, keyed
from ..space import InputSpace

INTERPRETERS: Registry = Registry("interpreter")


class Interpreter:
    """Base class: validates inputs and hparams, owns hooks, records settings."""

    registry_name: ClassVar[str] = ""
    settings: ClassVar[dict[str, Setting]] = {}
    backend: ClassVar[str] = "xbench"  # the library doing the work: xbench, captum, saliency
    stochastic: ClassVar[bool] = False  # seeded randomness (RISE masks, SmoothGrad noise)
    baseline: ClassVar[bool] = False  # a sanity baseline (random, edge): uses no model, marked in reports

    def __init__(self, model: nn.Module, space: InputSpace | None = None, **hparams: Any):
        self.model = model
        self.space = space or InputSpace()
        self.hparams: dict[str, Any] = check(f"interpreter {self.registry_name}", self.settings, hparams)
        self._handles: list[Any] = []

    # -- the contract ---------------------------------------------------------------------------------------
    def attribute(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Maps [B,H,W] float32 for inputs [B,C,H,W]; ``target`` defaults to the predicted class."""
        if x.ndim != 4:
            raise XbenchError(f"{self.registry_name}: inputs must be [B,C,H,W], got shape {tuple(x.shape)}")
        if self.model.training:
            raise XbenchError(f"{self.registry_name}: call model.eval() first (train-mode batch norm and dropout "
                              f"make maps depend on batch-mates and chance)")
        x = x.detach()
        if target is None:
            with torch.no_grad():
                target = self.model(x).argmax(1)
        target = torch.as_tensor(target, device=x.device).long().reshape(-1)
        if target.numel() == 1 and x.shape[0] > 1:
            target = target.expand(x.shape[0])
        if target.shape[0] != x.shape[0]:
            raise XbenchError(f"{self.registry_name}: {target.shape[0]} targets for {x.shape[0]} inputs")
        maps = self._attribute(x, target)
        if maps.shape != (x.shape[0], *x.shape[-2:]):
            raise RuntimeError(f"{self.registry_name} returned {tuple(maps.shape)} for inputs {tuple(x.shape)}")
        return maps.detach().to(device=x.device, dtype=torch.float32)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- hooks: registered only inside this block, removed even on error -------------------------------------
    @contextmanager
    def hooks(self) -> Iterator["Interpreter"]:
        try:
            yield self
        finally:
            for h in self._handles:
                h.remove()
            self._handles.clear()

    def forward_hook(self, module: nn.Module, fn) -> None:
        """Register a forward hook; only valid inside ``with self.hooks():``."""
        self._handles.append(module.register_forward_hook(fn))

    # -- records ---------------------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        return {"interpreter": self.registry_name, "interp_hparams": dict(self.hparams), "backend": self.backend}

    @property
    def key(self) -> str:
        """Short hash of (name, hparams but the memory-only ones): the cache key of this interpreter's maps."""
        blob = json.dumps([self.registry_name, keyed(self.settings, self.hparams)], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


def reduce_channels(attr: torch.Tensor, how: str) -> torch.Tensor:
    """[B,C,H,W] → [B,H,W] by ``sum`` (signed, keeps IG's completeness), ``abs`` (sum of |·|) or ``max``."""
    if how == "sum":
        return attr.sum(1)
    if how == "abs":
        return attr.abs().sum(1)
    if how == "max":
        return attr.max(1).values
    raise XbenchError(f"channel reduction must be sum, abs or max, not {how!r}")


def layer_of(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """The named layer (default: the model's feature layer), resolved with ``get_submodule``."""
    name = name or getattr(model, "feature_layer", "")
    if not name:
        raise XbenchError(f"{type(model).__name__} names no feature layer; pass layer=...")
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        raise XbenchError(f"{type(model).__name__} has no layer {name!r}") from None


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B,h,w] → [B,H,W] bilinear (align_corners=False), the usual CAM upsampling."""
    if maps.shape[-2:] == tuple(size):
        return maps
    return torch.nn.functional.interpolate(maps.unsqueeze(1), size=tuple(size), mode="bilinear",
                                           align_corners=False).squeeze(1)
