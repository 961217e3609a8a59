"""CAM (Zhou et al., 2016): the class's head weights applied to the feature maps, upsampled to the input."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import XbenchError
from ..settings import Setting
from ..backtrack_autograd import token_grid
from .base import INTERPRETERS, Interpreter, layer_of, upsample

_PASS = (nn.Flatten, nn.Dropout, nn.Identity)
_WARNED: set[tuple[str, str]] = set()


def _head(model: nn.Module, layer: str) -> tuple[str, nn.Linear | None]:
    """Classify what follows ``layer``: ('gap'|'gmp', linear) for a global pool + linear head, else ('other', None)."""
    children = list(model.named_children())
    names = [n for n, _ in children]
    if layer not in names:
        return "other", None
    rest = [m for _, m in children[names.index(layer) + 1:] if not isinstance(m, _PASS)]
    if len(rest) == 2 and isinstance(rest[1], nn.Linear):
        pool = rest[0]
        one = getattr(pool, "output_size", None) in (1, (1, 1))
        if isinstance(pool, nn.AdaptiveAvgPool2d) and one:
            return "gap", rest[1]
        if isinstance(pool, nn.AdaptiveMaxPool2d) and one:
            return "gmp", rest[1]
    return "other", None


@INTERPRETERS.register("cam")
class CAM(Interpreter):
    """Class activation map: Σ_k w_ck·A_k at the feature layer (exact for GAP+linear heads), bilinear upsampling.

    Heads that are not global-average-pool + linear are said so in a warning and recorded in ``rule``: a global
    max-pool + linear head (ACNN-Small) uses the same weighted sum, as the Bort paper and upstream do, but it is no
    longer a decomposition of the logit; any other head (LeNet's MLP) uses the local linear decomposition
    (h·w)·Σ_k A_k·∂y_c/∂A_k, which equals CAM exactly on GAP+linear heads. ``strict=True`` refuses both.
    """

    settings = {"layer": Setting(None, "feature layer by module name (default: the model's own feature layer)", str, optional=True),
                "strict": Setting(False, "refuse heads that are not global-average-pool + linear")}

    def __init__(self, model, space=None, **hparams):
        super().__init__(model, space, **hparams)
        self.layer_name, self.layer = layer_of(model, self.hparams["layer"])
        self.kind, self.linear = _head(model, self.layer_name)
        rule = {"gap": "exact", "gmp": "max-pool head (approximate)", "other": "local linear (A·∂y/∂A)"}[self.kind]
        if self.kind != "gap":
            message = (f"cam: the head after {self.layer_name!r} of {type(model).__name__} is not global-average-"
                       f"pool + linear; using the {rule} rule")
            if self.hparams["strict"]:
                raise XbenchError(message)
            if (type(model).__name__, self.layer_name) not in _WARNED:  # once per architecture, not per run
                _WARNED.add((type(model).__name__, self.layer_name))
                warnings.warn(message, stacklevel=3)
        self.hparams["rule"] = rule  # recorded, not a setting

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        store = {}
        with self.hooks():
            self.forward_hook(self.layer, lambda m, i, o: store.__setitem__("a", o))
            if self.linear is not None:
                with torch.no_grad():
                    self.model(x)
                weights = self.linear.weight[target]  # [B, K]
                cam = torch.einsum("bkhw,bk->bhw", store["a"], weights)
            else:
                with torch.enable_grad():
                    logits = self.model(x.requires_grad_(True))
                    a = store["a"]
                    score = logits.gather(1, target[:, None]).sum()
                    (grad,) = torch.autograd.grad(score, a)
                a, grad = token_grid(a, self.model), token_grid(grad, self.model)  # ViT blocks: the token grid
                cam = (a * grad).sum(1) * (a.shape[-2] * a.shape[-1])
        return upsample(cam.detach(), x.shape[-2:])
