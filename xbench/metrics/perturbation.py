"""Deletion and insertion (Petsiuk et al., BMVC 2018), vectorised over images and curve points.

Default protocol = RISE's: the unit is a pixel location (all channels together), taken in descending saliency with a
stable tie-break (lower pixel index first), ``step`` pixels per step, curve points before the first and after every
step (both end points). Deletion moves pixels of the image to zeros in the model's input space; insertion moves
pixels of the image into a Gaussian-blurred copy (kernel 11, σ 5, zero padding, as RISE). The tracked score is the
softmax probability of the class the model predicts on the clean image. AUC: trapezoid rule over the actual fraction
of pixels changed, x ∈ [0, 1] (a partial last step gets its true width).

Variants: ``score="logit_normalized"`` with ``auc="mean"`` is upstream Bort's (raw logit divided by the clean score,
mean of the points — hence its negative AUCs); substrates ``zero``, ``blur``, ``mean`` (the clean image's channel
means) and ``black`` (pixel-space 0). Every curve point of a chunk of images is built and scored in batches on the
model's device; there is no Python loop per step or per image. A pass takes the curve points of as many whole
images as fit in ``batch_size`` inputs and ``space.PASS_ELEMENTS`` input values.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..space import inputs_per_pass
from ..settings import Setting
from .base import METRICS, Metric

SUBSTRATES = ("zero", "blur", "mean", "black")
SCORES = ("softmax", "logit", "logit_normalized")


def gaussian_kernel(klen: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's ``gkern``: scipy's Gaussian filter applied to a centred delta in a klen × klen array (reflect mode)."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((klen, klen))
    delta[klen // 2, klen // 2] = 1.0
    return torch.from_numpy(gaussian_filter(delta, sigma)).float()


def blur(x: torch.Tensor, klen: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Per-channel Gaussian blur with zero padding klen//2 (RISE's substrate; borders darken towards 0)."""
    c = x.shape[1]
    k = gaussian_kernel(klen, sigma).to(x.device, x.dtype).expand(c, 1, klen, klen)
    return F.conv2d(x, k, padding=klen // 2, groups=c)


def pixel_order(maps: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel [B, H·W]: 0 = most salient; ties broken by pixel index (stable sort)."""
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank


class _Perturbation(Metric):
    category = "faithfulness"
    needs_maps = True
    example_details = ("curves",)
    mode = ""
    settings = {"step": Setting(None, "pixels changed per curve step (default: about 100 steps per curve)", int,
                                range="[1, inf)", optional=True),
                "substrate": Setting(None, "what removed pixels become (default: zero for deletion, blur for "
                                           "insertion)", str, choices=SUBSTRATES, optional=True),
                "score": Setting("softmax", "tracked score of the clean prediction", choices=SCORES),
                "auc": Setting("trapezoid", "area rule: trapezoid over pixel fractions, or mean of the points "
                                            "(upstream Bort)", choices=("trapezoid", "mean")),
                "blur_klen": Setting(11, "blur kernel size (odd)", range="[1, inf)"),
                "blur_sigma": Setting(5.0, "blur Gaussian sigma", range="(0, inf)"),
                "batch_size": Setting(2048, "perturbed inputs per forward pass", range="[1, inf)", memory=True)}

    def __init__(self, space=None, **params):
        super().__init__(space, **params)
        if self.params["substrate"] is None:
            self.params["substrate"] = "zero" if self.mode == "deletion" else "blur"

    def resolved_step(self, hw: int) -> int:
        """Pixels per step; by default about 100 steps whatever the image size (28² → 8, 224² → 502)."""
        return int(self.params["step"]) if self.params["step"] is not None else max(1, math.ceil(hw / 100))

    def protocol(self, shape) -> dict[str, Any]:
        _, h, w = shape
        step = self.resolved_step(h * w)
        p = self.params
        return {"mode": self.mode, "unit": "pixel (all channels)", "step": step,
                "n_points": math.ceil(h * w / step) + 1, "endpoints": "both",
                "order": "descending saliency, stable tie-break by pixel index",
                "substrate": p["substrate"], "substrate_space": "model input" if p["substrate"] != "black" else "pixel",
                "blur_klen": p["blur_klen"], "blur_sigma": p["blur_sigma"], "blur_padding": "zeros",
                "start": "image" if self.mode == "deletion" else f"{p['substrate']} substrate",
                "score": p["score"], "tracked_class": "prediction on the clean image",
                "auc": "trapezoid over pixel fractions, x in [0,1]" if p["auc"] == "trapezoid" else "mean of points",
                "batch_size": p["batch_size"]}  # recorded; memory only, so not part of the key

    def substrate(self, x: torch.Tensor) -> torch.Tensor:
        p = self.params
        kind = p["substrate"]
        if kind == "zero":
            return torch.zeros_like(x)
        if kind == "blur":
            return blur(x, p["blur_klen"], p["blur_sigma"])
        if kind == "mean":
            return x.mean((2, 3), keepdim=True).expand_as(x).clone()
        return self.space.constant(0.0, x)

    def curves(self, model, x: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores [B, P] at every curve point, pixel fractions [P], tracked classes [B])."""
        b, c, h, w = x.shape
        hw = h * w
        step = self.resolved_step(hw)
        n_points = math.ceil(hw / step) + 1
        counts = torch.clamp(torch.arange(n_points, device=x.device) * step, max=hw)  # pixels changed per point
        rank = pixel_order(maps.to(x.device)).view(b, 1, 1, h, w).to(torch.int32)
        thresholds = counts.to(torch.int32).view(1, n_points, 1, 1, 1)
        sub = self.substrate(x)
        start, end = (x, sub) if self.mode == "deletion" else (sub, x)
        with torch.no_grad():
            cls = model(x).argmax(1)
        out = torch.empty(b, n_points, device=x.device)
        # whole images per pass (broadcast, no gathers), as many as the input budget allows
        per_pass = max(1, inputs_per_pass(self.params["batch_size"], (c, h, w)) // n_points)
        buf = torch.empty(min(per_pass, b), n_points, c, h, w, dtype=x.dtype, device=x.device)  # reused every pass
        with torch.no_grad():
            for s in range(0, b, per_pass):
                sl = slice(s, s + per_pass)
                changed = rank[sl] < thresholds  # [m, P, 1, H, W]: every curve point of m images at once
                m = min(per_pass, b - s)
                batch = torch.where(changed, end[sl, None], start[sl, None], out=buf[:m]).flatten(0, 1)
                scores = model(batch)
                if self.params["score"] == "softmax":
                    scores = scores.softmax(1)
                out[sl] = scores.view(m, n_points, -1).gather(2, cls[sl, None, None].expand(m, n_points, 1))[..., 0]
        curve = out
        if self.params["score"] == "logit_normalized":  # upstream Bort: ÷ the clean image's score
            clean = curve[:, :1] if self.mode == "deletion" else curve[:, -1:]
            curve = curve / clean
        return curve, counts.float() / hw, cls

    def compute(self, model, x, y, maps):
        curve, frac, cls = self.curves(model, x, maps)
        self.details = {"curves": curve.cpu().numpy(), "fractions": frac.cpu().numpy()}
        if self.params["auc"] == "mean":
            return curve.mean(1)
        return torch.trapezoid(curve, frac, dim=1)


@METRICS.register("deletion")
class Deletion(_Perturbation):
    """Deletion AUC (RISE): most salient pixels first to zeros in input space; softmax of the clean prediction."""

    higher_is_better = False
    mode = "deletion"


@METRICS.register("insertion")
class Insertion(_Perturbation):
    """Insertion AUC (RISE): most salient pixels first from a blurred copy back to the image."""

    higher_is_better = True
    mode = "insertion"
