"""Deletion and insertion (Petsiuk et al., BMVC 2018), vectorised over images and curve points.

Default protocol = RISE's: the unit is a pixel location (all channels together), taken in descending saliency with a
stable tie-break (lower pixel index first), ``step`` pixels per step, curve points before the first and after every
step (both end points). Deletion moves pixels of the image to zeros in the model's input space; insertion moves
pixels of the image into a Gaussian-blurred copy (kernel 11, σ 5, zero padding, as RISE). The tracked score is the
softmax probability of the class the model predicts on the clean image. AUC: trapezoid rule over the actual fraction
of pixels changed, x ∈ [0, 1] (a partial last step gets its true width).

Orders: ``order="morf"`` (most relevant first, the default) or ``"lerf"`` (least relevant first: MoRF on the negated
map). ``srg`` (symmetric relevance gain, Blücher et al. TMLR 2024) = LeRF − MoRF deletion AUC, both curves from the
same passes. Substrate ``noisy_linear``: ROAD's imputation (``imputation.py``), solved per curve point on the device.
The curves themselves come from ``curves.py``, shared with ``road``.

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

from ..settings import Setting
from . import imputation
from .base import METRICS, Metric
from .curves import (ORDER_TEXT, ORDERS, auc, imputed_fill, pixel_order, ranks, run_curves, score_of,
                     substrate_fill, unchanged)

__all__ = ["blur", "gaussian_kernel", "pixel_order", "SUBSTRATES"]

SUBSTRATES = ("zero", "blur", "mean", "black", "noisy_linear")
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


SUBSTRATE_SETTINGS = {
    "substrate": Setting(None, "what removed pixels become (default: zero for deletion and srg, blur for insertion, "
                               "noisy_linear for road)", str, choices=SUBSTRATES, optional=True),
    "blur_klen": Setting(11, "blur kernel size (odd)", range="[1, inf)"),
    "blur_sigma": Setting(5.0, "blur Gaussian sigma", range="(0, inf)"),
    **imputation.SETTINGS}


class CurveMetric(Metric):
    """Shared by every perturbation-curve metric: substrates, fills, the curve passes."""

    category = "faithfulness"
    needs_maps = True
    example_details = ("curves",)
    default_substrate = "zero"

    def __init__(self, space=None, **params):
        super().__init__(space, **params)
        if self.params["substrate"] is None:
            self.params["substrate"] = self.default_substrate

    def substrate_protocol(self) -> dict[str, Any]:
        p = self.params
        out = {"substrate": p["substrate"], "substrate_space": "model input" if p["substrate"] != "black" else "pixel",
               "blur_klen": p["blur_klen"], "blur_sigma": p["blur_sigma"], "blur_padding": "zeros"}
        if p["substrate"] == "noisy_linear":  # only then: keys of the other substrates stay as they were
            out.update(imputation="noisy linear (ROAD): 8 neighbours, weights 1/6 edge, 1/12 diagonal; "
                                  "solved to cg_tol",
                       **{k: p[k] for k in imputation.SETTINGS})
        return out

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

    def fill(self, x: torch.Tensor, n_inputs: int, live: torch.Tensor | None = None):
        """What changed pixels become, for ``n_inputs`` inputs per image (the noise field has one per input; ``live``
        [n_inputs] bool: the inputs that are built, each keeping its own noise)."""
        p = self.params
        if p["substrate"] != "noisy_linear":
            return substrate_fill(self.substrate(x), [])
        key = ((n_inputs, *x.shape[1:]), x.device, x.dtype)
        if getattr(self, "_noise", (None,))[0] != key:  # drawn once per shape, reused by every batch
            self._noise = (key, imputation.noise_field(key[0], p["noise"], p["noise_seed"], x.device, x.dtype))
        noise = self._noise[1]
        if noise is not None and live is not None:
            noise = noise[live.to(noise.device)]
        return imputed_fill(noise, p["cg_tol"], p["cg_iters"])

    def run(self, model, x, maps, orders, counts, invert=False) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores [B, K, P] for the K orders, tracked classes [B]). The pass that fixes the tracked classes also
        scores the points that change no pixel (the clean image)."""
        score = "logit" if self.params["score"] == "logit_normalized" else self.params["score"]
        with torch.no_grad():
            out = model(x)
            cls = out.argmax(1)
            clean = score_of(out, cls, score)
        rank = ranks(maps.to(x.device), orders)
        live = ~unchanged(counts, x.shape[2] * x.shape[3], invert)
        fill = self.fill(x, len(orders) * len(counts), live.repeat(len(orders)))
        return run_curves(model, x, cls, rank, counts, fill, score, self.params["batch_size"], invert, clean), cls


