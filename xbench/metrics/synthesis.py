"""Adversarial synthesis without training (Bort paper §4.2.4, A.5): target's channels at the source's positions."""
from __future__ import annotations

import torch

from ..backtrack import RELU, Backtracker, spatial, top_channels
from ..backtrack_autograd import backtracker
from ..settings import Setting
from .base import METRICS, Metric, pearson


def partners(pred: torch.Tensor) -> torch.Tensor:
    """For each example i, the first later example (cyclically, by index) with a different predicted class; −1 if none.

    The next run boundary after i in the doubled sequence: one searchsorted, no loop per example.
    """
    n = len(pred)
    doubled = torch.cat([pred, pred])
    boundaries = torch.nonzero(doubled[1:] != doubled[:-1]).flatten() + 1  # q where doubled[q] != doubled[q-1]
    i = torch.arange(n, device=pred.device)
    at = torch.searchsorted(boundaries, i, right=True)
    q = boundaries[at.clamp(max=max(len(boundaries) - 1, 0))] if len(boundaries) else i
    found = (at < len(boundaries)) & (q - i < n)
    return torch.where(found, q % n, torch.full_like(i, -1))


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
    needs_all = True  # partners are found by index over the whole held-out selection, never inside a batch
    settings = {"k": Setting(64, "top feature channels used as variables", range="[1, inf)"),
                "value": Setting(1.0, "the constant B placed at each channel's maximum", range="(0, inf)"),
                "layer": Setting(None, "feature layer by module name (default: the model's own)", str, optional=True),
                "relu": RELU,
                "examples": Setting(4, "examples kept for the figure", range="[0, inf)"),
                "batch_size": Setting(64, "source images backtracked per pass", range="[1, inf)", memory=True)}

    def protocol(self, shape):
        return {**self.params, "pairs": "each image with the next image (by held-out index, cyclic) of another "
                                        "predicted class",
                "rescale": "to the source's pixel mean/std, clipped to [0,1]", "similarity": "Pearson, pixel space"}

    def compute(self, model, x, y, maps):
        p = self.params
        bt = backtracker(model, p["layer"], relu=p["relu"], who="synthesis")
        with torch.no_grad():
            pred = torch.cat([model(xs).argmax(1) for xs in x.split(p["batch_size"])])
        tgt = partners(pred)
        valid = tgt >= 0
        tgt = torch.where(valid, tgt, torch.arange(len(x), device=x.device))
        adv_px, adv_pred = zip(*(self._adversarial(model, bt, x[sl], x[tgt[sl]])
                                 for sl in _chunks(len(x), p["batch_size"])))
        adv_px, adv_pred = torch.cat(adv_px), torch.cat(adv_pred)
        src_px = self.space.to_pixels(x)
        fooling = (adv_pred == pred[tgt]).float()
        nan = torch.tensor(float("nan"), device=x.device)
        e = min(len(x), p["examples"])
        self.details = {"sources": src_px[:e].cpu().numpy(), "targets": src_px[tgt][:e].cpu().numpy(),
                        "adversarial": adv_px[:e].cpu().numpy(), "adv_pred": adv_pred[:e].cpu().numpy(),
                        "target_class": pred[tgt][:e].cpu().numpy()}
        return {"fooling": torch.where(valid, fooling, nan),
                "source_similarity": torch.where(valid, pearson(adv_px.flatten(1), src_px.flatten(1)), nan),
                "target_similarity": torch.where(valid, pearson(adv_px.flatten(1), src_px[tgt].flatten(1)), nan)}

    def _adversarial(self, model, bt: Backtracker, source: torch.Tensor, target: torch.Tensor):
        """(adversarial pixels, the model's prediction on them) for source images and their targets."""
        p = self.params
        z, trace = bt.forward(source)
        z_target, _ = bt.forward(target)
        values, channels, _ = top_channels(spatial(z_target), p["k"])  # the target's salient channels and strengths
        source_pos = spatial(z).flatten(2).argmax(2).gather(1, channels)  # ... placed where the source peaks
        adv = bt.backward_combined(trace, z.shape[1:], channels, source_pos, values * p["value"])
        src_px = self.space.to_pixels(source)
        flat = adv.flatten(1)
        flat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp(min=1e-12)
        adv_px = (flat * src_px.flatten(1).std(1, keepdim=True) + src_px.flatten(1).mean(1, keepdim=True))
        adv_px = adv_px.clamp(0, 1).view_as(source)
        with torch.no_grad():
            return adv_px, model(self.space.to_input(adv_px)).argmax(1)


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, s + size) for s in range(0, n, size)]
