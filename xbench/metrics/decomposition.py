"""Feature decomposition (Bort paper §4.2.4, A.5): how well k binarised feature variables reconstruct the input."""
from __future__ import annotations

import numpy as np
import torch

from ..backtrack import RELU, spatial, top_channels
from ..backtrack_autograd import backtracker
from ..settings import Setting
from .base import METRICS, Metric, pearson


@METRICS.register("decomposition")
class Decomposition(Metric):
    """Top-k feature channels as binary variables, backtracked: correlation with the image, K-Means silhouette.

    Each of the k most salient channels becomes one binary variable (value B at the channel's maximum); all k are
    backtracked together with g and correlated with the image in pixel space. The k single-variable
    reconstructions are clustered with K-Means and their silhouette score reported.
    """

    category = "decomposition"
    higher_is_better = True
    scores = {"correlation": True, "silhouette": True}
    settings = {"k": Setting(64, "top feature channels used as variables", range="[1, inf)"),
                "value": Setting(1.0, "the constant B placed at each channel's maximum", range="(0, inf)"),
                "layer": Setting(None, "feature layer by module name (default: the model's own)", str, optional=True),
                "relu": RELU,
                "examples": Setting(4, "examples kept for the figure", range="[0, inf)"),
                "n_clusters": Setting(4, "K-Means clusters for the silhouette", range="[2, inf)"),
                "seed": Setting(0, "K-Means seed", range="[0, inf)")}

    def protocol(self, shape):
        return {**self.params, "correlation": "Pearson, reconstruction vs image in pixel space, all channels",
                "silhouette": "sklearn silhouette of KMeans on unit-norm single-variable reconstructions"}

    def compute(self, model, x, y, maps):
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        p = self.params
        bt = backtracker(model, p["layer"], relu=p["relu"], who="decomposition")
        z, trace = bt.forward(x)
        _, channels, positions = top_channels(spatial(z), p["k"])
        b, k = channels.shape
        recon = bt.backward_combined(trace, z.shape[1:], channels, positions, p["value"])  # [B,C,H,W]
        correlation = pearson(recon.flatten(1), self.space.to_pixels(x).flatten(1))
        parts = bt.backward_one_hot(trace, z.shape[1:], channels, positions, p["value"]).view(b, k, -1)
        parts = torch.nn.functional.normalize(parts, dim=2).cpu().numpy()
        silhouettes, labels = [], []
        for i in range(b):
            pts = parts[i]
            n_distinct = len(np.unique(pts.round(6), axis=0))
            if n_distinct <= p["n_clusters"]:
                silhouettes.append(float("nan"))
                labels.append(np.zeros(k, dtype=int))
                continue
            lab = KMeans(p["n_clusters"], n_init=4, random_state=p["seed"]).fit_predict(pts)
            silhouettes.append(float(silhouette_score(pts, lab)))
            labels.append(lab)
        e = min(b, p["examples"])
        self.details = {"reconstructions": recon[:e].cpu().numpy(), "images": self.space.to_pixels(x[:e]).cpu().numpy(),
                        "parts": parts[:e].reshape(e, k, *x.shape[1:]), "part_labels": np.array(labels[:e])}
        return {"correlation": correlation, "silhouette": torch.tensor(silhouettes)}
