"""Gram statistics of the constrained weights (Bort paper §4.2.1, Fig. 3a): diag/off-diag of W Wᵀ, orthogonality."""
from __future__ import annotations

import numpy as np
import torch

from ..layers import constrained_weights, orthogonality_error, weight_matrix
from .base import METRICS, Metric

HIST_EDGES = np.linspace(-1.0, 2.0, 61)  # fixed bins so every model's histograms line up; ends collect the tails


@METRICS.register("gram")
class Gram(Metric):
    """Per Conv/Linear layer: mean/std of diag and off-diag of W Wᵀ, and ‖W Wᵀ − I‖_F/√out (needs no data)."""

    category = "weights"
    higher_is_better = False
    level = "layer"
    needs_data = False
    scores = {"ortho_error": False, "diag_mean": True, "diag_std": False, "offdiag_mean": False,
              "offdiag_std": False}

    def protocol(self, shape):
        return {"matrix": "W viewed out x (in*k*k), Gram = W W^T", "ortho_error": "||W W^T - I||_F / sqrt(out)",
                "hist_edges": [float(HIST_EDGES[0]), float(HIST_EDGES[-1]), len(HIST_EDGES) - 1]}

    def compute(self, model, x, y, maps):
        out = {k: [] for k in self.scores}
        self.layer_names, hist_diag, hist_off = [], [], []
        for name, w in constrained_weights(model):
            m = weight_matrix(w.detach()).double()
            g = m @ m.T
            diag = g.diagonal()
            off = g[~torch.eye(len(g), dtype=torch.bool, device=g.device)]
            stats = {"ortho_error": orthogonality_error(w), "diag_mean": diag.mean(), "diag_std": diag.std(correction=0),
                     "offdiag_mean": off.mean() if off.numel() else torch.tensor(0.0),
                     "offdiag_std": off.std(correction=0) if off.numel() else torch.tensor(0.0)}
            for k in out:
                out[k].append(float(stats[k]))
            clip = lambda v: np.clip(v.cpu().numpy(), HIST_EDGES[0], HIST_EDGES[-1])  # noqa: E731
            hist_diag.append(np.histogram(clip(diag), HIST_EDGES)[0])
            hist_off.append(np.histogram(clip(off), HIST_EDGES)[0])
            self.layer_names.append(name)
        self.details = {"hist_edges": HIST_EDGES, "hist_diag": np.array(hist_diag), "hist_offdiag": np.array(hist_off)}
        return {k: torch.tensor([v]) for k, v in out.items()}