class _Perturbation(CurveMetric):
    mode = ""
    orders_scored: tuple[str, ...] = ()  # empty: the one order of the ``order`` setting
    settings = {"step": Setting(None, "pixels changed per curve step (default: about 100 steps per curve)", int,
                                range="[1, inf)", optional=True),
                "order": Setting("morf", "most (morf) or least (lerf) relevant pixels first", choices=ORDERS),
                **SUBSTRATE_SETTINGS,
                "score": Setting("softmax", "tracked score of the clean prediction", choices=SCORES),
                "auc": Setting("trapezoid", "area rule: trapezoid over pixel fractions, or mean of the points "
                                            "(upstream Bort)", choices=("trapezoid", "mean")),
                "batch_size": Setting(2048, "perturbed inputs per forward pass", range="[1, inf)", memory=True)}

    def __init__(self, space=None, **params):
        self.default_substrate = "zero" if self.mode == "deletion" else "blur"
        super().__init__(space, **params)

    @property
    def orders(self) -> tuple[str, ...]:
        return self.orders_scored or (self.params["order"],)

    def resolved_step(self, hw: int) -> int:
        """Pixels per step; by default about 100 steps whatever the image size (28² → 8, 224² → 502)."""
        return int(self.params["step"]) if self.params["step"] is not None else max(1, math.ceil(hw / 100))

    def protocol(self, shape) -> dict[str, Any]:
        _, h, w = shape
        step = self.resolved_step(h * w)
        p = self.params
        sub = self.substrate_protocol()
        order = " + ".join(ORDER_TEXT[o] for o in self.orders)
        return {"mode": self.mode, "unit": "pixel (all channels)", "step": step,
                "n_points": math.ceil(h * w / step) + 1, "endpoints": "both", "order": order, **sub,
                "start": "image" if self.mode == "deletion" else f"{p['substrate']} substrate",
                "score": p["score"], "tracked_class": "prediction on the clean image",
                "auc": "trapezoid over pixel fractions, x in [0,1]" if p["auc"] == "trapezoid" else "mean of points",
                "batch_size": p["batch_size"]}  # recorded; memory only, so not part of the key

    def curves(self, model, x: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores [B, K, P] at every curve point of each order, pixel fractions [P], tracked classes [B])."""
        hw = x.shape[2] * x.shape[3]
        step = self.resolved_step(hw)
        counts = torch.clamp(torch.arange(math.ceil(hw / step) + 1, device=x.device) * step, max=hw)
        curve, cls = self.run(model, x, maps, self.orders, counts, invert=self.mode == "insertion")
        if self.params["score"] == "logit_normalized":  # upstream Bort: ÷ the clean image's score
            curve = curve / (curve[..., :1] if self.mode == "deletion" else curve[..., -1:])
        return curve, counts.float() / hw, cls

    def compute(self, model, x, y, maps):
        curve, frac, _ = self.curves(model, x, maps)
        one = curve.shape[1] == 1
        self.details = {"curves": (curve[:, 0] if one else curve).cpu().numpy(), "fractions": frac.cpu().numpy()}
        return auc(curve[:, 0], frac, self.params["auc"]) if one else auc(curve, frac, self.params["auc"])


@METRICS.register("deletion")
class Deletion(_Perturbation):
    """Deletion AUC (RISE): most (or least, order=lerf) salient pixels first to the substrate (default zeros)."""

    higher_is_better = False
    mode = "deletion"


@METRICS.register("insertion")
class Insertion(_Perturbation):
    """Insertion AUC (RISE): most (or least) salient pixels first from the substrate (default blur) to the image."""

    higher_is_better = True
    mode = "insertion"


@METRICS.register("srg")
class SRG(_Perturbation):
    """Symmetric relevance gain: LeRF − MoRF deletion AUC (Blücher et al. 2024), both curves in the same passes."""

    higher_is_better = True
    mode = "deletion"
    orders_scored = ("morf", "lerf")
    scores = {"srg": True, "morf": False, "lerf": True}
    settings = {k: v for k, v in _Perturbation.settings.items() if k != "order"}

    def compute(self, model, x, y, maps):
        a = super().compute(model, x, y, maps)  # [B, 2]: MoRF, LeRF deletion AUCs
        return {"srg": a[:, 1] - a[:, 0], "morf": a[:, 0], "lerf": a[:, 1]}
