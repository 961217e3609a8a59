"""ROAD (Rong et al., ICML 2022): remove the top (MoRF) or bottom (LeRF) p % of pixels at a grid of percentages,
impute them (noisy-linear by default), and track the clean prediction's score.

Scores per image: ``road_morf`` and ``road_lerf`` are the means of the score over the grid (lower MoRF, higher LeRF
is better); ``road`` = road_lerf − road_morf (higher is better; grad-cam's ROADCombined is half of it). At p %,
int(H·W·p/100) pixels are removed (ROAD's rounding). Both orders and every percentage of as many images as fit go
through the model in the same passes (``curves.py``); the imputation of all of them is one batched solve.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import XbenchError
from ..settings import Setting
from .base import METRICS
from .curves import ORDER_TEXT
from .perturbation import SUBSTRATE_SETTINGS, CurveMetric

GRID = "10,20,30,40,50,60,70,80,90"


def parse_percentages(text: str) -> list[float]:
    """``"10,20,50"`` → [10.0, 20.0, 50.0]: numbers in (0, 100], sorted, without repeats; else one-line error."""
    try:
        values = sorted({float(v) for v in str(text).replace(";", ",").split(",") if v.strip()})
    except ValueError:
        values = []
    if not values or values[0] <= 0 or values[-1] > 100:
        raise XbenchError(f"metric road: percentages={text!r} is not a list of percentages; allowed: numbers in "
                          f"(0, 100] separated by commas, e.g. {GRID}")
    return values


@METRICS.register("road")
class ROAD(CurveMetric):
    """ROAD: LeRF − MoRF mean score over removal percentages, noisy-linear imputation batched on the device."""

    higher_is_better = True
    default_substrate = "noisy_linear"
    scores = {"road": True, "road_morf": False, "road_lerf": True}
    settings = {"percentages": Setting(GRID, "percentages of pixels removed, comma separated, each in (0, 100]"),
                **SUBSTRATE_SETTINGS,
                "score": Setting("softmax", "tracked score of the clean prediction", choices=("softmax", "logit")),
                "batch_size": Setting(2048, "perturbed inputs per forward pass", range="[1, inf)", memory=True)}

    def __init__(self, space=None, **params):
        super().__init__(space, **params)
        self.percentages = parse_percentages(self.params["percentages"])

    def protocol(self, shape) -> dict[str, Any]:
        _, h, w = shape
        return {"unit": "pixel (all channels)", "percentages": self.percentages,
                "counts": [int(h * w * p / 100) for p in self.percentages],
                "order": {o: ORDER_TEXT[o] for o in ("morf", "lerf")}, **self.substrate_protocol(),
                "score": self.params["score"], "tracked_class": "prediction on the clean image",
                "aggregate": "mean over percentages; road = lerf - morf", "batch_size": self.params["batch_size"]}

    def compute(self, model, x, y, maps):
        hw = x.shape[2] * x.shape[3]
        counts = torch.tensor([int(hw * p / 100) for p in self.percentages], device=x.device)
        curve, _ = self.run(model, x, maps, ("morf", "lerf"), counts)
        self.details = {"curves": curve.cpu().numpy(), "percentages": torch.tensor(self.percentages).numpy()}
        morf, lerf = curve[:, 0].mean(1), curve[:, 1].mean(1)
        return {"road": lerf - morf, "road_morf": morf, "road_lerf": lerf}
