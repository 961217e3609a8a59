"""Figures of seed 004's weight-level metrics: row-cosine histograms per layer, C1 box plots per radius."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from .figures import plt, save_figure


def _style(arm: str) -> dict:
    bort = "bort" in arm
    return {"color": "#d62728" if bort else "#7f7f7f", "ls": "-" if bort else "--", "lw": 1.8 if "l1" in arm else 1.1}


def cosine_histograms(sides: Mapping[str, dict], path: str | Path, title: str) -> Path:
    """One panel per layer: the histogram of pairwise row cosines of every arm (fraction of pairs per bin)."""
    first = next(iter(sides.values()))
    layers, edges = list(first["layers"]), first["detail__hist_edges"]
    centres = (edges[:-1] + edges[1:]) / 2
    fig, axes = plt.subplots(1, len(layers), figsize=(2.4 * len(layers), 2.4), squeeze=False)
    for arm, s in sides.items():
        for j, ax in enumerate(axes[0]):
            counts = s["detail__hist_cos"][j].astype(float)
            ax.step(centres, counts / max(1.0, counts.sum()), where="mid", label=arm, **_style(arm))
    for ax, layer in zip(axes[0], layers):
        ax.set_title(layer, fontsize=8)
        ax.set_xlabel("cos(W_i, W_j)", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def c1_boxes(sides: Mapping[str, dict], path: str | Path, title: str) -> Path:
    """One panel per radius: box plots of ‖Δa_(L−1)‖/‖Δx‖ over every sampled pair, one box per arm."""
    arms = list(sides)
    radii = next(iter(sides.values()))["detail__radii"]
    fig, axes = plt.subplots(1, len(radii), figsize=(1.2 + 1.1 * len(arms) * len(radii), 2.8), squeeze=False)
    for k, ax in enumerate(axes[0]):
        data = [np.asarray(sides[a]["detail__ratios"][k][-1], dtype=float) for a in arms]
        box = ax.boxplot(data, showfliers=False, patch_artist=True)
        for patch, arm in zip(box["boxes"], arms):
            patch.set_facecolor(_style(arm)["color"])
            patch.set_alpha(0.4)
        ax.set_xticks(range(1, len(arms) + 1), arms, rotation=30, ha="right", fontsize=6)
        ax.set_title(f"radius {radii[k]:g}", fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0, 0].set_ylabel("C1 ratio (pixel space)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
