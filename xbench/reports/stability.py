"""The "Ranking" and "Stability" tables of a report: every unit ranked, then Kendall τ between the rankings of each
pair of substrates, MoRF vs LeRF and seed vs seed, a τ matrix per model × arm, and a one-line verdict each.

Pairs: *substrate* = same metric and score, variants that differ only in ``substrate``; *order* = srg's ``morf`` vs
``lerf`` score, road's ``road_morf`` vs ``road_lerf``, or variants that differ only in ``order``; *seed* = one unit's
ranking on one run against another run's. Only faithfulness metrics enter the stability tables.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .bootstrap import level
from .ranking import GROUP, UNIT, example_scores, image_ranks, runs_of, tau_between, unit_matrix, unit_ranking

ORDER_SCORES = ({"morf", "lerf"}, {"road_morf", "road_lerf"})


def _group_label(group: tuple) -> str:
    return " · ".join(str(g) for g in group if g != "")


def _variant(text: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in str(text).split(", ") if "=" in p)


def _label(metric: str, variant: str, score: str) -> str:
    return metric + ("" if score == metric else f".{score}") + (f" [{variant}]" if variant else "")


def pair_kind(a: tuple, b: tuple) -> str:
    """'substrate', 'order' or '' for two units (metric, variant, score) of one group."""
    (ma, va, sa), (mb, vb, sb) = a, b
    if ma != mb:
        return ""
    da, db = _variant(va), _variant(vb)
    differ = {k for k in set(da) | set(db) if da.get(k) != db.get(k)}
    if sa == sb and differ == {"substrate"}:
        return "substrate"
    if (sa == sb and differ == {"order"}) or (not differ and {sa, sb} in ORDER_SCORES):
        return "order"
    return ""


def _aligned(wa: pd.DataFrame, wb: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, object] | None:
    """Rank matrices of the images (and interpreters) both share, and each row's run (None: rows carry no run)."""
    rows = wa.index.intersection(wb.index)
    cols = [c for c in wa.columns if c in wb.columns]
    if len(rows) < 2 or len(cols) < 3:
        return None
    a, b = wa.loc[rows, cols], wb.loc[rows, cols]
    return image_ranks(a.to_numpy(float)), image_ranks(b.to_numpy(float)), runs_of(a)


def build(df: pd.DataFrame, results_dir: Path, n_boot: int = 1000, clip: float = 0.0):
    """(ranking table, stability table, τ matrices {group: DataFrame}, verdict lines)."""
    ex = example_scores(df, results_dir)
    if ex.empty:
        return pd.DataFrame(), pd.DataFrame(), {}, []
    faith = set(df.loc[df["category"] == "faithfulness", "metric"]) if "category" in df else set()
    ranking, stability, matrices, verdicts = [], [], {}, []
    for group, g in ex.groupby(GROUP, sort=True):
        wides = {}
        for unit, u in g.groupby(UNIT[len(GROUP):], sort=True):
            wide = unit_matrix(u)
            if wide.shape[1] < 2 or wide.empty:
                continue
            table = unit_ranking(wide, n_boot, clip)
            ranking.append(table.assign(**dict(zip(UNIT, (*group, *unit)))))
            if unit[0] in faith and wide.shape[1] >= 3:
                wides[unit] = (wide, table)
        rows = _pairs(group, wides, n_boot)
        stability += rows
        if wides:
            matrices[_group_label(group)] = _matrix(wides)
            verdicts.append(_verdict(group, wides, rows))
    rank_df = pd.concat(ranking, ignore_index=True) if ranking else pd.DataFrame()
    if not rank_df.empty:
        rank_df = rank_df[UNIT + [c for c in rank_df.columns if c not in UNIT]]
    return rank_df, pd.DataFrame(stability), matrices, verdicts


def _pairs(group: tuple, wides: dict, n_boot: int) -> list[dict]:
    out = []
    base = dict(zip(GROUP, group))
    for a, b in combinations(sorted(wides), 2):
        kind = pair_kind(a, b)
        pair = _aligned(wides[a][0], wides[b][0]) if kind else None
        if pair is not None:
            tau, lo, hi = tau_between(*pair[:2], n_boot, runs=pair[2])
            out.append({**base, "kind": kind, "a": _label(*a), "b": _label(*b), "n_images": len(pair[0]),
                        "tau": tau, "ci95_low": lo, "ci95_high": hi, "bootstrap": level(pair[2])})
    for unit, (wide, _) in sorted(wides.items()):
        runs = sorted(set(wide.index.get_level_values("run_id")))
        for ra, rb in combinations(runs, 2):
            pair = _aligned(wide.xs(ra, level="run_id"), wide.xs(rb, level="run_id"))
            if pair is not None:
                tau, lo, hi = tau_between(*pair[:2], n_boot, runs=pair[2])
                out.append({**base, "kind": "seed", "a": f"{_label(*unit)} · {ra}", "b": f"{_label(*unit)} · {rb}",
                            "n_images": len(pair[0]), "tau": tau, "ci95_low": lo, "ci95_high": hi,
                            "bootstrap": level(pair[2])})
    return out


