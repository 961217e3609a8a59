"""Weight-level interpretability of seed 004 (extensions.md §4): sparsity, disentanglement, faithfulness per layer.

Rows of a layer are the rows of its weight viewed ``out × (in·k·k)`` (a conv's rows are its flattened filters, as in
Bort). Sparsity and disentanglement read the weights only; faithfulness needs held-out data.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..layers import constrained_weights, weight_matrix
from ..settings import Setting
from ..space import inputs_per_pass
from .base import METRICS, Metric, pearson
from .chain import ACTIVATIONS, chain_layers, constrained_or_fail, run_to, suffix

COS_EDGES = np.linspace(-1.0, 1.0, 81)  # fixed bins: every model's cosine histograms line up


class _WeightRows(Metric):
    """A metric of each Conv/Linear weight matrix alone (rows = out × in·k·k, float64): one value per layer, no data.
    Subclasses say what ``of_matrix`` makes of one matrix; extra keys it returns stay in ``self.layer_values``."""

    category = "weights"
    level = "layer"
    needs_data = False

    @classmethod
    def fits(cls, model):
        constrained_or_fail(model, cls.registry_name)

    def compute(self, model, x, y, maps):
        self.fits(model)
        layers = [(name, self.of_matrix(weight_matrix(w.detach()).double())) for name, w in constrained_weights(model)]
        self.layer_names = [name for name, _ in layers]
        self.layer_values = [values for _, values in layers]
        return {k: torch.tensor([[float(v[k]) for v in self.layer_values]]) for k in self.scores}

    def of_matrix(self, m: torch.Tensor) -> dict:
        raise NotImplementedError


@METRICS.register("weight_sparsity")
class WeightSparsity(_WeightRows):
    """Per Conv/Linear layer: ‖W‖_{1,1}, ‖W‖_{2,1}, mean |w| (seed 004's Table 2), fractions of weights and rows under
    a threshold (needs no data)."""

    higher_is_better = False
    scores = {"mean_abs": False, "l11": False, "l21": False, "weights_below": True, "rows_below": True}
    settings = {"weight_threshold": Setting(1e-3, "a weight counts as zero when |w| is below this", range="(0, inf)"),
                "row_threshold": Setting(1e-3, "a row counts as zero when its l2 norm is below this", range="(0, inf)")}

    def protocol(self, shape):
        return {**self.params, "rows": "W viewed out x (in*k*k); conv rows = flattened filters",
                "l11": "sum |w|", "l21": "sum over rows of ||W_i||_2", "mean_abs": "||W||_{1,1} / numel (paper Table 2)",
                "weights_below": "fraction of |w| < weight_threshold", "rows_below": "fraction of ||W_i||_2 < row_threshold"}

    def of_matrix(self, m):
        rows = m.norm(dim=1)
        return {"mean_abs": m.abs().mean(), "l11": m.abs().sum(), "l21": rows.sum(),
                "weights_below": (m.abs() < self.params["weight_threshold"]).double().mean(),
                "rows_below": (rows < self.params["row_threshold"]).double().mean()}


@METRICS.register("disentanglement")
class Disentanglement(_WeightRows):
    """Per layer: cosines of every pair of rows (seed 004 Def. 4): mean |cos|, max |cos|, fractions |cos| ≤ 0.1, 0.2.

    Zero rows have no direction and are left out. Bort's orthogonality is the extreme (every cos 0); the histogram of
    the signed cosines (fixed edges, −1..1) is kept for the figure.
    """

    higher_is_better = False
    scores = {"mean_abs_cos": False, "max_abs_cos": False, "frac_le_0.1": True, "frac_le_0.2": True}

    def protocol(self, shape):
        return {"rows": "W viewed out x (in*k*k); conv rows = flattened filters; zero rows left out",
                "pairs": "i < j", "cos": "W_i W_j^T / (||W_i||_2 ||W_j||_2)", "fractions": "of |cos| <= alpha",
                "hist_edges": [-1.0, 1.0, len(COS_EDGES) - 1]}

    def compute(self, model, x, y, maps):
        out = super().compute(model, x, y, maps)
        self.details = {"hist_edges": COS_EDGES, "hist_cos": np.array([v["hist"] for v in self.layer_values])}
        return out

    def of_matrix(self, m):
        m = m[m.norm(dim=1) > 0]
        cos = F.normalize(m, dim=1) @ F.normalize(m, dim=1).T
        i, j = torch.triu_indices(len(m), len(m), 1, device=m.device)
        c = cos[i, j]
        a = c.abs()
        nan = torch.tensor(float("nan"), dtype=c.dtype)
        return {"mean_abs_cos": a.mean() if c.numel() else nan, "max_abs_cos": a.max() if c.numel() else nan,
                "frac_le_0.1": (a <= 0.1).double().mean() if c.numel() else nan,
                "frac_le_0.2": (a <= 0.2).double().mean() if c.numel() else nan,
                "hist": np.histogram(c.clamp(-1, 1).cpu().numpy(), COS_EDGES)[0]}


@METRICS.register("faithfulness")
class Faithfulness(Metric):
    """Per layer: Pearson and Spearman correlation of u_i = R(W_i = 0) − R with ‖W_i‖ (seed 004 Def. 3).

    R is the mean cross-entropy on the held-out examples. Zeroing row i (its bias kept, as the definition reads) fixes
    z_i = b_i, so the layer input is computed once and the rest of the chain runs on a stack of (rows × examples) with
    one channel replaced at a time: no model copy per row, as many rows per pass as ``space.PASS_ELEMENTS`` allows.
    Where a Linear layer feeds an activation and another Linear, the next pre-activation of row i's stack is
    z_next + (f(b_i) − a_i)·W_next[:, i], a rank-1 update that skips the next matrix product, and only the examples
    whose unit i changes output are run (ReLU: where it is active).
    """

    category = "weights"
    higher_is_better = True
    level = "layer"
    needs_all = True
    pooled = True
    scores = {"pearson": True, "spearman": True}
    settings = {"norm": Setting("l2", "row norm ‖W_i‖ correlated with the risk increase", choices=("l2", "l1")),
                "batch_size": Setting(4096, "inputs per pass of the upper layers", range="[1, inf)", memory=True)}

    def protocol(self, shape):
        return {**self.params, "risk": "mean cross-entropy on the held-out examples (labels)",
                "ablation": "row i of W_l set to 0, bias b_i kept (z_i = b_i)", "rows": "conv rows = filters",
                "spearman": "scipy.stats.spearmanr (average ranks)", "layers": "every Conv/Linear layer"}

    @classmethod
    def fits(cls, model):
        chain_layers(model, cls.registry_name)

    @torch.no_grad()
    def compute(self, model, x, y, maps):
        from scipy.stats import spearmanr

        layers = chain_layers(model, self.registry_name)
        base = F.cross_entropy(model(x), y)
        out = {"pearson": [], "spearman": []}
        self.layer_names, increases, norms = [], [], []
        for name, i, layer in layers:
            a = run_to(model, x, [i - 1])[0] if i > 0 else x
            u = self._risks(model, i, layer, a, y) - base
            r = weight_matrix(layer.weight).double().norm(p=1 if self.params["norm"] == "l1" else 2, dim=1)
            out["pearson"].append(float(pearson(u[None].double(), r[None].double())[0]) if len(u) > 1 else np.nan)
            rho = spearmanr(u.cpu().numpy(), r.cpu().numpy()).statistic if len(u) > 1 else np.nan
            out["spearman"].append(float(rho))
            increases.append(u.cpu().numpy())
            norms.append(r.cpu().numpy())
            self.layer_names.append(name)
        self.details = {"risk_increase": np.concatenate(increases), "row_norms": np.concatenate(norms),
                        "rows_per_layer": np.array([len(v) for v in increases]), "risk": float(base)}
        return {k: torch.tensor([v]) for k, v in out.items()}

    def _risks(self, model, i, layer, a, y) -> torch.Tensor:
        """Held-out risk with each row of ``layer`` zeroed in turn: [rows]."""
        z = layer(a)  # [B, n, ...]
        n, b = z.shape[1], z.shape[0]
        bias = layer.bias if layer.bias is not None else torch.zeros(n, device=z.device, dtype=z.dtype)
        rank1 = _rank_one(model, i)
        if rank1 is not None:
            return self._risks_rank_one(z, bias, y, *rank1)
        rest = suffix(model, i + 1)
        fill = bias.view(1, 1, n, *([1] * (z.ndim - 2))).expand(1, b, *z.shape[1:])
        per_pass = max(1, inputs_per_pass(self.params["batch_size"], tuple(z.shape[1:])) // b)
        risks = []
        for s in range(0, n, per_pass):
            rows = torch.arange(s, min(n, s + per_pass), device=z.device)
            mask = F.one_hot(rows, n).to(z.dtype).view(len(rows), 1, n, *([1] * (z.ndim - 2)))
            zk = z[None] * (1 - mask) + fill * mask  # [k, B, n, ...]: row r's output replaced by its bias
            ce = F.cross_entropy(rest(zk.flatten(0, 1)), y.repeat(len(rows)), reduction="none").view(len(rows), b)
            risks.append(ce.mean(1))
        return torch.cat(risks)

    def _risks_rank_one(self, z, bias, y, act, nxt, rest) -> torch.Tensor:
        """Linear → activation → Linear: zeroing row r adds delta[b, r]·W_next[:, r] to the next pre-activation, and
        only the (row, example) pairs where unit r's output changes (delta ≠ 0: for ReLU, where it was active and
        f(b_r) differs) are run; the others keep their example's clean loss."""
        h = act(z)
        z_next, delta = nxt(h), act(bias)[None] - h  # [B, n_next], [B, n]
        base = F.cross_entropy(rest(z_next), y, reduction="none")  # [B]
        rows, ex = (delta.T != 0).nonzero(as_tuple=True)  # the pairs that change, row-major
        change = torch.zeros(delta.shape[1], dtype=base.dtype, device=base.device)
        step = inputs_per_pass(self.params["batch_size"], (z_next.shape[1],))
        for s in range(0, len(rows), step):
            r, e = rows[s:s + step], ex[s:s + step]
            zk = z_next[e] + delta[e, r][:, None] * nxt.weight.T[r]
            change.index_add_(0, r, F.cross_entropy(rest(zk), y[e], reduction="none") - base[e])
        return base.mean() + change / len(y)


def _rank_one(model, i):
    """(activation, next Linear, chain after it) when layer i is Linear followed by one elementwise activation and a
    Linear; None otherwise (convolutions, pooling in between)."""
    if not (isinstance(model[i], nn.Linear) and i + 2 < len(model) and isinstance(model[i + 1], ACTIVATIONS)
            and isinstance(model[i + 2], nn.Linear)):
        return None
    return model[i + 1], model[i + 2], suffix(model, i + 3)
