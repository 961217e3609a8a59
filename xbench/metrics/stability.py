"""Zeroth- and first-order stability of seed 004 (extensions.md §4.1, §4.4), per hidden layer output a_l.

Perturbations live in pixel space: x′ = x + r·u with u a seeded random direction of unit norm (one per example and
draw), so every ratio is "per unit of pixel change" whatever the dataset's normalisation. Column ``fc2`` is the map
from the image to a_2 (the activation after fc2); the last hidden column is the paper's a_{L−1}.
"""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import torch
from torch import nn

from ..settings import Setting
from ..space import PASS_ELEMENTS, inputs_per_pass
from .base import METRICS, Metric
from .chain import chain_layers, hidden_outputs, prefix, run_to

RADII = {f"radius{k}": Setting(v, f"perturbation radius {k} (norm of x′ − x in pixel space)", range="(0, inf)")
         for k, v in ((1, 0.01), (2, 0.1), (3, 1.0))}
COMMON = {**RADII,
          "seed": Setting(0, "seed of the random directions", range="[0, inf)"),
          "batch_size": Setting(1024, "perturbed inputs per pass", range="[1, inf)", memory=True)}
_P = {"l2": 2, "l1": 1, "linf": math.inf}
ACT_PATTERN = (nn.ReLU, nn.LeakyReLU)  # piecewise-linear activations: their sign pattern fixes the Jacobian


