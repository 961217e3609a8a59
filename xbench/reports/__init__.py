"""Reports: pandas tables, CSV/HTML leaderboards and figures built from result records (no torch needed).

    from xbench.reports import build_report
    result = build_report("reports/")      # leaderboard.csv, leaderboard.html, pairs.csv, figures/*.png
    print(result.text)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import XbenchError
from ..fileio import atomic_write, atomic_write_text
from .weights import weight_text
from .tables import (accuracy_table, arms, example_table, format_table3, layer_table, leaderboard, load_results,
                     pairs, studies, table3)

__all__ = ["build_report", "ReportResult", "load_results", "leaderboard", "pairs", "table3"]


@dataclass
class ReportResult:
    text: str
    files: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts if p))[:120]


def _side(results_dir: Path, rel: str | float | None) -> dict | None:
    if not isinstance(rel, str):
        return None
    path = results_dir / rel
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _curve_figures(d: pd.DataFrame, results_dir: Path, fig_dir: Path, model: str, dataset: str) -> dict[str, Path]:
    """Deletion and insertion curves of one model · dataset, a panel per interpreter, a line per optimizer."""
    from . import figures as F

    out, tag = {}, f"{model} · {dataset}"
    for metric, ylabel in (("deletion", "score while deleting"), ("insertion", "score while inserting")):
        sub = d[(d["metric"] == metric) & (d["score"] == metric)]
        panels: dict[str, dict[str, np.ndarray]] = {}
        fractions: dict[str, np.ndarray] = {}
        for (interp, opt), g in sub.groupby(["interpreter", "optimizer"], sort=True):
            curves = [s["detail__curves"] for s in (_side(results_dir, f) for f in g["scores_file"]) if s]
            if curves:
                panels.setdefault(interp, {})[opt] = np.concatenate(curves)
                fractions[interp] = _side(results_dir, g["scores_file"].iloc[0])["detail__fractions"]
        if panels:
            out[f"{metric.capitalize()} curves, {tag}"] = F.curve_panels(
                panels, fractions, fig_dir / f"{_slug(metric, model, dataset)}.png",
                f"{metric} curves · {tag} (mean ± std over images and seeds)", ylabel)
    return out


def _figures(df: pd.DataFrame, results_dir: Path, fig_dir: Path) -> dict[str, Path]:
    """Every figure the data allows; keys are captions."""
    from . import figures as F

    out: dict[str, Path] = {}
    for (model, dataset), d in df.groupby(["model", "dataset"], sort=True):
        tag = f"{model} · {dataset}"
        out.update(_curve_figures(d, results_dir, fig_dir, model, dataset))
        maps = d[d["maps_file"].notna()] if "maps_file" in d else d.iloc[0:0]
        for opt, g in maps.sort_values("seed").groupby("optimizer", sort=True):
            grids = [(Path(f).parent / "grid.png", seed) for f, seed in zip(g["maps_file"], g["seed"])]
            grid, seed = next(((p, s) for p, s in grids if p.is_file()), (None, None))
            if grid is not None:  # written by `xbench explain`
                target = fig_dir / f"{_slug('saliency', model, dataset, opt)}.png"
                atomic_write(target, lambda f, b=grid.read_bytes(): f.write(b))
                out[f"Saliency maps, {tag}, {opt} (seed {int(seed)})"] = target
        rr = d[(d["metric"] == "recon_ratio")]
        if not rr.empty:
            layers = list(dict.fromkeys(rr["layer"]))
            means = rr.groupby(["optimizer", "layer"])["mean"].mean()
            values = {opt: [means.get((opt, layer), np.nan) for layer in layers] for opt in sorted(set(rr["optimizer"]))}
            out[f"Reconstruction ratio per layer, {tag}"] = F.layer_lines(
                values, layers, fig_dir / f"{_slug('recon', model, dataset)}.png",
                f"reconstruction ratio ‖z − WᵀWz‖/‖z‖ · {tag}", "ratio (lower = more invertible)", log=True)
        gram = d[(d["metric"] == "gram") & (d["score"] == "ortho_error")].sort_values("seed")
        if not gram.empty:
            hists, layers, edges = {}, [], None
            for opt, g in gram.groupby("optimizer", sort=True):
                side = _side(results_dir, g["scores_file"].iloc[0])
                if side is not None:
                    hists[opt] = {"diag": side["detail__hist_diag"], "offdiag": side["detail__hist_offdiag"]}
                    layers, edges = list(side["layers"]), side["detail__hist_edges"]
            if hists:
                out[f"Gram matrix histograms, {tag}"] = F.gram_histograms(
                    hists, edges, layers, fig_dir / f"{_slug('gram', model, dataset)}.png",
                    f"W Wᵀ entries per layer · {tag} (first seed)")
        for metric, keys, caption in (("decomposition", ("images", "reconstructions"), "Feature decomposition"),
                                      ("synthesis", ("sources", "targets", "adversarial"), "Adversarial synthesis")):
            rows = {}
            for opt, g in d[(d["metric"] == metric)].sort_values("seed").groupby("optimizer", sort=True):
                side = _side(results_dir, g["scores_file"].iloc[0])
                if side is None:
                    continue
                for k in keys:
                    label = k if k in ("images", "sources", "targets") else f"{k} ({opt})"
                    rows.setdefault(label, side[f"detail__{k}"])
            if rows:
                out[f"{caption}, {tag} (first seed)"] = F.image_rows(
                    rows, fig_dir / f"{_slug(metric, model, dataset)}.png", f"{caption.lower()} · {tag}")
    return out


def build_report(out: str | Path = "reports", results: str | Path | None = None, figures: bool = True,
                 bootstrap: int = 1000, clip: float = 0.0) -> ReportResult:
    """Read ``<out>/results.jsonl`` (or ``results``) and write the leaderboard, pairs, rankings and figures into ``out``.

    ``bootstrap``: resamples of the percentile-bootstrap intervals of the "Ranking" and "Stability" sections;
    ``clip``: quantile clipped at each end of every interpreter's scores before their mean (LATEC's option).
    """
    from .html import render, weight_sections
    from .ranking import check_boot, check_clip
    from .stability import report_parts

    n_boot, clip = check_boot(bootstrap), check_clip(clip)

    out = Path(out)
    results = Path(results) if results else out / "results.jsonl"
    if not results.is_file():
        raise XbenchError(f"no results at {str(results)!r}; run `xbench evaluate` first")
    df = load_results(results)
    if df.empty:
        raise XbenchError(f"{str(results)!r} holds no records")
    board = leaderboard(df)
    pair_table = pairs(df)
    files = []
    for name, table in (("leaderboard.csv", board), ("pairs.csv", pair_table)):
        atomic_write_text(out / name, table.to_csv(index=False))
        files.append(str(out / name))
    figs = {}
    if figures:  # figures name each arm "method · optimizer" (plain "optimizer" for erm runs)
        from .split_figure import split_comparison

        from .weights import weight_figures

        figs = {**_figures(arms(df), results.parent, out / "figures"), **split_comparison(df, out / "figures"),
                **weight_figures(arms(df), lambda rel: _side(results.parent, rel), out / "figures")}
    files += [str(p) for p in figs.values()]
    sections, ranking_text, ranking_tables, ranking_files = report_parts(df, results.parent, out, figures, n_boot, clip)
    files += ranking_files
    html = render(df, board, pair_table, figs, [*weight_sections(board), *sections])
    atomic_write_text(out / "leaderboard.html", html)
    files.append(str(out / "leaderboard.html"))
    text = [line for line in (studies(df),) if line] + [format_table3(board, pair_table)]
    for title, table in (("held-out accuracy", accuracy_table(board)),
                         ("reconstruction ratio per layer", layer_table(board, "recon_ratio", "recon_ratio")),
                         ("model metrics", example_table(board, ["decomposition", "synthesis"]))):
        if not table.empty:
            text.append(f"\n{title} (mean over seeds):\n{table.to_string(float_format=lambda v: f'{v:.3f}')}")
    text += weight_text(board)
    text.append(ranking_text)
    return ReportResult("\n".join(text), files, {"leaderboard": board, "pairs": pair_table, **ranking_tables}, figs)
