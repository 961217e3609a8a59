"""Report parts for seed 004's weight-level metrics and the attribution metrics (tables and figures, no torch).

Arms are "method · optimizer" as elsewhere; an l1 run's method reads "erm + l1 1e-05" (tables.load_results), so SGD vs
Bort-S and l1 vs none are the rows of every per-layer table.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .tables import arms

# (metric, score, caption) of the per-layer tables, in reading order
WEIGHT_TABLES = (
    ("weight_sparsity", "mean_abs", "mean |w| per layer (seed 004 Table 2; lower = sparser)"),
    ("weight_sparsity", "l21", "‖W‖_{2,1} per layer (lower = sparser)"),
    ("faithfulness", "pearson", "faithfulness: Pearson(risk increase, ‖W_i‖) per layer (seed 004 Table 3; higher)"),
    ("faithfulness", "spearman", "faithfulness: Spearman per layer (higher)"),
    ("disentanglement", "mean_abs_cos", "mean |cos| of row pairs per layer (lower = more disentangled)"),
    ("disentanglement", "max_abs_cos", "max |cos| of row pairs per layer (lower)"),
    ("stability_c1", "max_r2", "C1 sampled max at radius 2, per hidden output (lower = more stable)"),
    ("stability_c1", "lipschitz", "local Lipschitz max_x ‖J(x)‖₂ per hidden output (lower)"),
    ("stability_c1", "upper_bound", "C1 upper bound ∏‖W_k‖₂ per hidden output"),
    ("stability_c2", "median_r2", "C2 median at radius 2 per hidden output (lower)"),
    ("stability_c2", "changed_r2", "fraction of pairs changing ReLU pattern at radius 2"),
)
ATTRIBUTION = ("sparseness", "complexity", "max_sensitivity", "local_lipschitz")


def _keys(frame: pd.DataFrame) -> list[str]:
    """model, dataset and, where records carry one, the recipe variant (three mlp shapes stay three rows)."""
    return ["model", "dataset", *(["variant"] if "variant" in frame else [])]


def layer_table(board: pd.DataFrame, metric: str, score: str) -> pd.DataFrame:
    """Rows model · dataset (· variant) · arm, columns layers in model order, values mean over seeds."""
    sub = arms(board[(board["metric"] == metric) & (board["score"] == score)])
    if sub.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(sub["layer"]))
    wide = sub.pivot_table(index=[*_keys(sub), "optimizer"], columns="layer", values="mean", aggfunc="first")
    return wide[[c for c in order if c in wide.columns]]


def weight_tables(board: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Caption → per-layer table (rows model · dataset · arm, columns layers, mean over seeds) for what is there."""
    out = {}
    for metric, score, caption in WEIGHT_TABLES:
        table = layer_table(board, metric, score)
        if not table.empty:
            out[caption] = table
    return out


def attribution_table(board: pd.DataFrame) -> pd.DataFrame:
    """Rows model · dataset · interpreter · arm; columns the attribution metrics with their direction (↑/↓)."""
    sub = arms(board[board["metric"].isin(ATTRIBUTION) & (board["score"] == board["metric"])])
    if sub.empty:
        return pd.DataFrame()
    sub = sub.assign(column=sub["metric"] + np.where(sub["higher_is_better"].astype(bool), " ↑", " ↓"))
    wide = sub.pivot_table(index=[*_keys(sub), "interpreter", "optimizer"], columns="column", values="mean",
                           aggfunc="first")
    order = [c for m in ATTRIBUTION for c in wide.columns if c.split(" ")[0] == m]
    return wide[order]


def weight_figures(df: pd.DataFrame, side, fig_dir: Path) -> dict[str, Path]:
    """Cosine histograms, C1 box plots per radius and per-layer sparsity, per model · dataset (first seed's details).

    ``df`` holds arms in ``optimizer``; ``side(rel)`` reads a record's side file (None when missing).
    """
    from . import figures as F
    from .weight_figures import c1_boxes, cosine_histograms

    out: dict[str, Path] = {}
    slug = lambda *p: re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(v) for v in p if v))[:120]  # noqa: E731
    for key, d in df.groupby(_keys(df), sort=True):
        tag = " · ".join(str(k) for k in key if k)
        first = {}
        for metric, score in (("disentanglement", "mean_abs_cos"), ("stability_c1", "max_r1")):
            for opt, g in d[(d["metric"] == metric) & (d["score"] == score)].sort_values("seed").groupby("optimizer"):
                s = side(g["scores_file"].iloc[0])
                if s is not None:
                    first.setdefault(metric, {})[opt] = s
        if "disentanglement" in first:
            out[f"Row cosines per layer, {tag} (first seed)"] = cosine_histograms(
                first["disentanglement"], fig_dir / f"{slug('cosines', *key)}.png",
                f"pairwise row cosines · {tag}")
        if "stability_c1" in first:
            out[f"C1 per radius, last hidden layer, {tag} (first seed)"] = c1_boxes(
                first["stability_c1"], fig_dir / f"{slug('c1', *key)}.png",
                f"‖Δa_(L−1)‖/‖Δx‖ per radius · {tag}")
        sp = d[(d["metric"] == "weight_sparsity") & (d["score"] == "mean_abs")]
        if not sp.empty:
            layers = list(dict.fromkeys(sp["layer"]))
            means = sp.groupby(["optimizer", "layer"])["mean"].mean()
            values = {o: [means.get((o, la), np.nan) for la in layers] for o in sorted(set(sp["optimizer"]))}
            out[f"Mean |w| per layer, {tag}"] = F.layer_lines(
                values, layers, fig_dir / f"{slug('sparsity', *key)}.png", f"mean |w| per layer · {tag}",
                "mean |w| (lower = sparser)")
    return out


def weight_text(board: pd.DataFrame) -> list[str]:
    """Terminal sections for the report's text."""
    parts = [(caption, t) for caption, t in weight_tables(board).items()]
    att = attribution_table(board)
    if not att.empty:
        parts.append(("attribution metrics (↑ higher is better, ↓ lower)", att))
    return [f"\n{c} (mean over seeds):\n{t.to_string(float_format=lambda v: f'{v:.4g}')}" for c, t in parts]
