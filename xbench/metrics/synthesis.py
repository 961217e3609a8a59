"""Adversarial synthesis without training (Bort paper §4.2.4, A.5): target's channels at the source's positions."""
from __future__ import annotations

import torch

from ..backtrack import Backtracker, spatial, top_channels
from .base import METRICS, Metric, pearson


def partners(pred: torch.Tensor) -> torch.Tensor:
    """For each example i, the first later example (cyclically) with a different predicted class; −1 if none."""
    b = len(pred)
    out = torch.full((b,), -1, dtype=torch.long)
    for i in range(b):
        for d in range(1, b):
            j = (i + d) % b
            if pred[j] != pred[i]:
                out[i] = j
                break
    return out


@METRICS.register("synthesis")
class Synthesis(Metric):
    """Adversarial images from the target's top-k channels at the source's positions: fooling rate, similarities.

    Z^tr = the target's top-k channels, each y_i·B at the argmax of the source's slice; X_adv = g(Z^tr) through
    the source's trace, rescaled to the source's pixel mean/std and clipped to [0,1]. Scores per source image:
    ``fooling`` (1 if the model predicts the target's class), ``source_similarity`` and ``target_similarity``
    (Pearson correlation with each image in pixel space).
    """

    category = "robustness"
    higher_is_better = True
    scores = {"fooling": True, "source_similarity": True, "target_similarity": False}
    defaults = {"k": 64, "value": 1.0, "layer": None, "relu": "guided", "examples": 4}

    def protocol(self, shape):
        return {**self.params, "pairs": "each image with the next image of another predicted class",
                "rescale": "to the source's pixel mean/std, clipped to [0,1]", "similarity": "Pearson, pixel space"}

    def compute(self, model, x, y, maps):
        p = self.params
        bt = Backtracker(model, p["layer"], relu=p["relu"])
        with torch.no_grad():
            pred = model(x).argmax(1)
        z, trace = bt.forward(x)
        z4 = spatial(z)
        tgt = partners(pred.cpu()).to(x.device)
        valid = tgt >= 0
        tgt = torch.where(valid, tgt, torch.arange(len(x), device=x.device))
        values, channels, _ = top_channels(z4[tgt], p["k"])  # the target's salient channels and strengths
        source_pos = z4.flatten(2).argmax(2).gather(1, channels)  # ... placed where the source peaks
        b, k = channels.shape
        adv = bt.backward_combined(trace, z.shape[1:], channels, source_pos, values * p["value"])
        src_px = self.space.to_pixels(x)
        flat = adv.flatten(1)
        flat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp(min=1e-12)
        adv_px = (flat * src_px.flatten(1).std(1, keepdim=True) + src_px.flatten(1).mean(1, keepdim=True))
        adv_px = adv_px.clamp(0, 1).view_as(x)
        with torch.no_grad():
            adv_pred = model(self.space.to_input(adv_px)).argmax(1)
        fooling = (adv_pred == pred[tgt]).float()
        nan = torch.tensor(float("nan"), device=x.device)
        e = min(b, p["examples"])
        self.details = {"sources": src_px[:e].cpu().numpy(), "targets": src_px[tgt][:e].cpu().numpy(),
                        "adversarial": adv_px[:e].cpu().numpy(), "adv_pred": adv_pred[:e].cpu().numpy(),
                        "target_class": pred[tgt][:e].cpu().numpy()}
        return {"fooling": torch.where(valid, fooling, nan),
                "source_similarity": torch.where(valid, pearson(adv_px.flatten(1), src_px.flatten(1)), nan),
                "target_similarity": torch.where(valid, pearson(adv_px.flatten(1), src_px[tgt].flatten(1)), nan)}