def directions(x: torch.Tensor, m: int, seed: int, p: float = 2) -> torch.Tensor:
    """[N, M, C·H·W] Gaussian directions scaled to unit ℓ_p norm (a CPU generator, so every device draws alike)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(x.shape[0], m, x[0].numel(), generator=g, dtype=torch.float32).to(x.device, x.dtype)
    return u / torch.linalg.vector_norm(u, ord=p, dim=2, keepdim=True)


def pixel_fn(model: nn.Sequential, end: int, space) -> callable:
    """Pixels → a_l (the chain up to ``end`` behind the dataset's normalisation)."""
    head = prefix(model, end)
    return lambda px: head(space.to_input(px))


def _op_norm(layer: nn.Module, in_shape, iters: int) -> float:
    """ℓ2 operator norm of the layer's linear part: exact for Linear, power iteration for Conv at its input shape."""
    w = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        return float(torch.linalg.matrix_norm(w.double(), ord=2))
    conv = lambda z: layer._conv_forward(z, w, None)  # noqa: E731
    v = torch.randn(1, *in_shape, generator=torch.Generator().manual_seed(0)).to(w.device, w.dtype)
    _, back = torch.func.vjp(conv, v)
    for _ in range(iters):
        v = back(conv(v))[0]
        v = v / v.norm()
    return float(conv(v).norm())


def _spectral(f, x: torch.Tensor, iters: int, seed: int) -> torch.Tensor:
    """σ_max of ∂f/∂x per example by power iteration on JᵀJ (torch.func jvp + vjp; examples are independent).

    Forward-mode AD loads torch's jvp decompositions on first use, which warns that torch.jit.script is deprecated
    (torch's own code, once per process): silenced here, it is not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script", category=FutureWarning)
        return _power(f, x, iters, seed)


def _power(f, x: torch.Tensor, iters: int, seed: int) -> torch.Tensor:
    _, vjp = torch.func.vjp(f, x)
    jvp = lambda v: torch.func.jvp(f, (x,), (v,))[1]  # noqa: E731
    view = (-1, *[1] * (x.ndim - 1))
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x.device, x.dtype)
    v = v / v.flatten(1).norm(dim=1).view(view)
    for _ in range(iters):
        v = vjp(jvp(v))[0]
        v = v / v.flatten(1).norm(dim=1).clamp(min=1e-30).view(view)
    return jvp(v).flatten(1).norm(dim=1).detach()


def _stats(ratios: torch.Tensor) -> tuple[float, float, float]:
    r = ratios.flatten().double()
    return float(r.max()), float(torch.quantile(r, 0.99)), float(r.median())


class _Stability(Metric):
    """Both stability metrics: per hidden layer of a chain model, pooled over every example."""

    category = "weights"
    higher_is_better = False
    level = "layer"
    needs_all = True
    pooled = True

    @classmethod
    def fits(cls, model):
        hidden_outputs(model, cls.registry_name)


@METRICS.register("stability_c1")
class StabilityC1(_Stability):
    """Zeroth-order stability C1 = ‖a_l(x′) − a_l(x)‖/‖x′ − x‖ per hidden layer: sampled lower bounds at three radii
    (max, q99, median of every pair), the local Lipschitz constant max_x ‖J(x)‖₂ (power iteration, torch.func) and
    the upper bound ∏_{k≤l} ‖W_k‖₂ (Theorem 1, ReLU: M = 1)."""

    scores = {**{f"{s}_r{k}": False for k in (1, 2, 3) for s in ("max", "q99", "median")}, "lipschitz": False,
              "upper_bound": False}
    settings = {**COMMON, "directions": Setting(16, "random directions per example", range="[1, inf)"),
                "norm": Setting("l2", "norm of x′ − x and of a_l(x′) − a_l(x) (lipschitz and upper_bound: l2 only)",
                                choices=tuple(_P)),
                "power_iters": Setting(50, "power iterations for the local Lipschitz constant (a lower bound of ‖J‖₂ that rises with them)", range="[1, inf)")}

    def protocol(self, shape):
        return {**self.params, "space": "pixel space (the dataset's normalisation is part of the map)",
                "output": "a_l after the activation following each Conv/Linear layer but the last (a_{L-1} = last)",
                "directions_law": "Gaussian, scaled to unit norm, torch.Generator(seed) on CPU, [N, M, C*H*W]",
                "precision": "sampled ratios in float64 (a double copy of the model); Lipschitz in the model's dtype",
                "upper_bound": "prod_{k<=l} ||W_k||_2 / min(std): Linear exact, Conv by 100 power iterations at its "
                               "input shape; activations and max-pools taken as 1-Lipschitz (non-overlapping pools)",
                "lipschitz": "max over examples of ||J(x)||_2, power iteration on J^T J"}

    def compute(self, model, x, y, maps):
        outs = hidden_outputs(model, self.registry_name)
        ends = [j for _, j in outs]
        self.layer_names = [n for n, _ in outs]
        p, px = _P[self.params["norm"]], self.space.to_pixels(x)
        u = directions(x, self.params["directions"], self.params["seed"], p)
        # a float64 twin for the sampled ratios: at small radii ‖a(x′) − a(x)‖ cancels most digits, and float32
        # rounding would make the ratio depend on how the passes are batched
        m64 = copy.deepcopy(model).double()
        f = lambda pix: run_to(m64, self.space.to_input(pix), ends)  # noqa: E731
        with torch.no_grad():
            clean = f(px.double())
        scores, ratios = {}, []
        for k in (1, 2, 3):
            r = self.params[f"radius{k}"]
            per = _ratios(f, px.double(), u.double(), r, clean, p, self.params["batch_size"])  # [L, N, M]
            ratios.append(per.flatten(1).cpu().numpy())
            for s, vals in zip(("max", "q99", "median"), zip(*[_stats(per[j]) for j in range(len(ends))])):
                scores[f"{s}_r{k}"] = torch.tensor([vals])
        lip = [float("nan")] * len(ends)
        up = [float("nan")] * len(ends)
        if p == 2:
            lip = [float(_spectral(pixel_fn(model, j, self.space), px, self.params["power_iters"],
                                   self.params["seed"]).max()) for j in ends]
            up = self._upper_bounds(model, x, ends)
        scores["lipschitz"], scores["upper_bound"] = torch.tensor([lip]), torch.tensor([up])
        self.details = {"ratios": np.stack(ratios).astype("float32"),
                        "radii": np.array([self.params[f"radius{k}"] for k in (1, 2, 3)])}
        return scores

    @torch.no_grad()
    def _upper_bounds(self, model, x, ends) -> list[float]:
        layers = chain_layers(model, self.registry_name)
        inputs = run_to(model, x[:1], [i - 1 for _, i, _ in layers if i > 0])
        shapes = ([tuple(x.shape[1:])] if layers[0][1] == 0 else []) + [tuple(t.shape[1:]) for t in inputs]
        bounds, prod = [], 1.0 / min(self.space.std)  # the normalisation's own Lipschitz constant
        for (_, _, layer), shape in zip(layers[:len(ends)], shapes):  # hidden layer l: the product up to l
            prod *= _op_norm(layer, shape, 100)
            bounds.append(prod)
        return bounds


def _ratios(f, px, u, r, clean, p, batch_size) -> torch.Tensor:
    """‖a_l(x + r·u) − a_l(x)‖_p / r for every example × direction: [L, N, M], in passes of ``batch_size``."""
    n, m = u.shape[:2]
    shape = px.shape[1:]
    pert = (px[:, None] + r * u.view(n, m, *shape)).flatten(0, 1)
    idx = torch.arange(n, device=px.device).repeat_interleave(m)
    step = inputs_per_pass(batch_size, tuple(shape))
    parts = []
    with torch.no_grad():
        for s in range(0, n * m, step):
            outs = f(pert[s:s + step])
            parts.append(torch.stack([torch.linalg.vector_norm((o - c[idx[s:s + step]]).flatten(1), ord=p, dim=1)
                                      for o, c in zip(outs, clean)]))
    return (torch.cat(parts, dim=1) / r).view(len(clean), n, m)


@METRICS.register("stability_c2")
class StabilityC2(_Stability):
    """First-order stability ‖J_l(x′) − J_l(x)‖_F/‖x′ − x‖₂ per hidden layer and radius (J_l = ∂a_l/∂pixels), with the
    fraction of pairs whose ReLU pattern (layers up to l) changes.

    Never a single max: a ReLU net's Jacobian is constant inside each activation region, so the ratio is 0 for a pair
    that stays in its region and ‖ΔJ‖/r — unbounded as r → 0 — for one that crosses a boundary. A max over pairs
    measures the chosen radius and the distance of the nearest boundary, not the network; the distribution per radius
    with the crossing fraction describes both (seed 004's Theorem 2: ReLU nets are only locally first-order stable).
    """

    scores = {f"{s}_r{k}": False for k in (1, 2, 3) for s in ("median", "q99", "max", "changed")}
    settings = {**COMMON, "directions": Setting(4, "random directions per example", range="[1, inf)")}

    def protocol(self, shape):
        return {**self.params, "space": "pixel space", "norms": "Frobenius of the Jacobian difference, l2 of x' - x",
                "jacobian": "torch.func vmap(jacfwd or jacrev, whichever has fewer passes)",
                "changed": "fraction of pairs where the sign pattern of any activation up to layer l differs",
                "directions_law": "as stability_c1 (same seed, same directions for the first M draws)"}

    def compute(self, model, x, y, maps):
        outs = hidden_outputs(model, self.registry_name)
        self.layer_names = [n for n, _ in outs]
        acts = [j for j, m in enumerate(model) if isinstance(m, ACT_PATTERN)]
        px = self.space.to_pixels(x)
        n, m = x.shape[0], self.params["directions"]
        u = directions(x, m, self.params["seed"]).view(n, m, *x.shape[1:])
        radii = [self.params[f"radius{k}"] for k in (1, 2, 3)]
        pts = torch.cat([px[:, None], *[px[:, None] + r * u for r in radii]], dim=1)  # [N, 1 + 3M, C, H, W]
        scores = {k: [] for k in self.scores}
        for _, end in outs:
            ratio = self._ratios(model, end, pts, radii, m)  # [3, N, M]
            changed = self._changed(model, [j for j in acts if j <= end], pts, m)  # [3, N, M]
            for k in range(3):
                r = ratio[k].flatten().double()
                for s, v in (("median", r.median()), ("q99", torch.quantile(r, 0.99)), ("max", r.max()),
                             ("changed", changed[k].double().mean())):
                    scores[f"{s}_r{k + 1}"].append(float(v))
        return {k: torch.tensor([v]) for k, v in scores.items()}

    def _ratios(self, model, end, pts, radii, m) -> torch.Tensor:
        f = pixel_fn(model, end, self.space)
        single = lambda p: f(p[None])[0].flatten()  # noqa: E731
        n_out, d = f(pts[:1, 0]).numel(), pts[0, 0].numel()
        jac = torch.func.vmap(torch.func.jacfwd(single) if d < n_out else torch.func.jacrev(single))
        per = pts.shape[1]
        chunk = max(1, PASS_ELEMENTS // (per * n_out * d))
        out = []
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script", category=FutureWarning)  # see _spectral
            for s in range(0, pts.shape[0], chunk):
                j = jac(pts[s:s + chunk].flatten(0, 1)).reshape(-1, per, n_out * d)
                diff = (j[:, 1:] - j[:, :1]).norm(dim=2).view(-1, 3, m)  # [c, 3, M]
                out.append(diff.transpose(0, 1))
        return torch.cat(out, dim=1) / torch.tensor(radii, device=pts.device).view(3, 1, 1)

    @torch.no_grad()
    def _changed(self, model, acts, pts, m) -> torch.Tensor:
        flat = pts.flatten(0, 1)
        step = inputs_per_pass(self.params["batch_size"], tuple(flat.shape[1:]))
        flips = []
        for s in range(0, len(flat), step):
            signs = [(a > 0).flatten(1) for a in run_to(model, self.space.to_input(flat[s:s + step]), acts)]
            flips.append(torch.cat(signs, dim=1))
        sign = torch.cat(flips).view(pts.shape[0], pts.shape[1], -1)
        return (sign[:, 1:] != sign[:, :1]).any(dim=2).view(-1, 3, m).transpose(0, 1)
