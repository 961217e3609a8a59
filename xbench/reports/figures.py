"""Figures from numpy arrays and records (matplotlib, Agg); no torch, no models."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..fileio import atomic_write  # noqa: E402

BORT_COLOURS = {"sgd": "#7f7f7f", "adamw": "#7f7f7f", "bort-s": "#d62728", "bort-a": "#d62728"}


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Render to PNG in memory, then write atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return Path(path)


def _show_map(ax, image: np.ndarray, m: np.ndarray) -> None:
    """Grey image under the map; signed maps on a diverging scale centred at 0, clipped at the 99th percentile."""
    ax.imshow(image.mean(-1), cmap="gray", vmin=0, vmax=1)
    lim = float(np.percentile(np.abs(m), 99)) or 1.0
    if m.min() < 0:
        ax.imshow(np.clip(m, -lim, lim), cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.65)
    else:
        ax.imshow(np.clip(m, 0, lim), cmap="inferno", vmin=0, vmax=lim, alpha=0.65)
    ax.set_xticks([])
    ax.set_yticks([])


def saliency_grid(pixels: np.ndarray, maps: Mapping[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Rows = images; columns = the image, then one column per interpreter. ``pixels`` is [n,H,W,C] in [0,1]."""
    n = len(pixels)
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.35 * cols, 1.35 * n + 0.4), squeeze=False,
                             layout="constrained")  # keeps the title next to the grid
    for r in range(n):
        img = np.clip(pixels[r], 0, 1)
        axes[r, 0].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                          vmin=0, vmax=1)
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        for c, (name, m) in enumerate(maps.items(), start=1):
            _show_map(axes[r, c], img, m[r])
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
    axes[0, 0].set_title("image", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def curve_panels(panels: Mapping[str, Mapping[str, np.ndarray]], fractions: Mapping[str, np.ndarray],
                 path: str | Path, title: str, ylabel: str) -> Path:
    """One panel per interpreter; in each, the mean curve ± std band of every optimizer (all images, all seeds)."""
    names = list(panels)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for opt, arr in panels[name].items():
            arr = np.asarray(arr, dtype=float)
            x = fractions[name]
            colour = BORT_COLOURS.get(opt)
            mean, std = arr.mean(0), arr.std(0)
            ax.plot(x, mean, color=colour, lw=1.4, ls="-" if opt.startswith("bort") else "--",
                    label=f"{opt} (AUC {np.trapezoid(mean, x):.3f})")
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.12)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("fraction of pixels", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def layer_lines(values: Mapping[str, Sequence[float]], layers: Sequence[str], path: str | Path, title: str,
                ylabel: str, log: bool = False) -> Path:
    """A line per optimizer across layers (reconstruction ratio, orthogonality error)."""
    fig, ax = plt.subplots(figsize=(max(3.6, 0.7 * len(layers) + 1.5), 2.8))
    for opt, v in values.items():
        ax.plot(range(len(layers)), v, marker="o", color=BORT_COLOURS.get(opt), ls="-" if opt.startswith("bort")
                else "--", label=opt)
    ax.set_xticks(range(len(layers)), layers, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def gram_histograms(hists: Mapping[str, Mapping[str, np.ndarray]], edges: np.ndarray, layers: Sequence[str],
                    path: str | Path, title: str) -> Path:
    """Per layer (columns) the histogram of diag (top) and off-diag (bottom) of W Wᵀ for each optimizer."""
    cols = len(layers)
    fig, axes = plt.subplots(2, cols, figsize=(2.3 * cols, 3.8), squeeze=False)
    centres = (edges[:-1] + edges[1:]) / 2
    for opt, h in hists.items():
        for j in range(cols):
            for r, key in enumerate(("diag", "offdiag")):
                counts = h[key][j].astype(float)
                axes[r, j].step(centres, counts / max(1.0, counts.sum()), where="mid", color=BORT_COLOURS.get(opt),
                                ls="-" if opt.startswith("bort") else "--", label=opt)
    for j, layer in enumerate(layers):
        axes[0, j].set_title(f"{layer}: diag", fontsize=8)
        axes[1, j].set_title(f"{layer}: off-diag", fontsize=8)
        for r in range(2):
            axes[r, j].tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def image_rows(rows: Mapping[str, np.ndarray], path: str | Path, title: str) -> Path:
    """Labelled rows of images ([n,C,H,W], any scale: each image min-max scaled for display)."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n + 1.2, 1.35 * len(rows) + 0.4),
                             squeeze=False, layout="constrained")
    for r, (label, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(imgs):
                ax.axis("off")
                continue
            img = np.asarray(imgs[c], dtype=float).transpose(1, 2, 0)
            lo, hi = img.min(), img.max()
            img = (img - lo) / (hi - lo) if hi > lo else img * 0
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
