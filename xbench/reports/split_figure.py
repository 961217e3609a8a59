"""Seed 002's figure: SplitCAM and SplitLRP beside CAM and SAT on the same held-out images, the two optimizers of a
pair side by side (numpy previews written by ``xbench explain`` next to each maps file; no torch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .figures import _show_map, plt, save_figure

INTERPS = ("cam", "sat", "split_cam", "split_lrp")
ROWS = 6


def _previews(runs: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """interpreter → {"maps", "pixels", "indices"} of one run, from the ``.npz`` beside each maps file."""
    out = {}
    for interp, g in runs.groupby("interpreter"):
        path = Path(str(g["maps_file"].iloc[0])).with_suffix(".npz")
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                out[interp] = {k: z[k] for k in z.files}
    return out


def pair_panels(pixels: np.ndarray, maps: dict[str, dict[str, np.ndarray]], path: Path, title: str) -> Path:
    """Rows = images; columns = the image, then per optimizer one column per interpreter (``maps[opt][interp]``)."""
    opts = sorted(maps, key=lambda o: (o.startswith("bort"), o))  # the base optimizer first, its Bort twin beside
    interps = [i for i in INTERPS if any(i in maps[o] for o in opts)]
    cols = 1 + len(opts) * len(interps)
    n = min(ROWS, len(pixels))
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.3 * n + 0.5), squeeze=False, layout="constrained")
    for r in range(n):
        img = np.clip(pixels[r], 0, 1)
        axes[r, 0].imshow(img.mean(-1), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_axis_off()
        for b, opt in enumerate(opts):
            for c, interp in enumerate(interps):
                ax = axes[r, 1 + b * len(interps) + c]
                if interp in maps[opt]:
                    _show_map(ax, img, maps[opt][interp][r])
                else:
                    ax.set_axis_off()
                if r == 0:
                    ax.set_title(f"{interp}\n{opt}", fontsize=7)
    axes[0, 0].set_title("image", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def split_comparison(df: pd.DataFrame, fig_dir: Path) -> dict[str, Path]:
    """One figure per model · dataset · method with split maps: its first seed's pair, optimizers side by side."""
    if "maps_file" not in df:
        return {}
    d = df[df["interpreter"].isin(INTERPS) & df["maps_file"].notna()]
    out: dict[str, Path] = {}
    for (model, dataset, method), g in d.groupby(["model", "dataset", "method"], sort=True):
        if not set(g["interpreter"]) & {"split_cam", "split_lrp"}:
            continue
        seed = g["seed"].min()
        maps, pixels, indices = {}, None, None
        for opt, runs in g[g["seed"] == seed].groupby("optimizer", sort=True):
            found = _previews(runs)
            if not found:
                continue
            first = next(iter(found.values()))
            if indices is not None and not np.array_equal(first["indices"], indices):
                continue  # not the same images: a side-by-side would mislead
            pixels, indices = first["pixels"], first["indices"]
            maps[opt] = {k: v["maps"] for k, v in found.items()}
        if maps:
            name = "-".join(str(p) for p in ("split", model, dataset, method)).replace("/", "_").replace(":", "_")
            caption = f"SplitCAM and SplitLRP beside CAM and SAT, {model} · {dataset} · {method} (seed {int(seed)})"
            out[caption] = pair_panels(pixels, maps, fig_dir / f"{name}.png",
                                       f"{model} · {dataset} · {method} · seed {int(seed)}: same held-out images")
    return out
