"""Sanity baselines (no model): ``random`` (seeded uniform noise) and ``edge`` (Sobel magnitude of the image).

An interpreter that does not beat ``random`` under a metric explains nothing that metric can see; ``edge`` tells
whether a metric rewards image structure alone (Adebayo et al., 2018). Both are ordinary interpreters (cached, scored,
on every leaderboard) with ``baseline = True``, which records carry and reports mark.

``random`` is batch-independent and reproducible without a generator per image: each pixel's value is an integer
hash (lowbias32) of (seed, a hash of the image's quantised values, pixel index), mapped to [0, 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..settings import Setting
from .base import INTERPRETERS, Interpreter

_MASK = 0xFFFFFFFF


def _mix(v: torch.Tensor) -> torch.Tensor:
    """lowbias32 (Chris Wellons) on int64 tensors holding 32-bit values; exact, elementwise."""
    v = v & _MASK
    v = ((v ^ (v >> 16)) * 0x7FEB352D) & _MASK
    v = ((v ^ (v >> 15)) * 0x846CA68B) & _MASK
    return v ^ (v >> 16)


def image_hash(x: torch.Tensor) -> torch.Tensor:
    """[B] int64: a hash of each image's values quantised to 1e-3 (exact integer arithmetic: batch-independent)."""
    q = torch.round(x.detach().double() * 1000).to(torch.int64).flatten(1) & _MASK
    pos = _mix(torch.arange(q.shape[1], device=x.device, dtype=torch.int64) + 0x9E3779B9)
    return _mix((_mix(q ^ pos) * (pos | 1)).sum(1) & _MASK)


@INTERPRETERS.register("random")
class Random(Interpreter):
    """Sanity baseline: seeded uniform noise in [0, 1), a different map per image, no model."""

    settings = {"seed": Setting(0, "seed of the noise", range="[0, inf)")}
    stochastic = True
    baseline = True

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        idx = torch.arange(h * w, device=x.device, dtype=torch.int64)
        seed = _mix(torch.tensor(self.hparams["seed"], device=x.device, dtype=torch.int64) + 0x632BE5AB)
        v = _mix(_mix(image_hash(x)[:, None] ^ seed) + idx[None] * 0x2545F491)
        return (v.double() / 2 ** 32).float().view(b, h, w)


@INTERPRETERS.register("edge")
class Edge(Interpreter):
    """Sanity baseline: Sobel gradient magnitude of the image (summed over channels), no model."""

    settings = {"of": Setting("pixel", "take the edges of the pixel image or of the model input",
                                 choices=("pixel", "input"))}
    baseline = True

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        img = self.space.to_pixels(x) if self.hparams["of"] == "pixel" else x
        c = img.shape[1]
        k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=img.dtype, device=img.device)
        kernels = torch.stack([k, k.t()])[:, None].repeat(c, 1, 1, 1)  # [2C, 1, 3, 3]: gx, gy per channel
        g = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), kernels, groups=c)
        return g.view(x.shape[0], c, 2, *x.shape[-2:]).pow(2).sum(2).sqrt().sum(1)
