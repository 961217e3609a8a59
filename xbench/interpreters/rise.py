"""RISE (Petsiuk et al., BMVC 2018): saliency from random masks, in-house and batched over masks and images.

Masks follow the paper's recipe: N binary s×s grids with keep-probability p, upsampled bilinearly to
(s+1)·⌈H/s⌉ and cropped at a random shift. One seeded mask set per (seed, N, s, p, H, W) is generated once and
reused for every image and model (fewer differences from chance between models). Masked images are
``mask · x`` in model input space (masked pixels = 0 = the dataset mean, as the paper does), scored by the softmax
probability of the target class; the map is Σ_n score_n·M_n / (N·p). A forward pass takes at most ``batch_size``
masked images and ``space.PASS_ELEMENTS`` input values.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..settings import Setting
from ..space import inputs_per_pass
from .base import INTERPRETERS, Interpreter


@lru_cache(maxsize=8)
def _masks_cpu(seed: int, n: int, s: int, p: float, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cell_h, cell_w = math.ceil(h / s), math.ceil(w / s)
    grid = (torch.rand(n, 1, s, s, generator=g) < p).float()
    up = F.interpolate(grid, size=((s + 1) * cell_h, (s + 1) * cell_w), mode="bilinear", align_corners=False)
    dy = torch.randint(0, cell_h, (n,), generator=g)
    dx = torch.randint(0, cell_w, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # [N,H,1]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # [N,1,W]
    return up[torch.arange(n)[:, None, None], 0, rows, cols].contiguous()  # [N,H,W]


def rise_masks(seed: int, n: int, s: int, p: float, h: int, w: int, device: torch.device | str = "cpu"):
    """The RISE mask set [N,H,W] for these settings (generated once, cached)."""
    return _masks_cpu(seed, n, s, float(p), h, w).to(device)


@INTERPRETERS.register("rise")
class RISE(Interpreter):
    """RISE: N random bilinear masks (s×s grid, keep-probability p, random shifts), softmax-weighted average."""

    settings = {"n_masks": Setting(4000, "number of random masks", range="[1, inf)"),
                "grid": Setting(7, "mask grid cells per side (s)", range="[1, inf)"),
                "p": Setting(0.5, "keep-probability of a grid cell", range="(0, 1)"),
                "seed": Setting(0, "seed of the mask set", range="[0, inf)"),
                "score": Setting("softmax", "what a masked image scores: softmax probability or raw logit",
                                 choices=("softmax", "logit")),
                "batch_size": Setting(4096, "masked images per forward pass", range="[1, inf)", memory=True)}
    stochastic = True

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        b, c, height, width = x.shape
        masks = rise_masks(h["seed"], h["n_masks"], h["grid"], h["p"], height, width, x.device)
        per_pass = max(1, inputs_per_pass(h["batch_size"], (c, height, width)) // b)  # masks per pass, × b images
        sal = torch.zeros(b, height * width, device=x.device)
        with torch.no_grad():
            for start in range(0, len(masks), per_pass):
                m = masks[start:start + per_pass]  # [m,H,W]
                batch = (x[:, None] * m[None, :, None]).flatten(0, 1)  # [b·m,C,H,W], image-major
                out = self.model(batch)
                scores = out.softmax(1) if h["score"] == "softmax" else out
                scores = scores.view(b, len(m), -1).gather(2, target.view(b, 1, 1).expand(b, len(m), 1))
                sal += scores.squeeze(2) @ m.flatten(1)  # [b,m] @ [m,H·W]
        return (sal / (len(masks) * h["p"])).view(b, height, width).clone()
