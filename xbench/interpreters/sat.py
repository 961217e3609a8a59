"""SAT, Salient Activation Tracking (Bort paper, Algorithm 1 and A.3), batched over images and channels.

For each image: y = the spatial maximum of every channel of the feature map Z; the k channels with the largest y;
for each, a map Z⁰ that is zero except the constant B at that channel's argmax; S = g(Z⁰) backtracked to the input
(``backtrack.py``); the mask M = 1[Σ_channels |S| > γ·mean(Σ_channels |S|)]; the saliency A = Σ y_i·M_i.
All k maps of all images go through g together, in chunks of at most ``max_maps`` maps. SAT explains the feature
map, not a class: the target is not used (the paper's algorithm has none).
"""
from __future__ import annotations

import torch

from ..backtrack import RELU, Backtracker, spatial, top_channels
from ..backtrack_autograd import backtracker
from ..settings import Setting
from .base import INTERPRETERS, Interpreter


@INTERPRETERS.register("sat")
class SAT(Interpreter):
    """SAT: top-k feature channels, each backtracked from its maximum, binarised and weighted by its activation."""

    settings = {"k": Setting(64, "top feature channels tracked (capped at the channel count)", range="[1, inf)"),
                "value": Setting(1000.0, "the constant B placed at each channel's maximum", range="(0, inf)"),
                "gamma": Setting(3.0, "binarisation threshold: gamma times the map's mean", range="[0, inf)"),
                "layer": Setting(None, "feature layer by module name (default: the model's own feature layer)", str, optional=True),
                "exclude_border": Setting(False, "ignore maxima on the feature map's border"),
                "relu": RELU,
                "max_maps": Setting(1024, "channel maps backtracked per pass", range="[1, inf)", memory=True)}

    def __init__(self, model, space=None, **hparams):
        super().__init__(model, space, **hparams)
        self.backtracker = backtracker(model, self.hparams["layer"], relu=self.hparams["relu"], who="sat")

    def masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y of the top-k channels [B,k], their binary masks [B,k,H,W]); k is capped at the channel count."""
        h = self.hparams
        per_pass = max(1, h["max_maps"] // h["k"])  # images per backtracking pass
        values, masks = [], []
        for xs in x.split(per_pass):
            z, trace = self.backtracker.forward(xs)
            y, channels, positions = top_channels(spatial(z), h["k"], h["exclude_border"])
            signal = self.backtracker.backward_one_hot(trace, z.shape[1:], channels, positions, h["value"])
            signal = signal.abs().sum(1)  # [b·k, H, W]
            threshold = h["gamma"] * signal.flatten(1).mean(1)
            masks.append((signal > threshold[:, None, None]).view(*y.shape, *x.shape[-2:]))
            values.append(y)
        return torch.cat(values), torch.cat(masks)

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values, masks = self.masks(x)
        return torch.einsum("bk,bkhw->bhw", values, masks.float())


def sat_by_loop(model, x: torch.Tensor, k: int = 64, value: float = 1000.0, gamma: float = 3.0,
                layer: str | None = None) -> torch.Tensor:
    """Algorithm 1 written out, one channel of one image per backtracking pass.

    The reference the batched :class:`SAT` is tested and benchmarked against; never used for real work.
    """
    bt = Backtracker(model, layer)
    out = []
    for i in range(len(x)):
        z, trace = bt.forward(x[i:i + 1])
        y = z[0].flatten(1).max(1).values
        sal = torch.zeros(x.shape[-2:], device=x.device)
        for c in y.topk(min(k, len(y))).indices.tolist():
            z0 = torch.zeros_like(z)
            z0[0, c].view(-1)[z[0, c].flatten().argmax()] = value
            s = bt.backward(z0, trace)[0].abs().sum(0)
            sal += y[c] * (s > gamma * s.mean()).float()
        out.append(sal)
    return torch.stack(out)