def _matrix(wides: dict) -> pd.DataFrame:
    """τ between the mean-rank rankings of every two units (point estimates), labels in unit order."""
    units = sorted(wides)
    labels = [_label(*u) for u in units]
    m = pd.DataFrame(np.eye(len(units)), index=labels, columns=labels)
    for (i, a), (j, b) in combinations(list(enumerate(units)), 2):
        ta, tb = wides[a][1].set_index("interpreter"), wides[b][1].set_index("interpreter")
        common = [c for c in ta.index if c in tb.index]
        tau = stats.kendalltau(ta.loc[common, "mean_rank"], tb.loc[common, "mean_rank"]).statistic
        m.iloc[i, j] = m.iloc[j, i] = tau
    return m


def _verdict(group: tuple, wides: dict, rows: list[dict]) -> str:
    """Which interpreters hold one position in every ranking, which pairs flip, and the τ medians per kind."""
    orders = [list(t["interpreter"]) for _, t in wides.values()]
    common = sorted(set.intersection(*map(set, orders)))
    pos = [{n: [o for o in order if o in common].index(n) for n in common} for order in orders]
    settled = [n for n in common if len({p[n] for p in pos}) == 1]
    flips = []
    for a, b in combinations(common, 2):
        ahead = sum(p[a] < p[b] for p in pos)
        if 0 < ahead < len(pos):
            flips.append((min(ahead, len(pos) - ahead), f"{a}↔{b}"))
    taus = pd.DataFrame(rows)
    parts = []
    for kind in ("substrate", "order", "seed"):
        t = taus[taus["kind"] == kind]["tau"] if not taus.empty else []
        if len(t):
            parts.append(f"τ {kind} median {np.nanmedian(t):+.2f} (min {np.nanmin(t):+.2f}, {len(t)} pairs)")
    flips.sort(reverse=True)
    text = (f"{_group_label(group)}: {len(orders)} rankings; " + "; ".join(parts)
            + f"; settled: {', '.join(settled) or 'none'}"
            + f"; flips: {', '.join(f'{p} ({k} of {len(pos)})' for k, p in flips[:4]) or 'none'}")
    return text


def report_parts(df: pd.DataFrame, results_dir: Path, out: Path, figures: bool, n_boot: int, clip: float = 0.0):
    """(HTML sections, terminal text, tables, files written) for build_report."""
    from ..fileio import atomic_write_text
    from .ranking_html import not_beating_random, ranking_html, ranking_text, stability_html, tau_heatmap

    ranking, stability, matrices, verdicts = build(df, results_dir, n_boot, clip)
    files = []
    for name, table in (("ranking.csv", ranking), ("stability.csv", stability)):
        if not table.empty:
            atomic_write_text(out / name, table.to_csv(index=False))
            files.append(str(out / name))
    heatmaps = {}
    if figures:
        for group, m in matrices.items():
            if len(m) > 1:
                slug = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in group)
                heatmaps[f"Kendall τ between rankings, {group}"] = tau_heatmap(
                    m, out / "figures" / f"tau-{slug}.png", f"Kendall τ between rankings · {group}")
    files += [str(p) for p in heatmaps.values()]
    text = ranking_text(ranking, verdicts)
    weak = not_beating_random(ranking)
    if not weak.empty:
        text += "\nnot better than random (paired bootstrap interval includes 0): " + "; ".join(
            f"{r.interpreter} under {r.metric}{'' if r.score == r.metric else '.' + r.score}"
            f"{f' [{r.metric_variant}]' if r.metric_variant else ''} "
            f"({_group_label(tuple(getattr(r, k) for k in GROUP))})"
            for r in weak.itertuples())
    sections = [("Ranking", ranking_html(ranking)), ("Stability", stability_html(stability, verdicts, heatmaps))]
    return sections, text, {"ranking": ranking, "stability": stability}, files
