"""Guided Integrated Gradients (Kapishnikov et al., 2021): torch ops batched over images (``backend="torch"``,
``guided_ig_torch.py``), or PAIR ``saliency.core.GuidedIG`` one image at a time (``backend="pair"``, the reference).

Decision on numpy ≥ 2.4 (PAIR calls the removed ``np.quantile(interpolation=)``): keep PAIR as the reference
implementation and run it under a numpy shim scoped to PAIR's guided_ig module and to the call
(``_pair.guided_ig_numpy_shim``), rather than pinning numpy below 2.4 for the whole environment or re-implementing
the greedy path. Tests pin the decision: the unshimmed call fails on numpy ≥ 2.4, the shimmed one equals IG on the
straight path when max_dist = 0, and numpy is untouched afterwards.
"""
from __future__ import annotations

import numpy as np
import torch

import saliency.core as pair

from ..settings import Setting
from .base import INTERPRETERS, Interpreter, reduce_channels
from ._pair import call_model_function, guided_ig_numpy_shim, to_hwc
from .guided_ig_torch import guided_ig
from .ig import BASELINE, baseline_of


@INTERPRETERS.register("guided_ig")
class GuidedIG(Interpreter):
    """Guided IG (torch, batched; or PAIR), black baseline in pixel space; upstream Bort's setting (25 steps, 0.5, 1.0)."""

    settings = {"x_steps": Setting(25, "steps along the guided path", range="[1, inf)"),
                "fraction": Setting(0.5, "fraction of features moved per step", range="(0, 1]"),
                "max_dist": Setting(1.0, "largest L1 distance from the straight path, relative", range="[0, 1]"),
                "baseline": BASELINE,
                "reduce": Setting("sum", "how channels become one map: sum (signed), abs (sum of |.|) or max", choices=("sum", "abs", "max")),
                "backend": Setting("torch", "torch: batched torch ops on the input's device; pair: PAIR's numpy loop, "
                                            "one image at a time (the reference)", choices=("torch", "pair"))}
    backend = "xbench"

    def __init__(self, model, space=None, **hparams):
        super().__init__(model, space, **hparams)
        self.backend = "saliency" if self.hparams["backend"] == "pair" else "xbench"

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        base = baseline_of(self, x, h["baseline"])
        if h["backend"] == "torch":
            attr = guided_ig(self.model, x, base, target, h["x_steps"], h["fraction"], h["max_dist"])
            return reduce_channels(attr, h["reduce"]).float()
        cmf = call_model_function(self.model, x.device)
        gig = pair.GuidedIG()
        out = []
        with guided_ig_numpy_shim():
            for i in range(x.shape[0]):  # PAIR's greedy path is sequential per image
                attr = gig.GetMask(to_hwc(x[i]), cmf, {"target": int(target[i])}, x_baseline=to_hwc(base[i]),
                                   x_steps=h["x_steps"], fraction=h["fraction"], max_dist=h["max_dist"])
                out.append(torch.from_numpy(np.asarray(attr, dtype=np.float32)).permute(2, 0, 1))
        return reduce_channels(torch.stack(out), h["reduce"]).to(x.device)
