"""One curve engine for every perturbation metric: deletion, insertion, srg and road, in both orders.

A curve is a pixel ranking (0 = changed first) and a list of pixel counts; point p of a curve changes the pixels of
rank < counts[p]. ``order="morf"`` ranks by descending saliency, ``"lerf"`` by ascending saliency (= MoRF on the
negated map), both with the stable tie-break lower pixel index first. Several curves of one image (MoRF and LeRF
for srg and road) are built and scored in the same passes: every point of every curve of as many whole images as
fit in the input budget goes through the model at once; a point that changes no pixel is the clean image, whose
score the pass that fixed the tracked class already gave. ``fill`` says what changed pixels become: a fixed substrate
image (zero, blur, mean, black) or the noisy-linear imputation of the unchanged pixels (``imputation.impute``).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..space import inputs_per_pass

ORDERS = ("morf", "lerf")
ORDER_TEXT = {"morf": "descending saliency, stable tie-break by pixel index",
              "lerf": "ascending saliency (least relevant first), stable tie-break by pixel index"}


def pixel_order(maps: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel [B, H·W]: 0 = most salient; ties broken by pixel index (stable sort)."""
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank


def ranks(maps: torch.Tensor, orders: tuple[str, ...]) -> torch.Tensor:
    """[B, K, H·W] int32 pixel ranks, one row per order (lerf = morf of the negated map)."""
    return torch.stack([pixel_order(maps if o == "morf" else -maps) for o in orders], 1).to(torch.int32)


def tracked_scores(model, batch: torch.Tensor, cls: torch.Tensor, score: str) -> torch.Tensor:
    """[N] score of class ``cls`` [N]: softmax probability or raw logit."""
    return score_of(model(batch), cls, score)


def score_of(out: torch.Tensor, cls: torch.Tensor, score: str) -> torch.Tensor:
    """[N] score of class ``cls`` [N] in model outputs ``out`` [N, classes]."""
    if score == "softmax":
        out = out.softmax(1)
    return out.gather(1, cls[:, None])[:, 0]


def unchanged(counts: torch.Tensor, hw: int, invert: bool) -> torch.Tensor:
    """[P] bool: the curve points that change no pixel (their input is the clean image itself)."""
    return counts >= hw if invert else counts <= 0


Fill = Callable[[torch.Tensor, torch.Tensor, slice], torch.Tensor]  # (x [m,C,H,W], changed [m,Q,1,H,W]) → [m,Q,C,H,W]


def run_curves(model, x: torch.Tensor, cls: torch.Tensor, rank: torch.Tensor, counts: torch.Tensor, fill: Fill,
               score: str, batch_size: int, invert: bool = False, clean: torch.Tensor | None = None) -> torch.Tensor:
    """Scores [B, K, P] of class ``cls`` at every point of every curve.

    ``rank`` [B, K, H·W]; ``counts`` [P] pixels changed at each point; changed = (rank < count), or its complement
    with ``invert`` (insertion: the pixels not yet put back take the substrate). ``fill(x, changed, sl)`` builds the
    inputs of images ``sl``. ``clean`` [B]: the scores of the clean images, already known from the pass that fixed
    ``cls``; given, the points that change no pixel take them instead of going through the model again (and
    ``fill`` gets only the other points, in order).
    """
    b, c, h, w = x.shape
    k, n_points = rank.shape[1], len(counts)
    live = torch.ones(n_points, dtype=torch.bool, device=counts.device)
    out = torch.empty(b, k, n_points, device=x.device)
    if clean is not None:
        live = ~unchanged(counts, h * w, invert)
        out[:, :, ~live.to(x.device)] = clean.to(out.dtype)[:, None, None]
    thresholds = counts[live].to(device=x.device, dtype=torch.int32).view(1, 1, -1, 1, 1, 1)
    n_live = thresholds.shape[2]
    live = live.to(x.device)
    per_pass = max(1, inputs_per_pass(batch_size, (c, h, w), x.device) // max(1, k * n_live))  # whole images
    with torch.no_grad():
        for s in range(0, b if n_live else 0, per_pass):
            sl = slice(s, s + per_pass)
            m = min(per_pass, b - s)
            changed = rank[sl].view(m, k, 1, 1, h, w) < thresholds  # [m, K, P live, 1, H, W]
            if invert:
                changed = ~changed
            batch = fill(x[sl], changed.flatten(1, 2), sl).flatten(0, 1)
            cl = cls[sl, None].expand(m, k * n_live).reshape(-1)
            out[sl, :, live] = tracked_scores(model, batch, cl, score).view(m, k, n_live)
    return out


def substrate_fill(sub: torch.Tensor, buffer: list) -> Fill:
    """Changed pixels take the values of a substrate image ``sub`` [B,C,H,W]; one output buffer reused per pass."""
    def fill(x, changed, sl):
        m, q = changed.shape[:2]
        if not buffer or buffer[0].shape[0] < m or buffer[0].shape[1] != q:
            buffer[:] = [torch.empty(m, q, *x.shape[1:], dtype=x.dtype, device=x.device)]
        return torch.where(changed, sub[sl, None], x[:, None], out=buffer[0][:m])
    return fill


def imputed_fill(noise: torch.Tensor | None, tol: float, max_iter: int) -> Fill:
    """Changed pixels become the noisy-linear imputation of the others; ``noise`` [Q,C,H,W] per curve point."""
    from .imputation import impute

    def fill(x, changed, sl):
        m, q = changed.shape[:2]
        xs = x[:, None].expand(m, q, *x.shape[1:]).flatten(0, 1)
        nz = None if noise is None else noise[None].expand(m, *noise.shape).flatten(0, 1)
        return impute(xs, changed.flatten(0, 1), nz, tol, max_iter).view(m, q, *x.shape[1:])
    return fill


def auc(curve: torch.Tensor, frac: torch.Tensor, rule: str) -> torch.Tensor:
    """Area over the last dimension: trapezoid over pixel fractions, or the mean of the points."""
    return curve.mean(-1) if rule == "mean" else torch.trapezoid(curve, frac, dim=-1)
