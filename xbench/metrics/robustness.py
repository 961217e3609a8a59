"""Explanation robustness under input noise (Quantus MaxSensitivity and LocalLipschitzEstimate, captum
sensitivity_max): each image is perturbed ``n_samples`` times in pixel space and re-explained through the interpreter
that made its map, in batches of perturbed images; targets stay the model's predictions on the clean images (the
maps' own targets). Noise is seeded per example (seed, index), so scores depend neither on batch sizes nor on the
device; maps are scored raw (no normalisation, no abs), as Quantus's defaults for MaxSensitivity.
"""
from __future__ import annotations

import math

import torch

from ..settings import Setting
from .base import METRICS, Metric

_P = {"l2": 2, "l1": 1, "linf": math.inf}
COMMON = {"n_samples": Setting(10, "perturbed copies per image (captum 10, Quantus 200)", range="[1, inf)"),
          "norm": Setting("l2", "norm of map (and input) differences; l2 = Frobenius", choices=tuple(_P)),
          "seed": Setting(0, "noise seed (each image draws from its own generator: seed, index)", range="[0, inf)"),
          "batch_size": Setting(256, "perturbed images per interpreter call", range="[1, inf)", memory=True)}


class _Reexplain(Metric):
    """Shared loop: noise per example, perturbed images re-explained in batches, one score per image."""

    category = "robustness"
    higher_is_better = False
    needs_maps = True
    needs_explainer = True
    needs_all = True

    def _noise(self, shape, index: int) -> torch.Tensor:
        raise NotImplementedError

    def _score(self, a, a_new, dx, p) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, model, x, y, maps):
        k, p, bs = self.params["n_samples"], _P[self.params["norm"]], self.params["batch_size"]
        maps = maps.to(x.device)
        with torch.no_grad():
            target = torch.cat([model(x[s:s + bs]).argmax(1) for s in range(0, len(x), bs)])
        px = self.space.to_pixels(x)
        per_group = max(1, bs // k)  # whole images per group: their k copies explained together
        out = []
        for s in range(0, len(x), per_group):
            idx = range(s, min(len(x), s + per_group))
            dx = torch.cat([self._noise((k, *x.shape[1:]), i) for i in idx]).to(x.device, x.dtype)
            xs = self.space.to_input(px[s:s + len(idx)].repeat_interleave(k, 0) + dx)
            ts = target[s:s + len(idx)].repeat_interleave(k)
            new = torch.cat([self.explain(xs[c:c + bs], ts[c:c + bs]) for c in range(0, len(xs), bs)])
            a = maps[s:s + len(idx)].repeat_interleave(k, 0)
            out.append(self._score(a.flatten(1), new.flatten(1), dx.flatten(1), p).view(len(idx), k).amax(1))
        return torch.cat(out)


def _generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + index)  # CPU: the same noise on every device


@METRICS.register("max_sensitivity")
class MaxSensitivity(_Reexplain):
    """max over noisy copies x̃ = x + U(−r, r) (pixel space, every value) of ‖a(x̃) − a(x)‖/‖a(x)‖ (Quantus, captum)."""

    settings = {"radius": Setting(0.02, "half-width r of the uniform noise in pixel space (captum 0.02; Quantus "
                                        "0.2 in its input space)", range="(0, inf)"), **COMMON}

    def protocol(self, shape):
        return {**self.params, "noise": "U(-r, r) on every pixel value, pixel space, not clipped",
                "score": "max_k ||a(x~_k) - a(x)|| / ||a(x)||; NaN when ||a(x)|| = 0", "maps": "raw (no abs, no norm.)",
                "target": "the model's prediction on the clean image"}

    def _noise(self, shape, index):
        r = self.params["radius"]
        return (torch.rand(shape, generator=_generator(self.params["seed"], index)) * 2 - 1) * r

    def _score(self, a, a_new, dx, p):
        den = torch.linalg.vector_norm(a, ord=p, dim=1)
        num = torch.linalg.vector_norm(a_new - a, ord=p, dim=1)
        return torch.where(den > 0, num / den.clamp(min=1e-30), torch.full_like(den, float("nan")))


@METRICS.register("local_lipschitz")
class LocalLipschitz(_Reexplain):
    """max over noisy copies x̃ = x + N(0, σ²) (pixel space) of ‖a(x̃) − a(x)‖/(‖x̃ − x‖ + 1e-10) (Quantus
    LocalLipschitzEstimate, sampled, not optimised)."""

    settings = {"std": Setting(0.1, "σ of the Gaussian noise in pixel space (Quantus 0.1)", range="(0, inf)"),
                **COMMON}

    def protocol(self, shape):
        return {**self.params, "noise": "N(0, std^2) on every pixel value, pixel space, not clipped",
                "score": "max_k ||a(x~_k) - a(x)|| / (||x~_k - x|| + 1e-10), input norm in pixel space",
                "maps": "raw (Quantus normalises by the batch max by default)",
                "target": "the model's prediction on the clean image"}

    def _noise(self, shape, index):
        return torch.randn(shape, generator=_generator(self.params["seed"], index)) * self.params["std"]

    def _score(self, a, a_new, dx, p):
        return (torch.linalg.vector_norm(a_new - a, ord=p, dim=1)
                / (torch.linalg.vector_norm(dx, ord=p, dim=1) + 1e-10))
