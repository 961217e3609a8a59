"""Tables from result records (pandas only): the leaderboard, Bort − base deltas with paired intervals, Table 3."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import read_jsonl
from .ranking import BASELINES

JOB = ["run_id", "interpreter", "interp_key", "metric", "metric_key", "n_used", "score", "layer"]
GROUP = ["model", "dataset", "interpreter", "metric", "metric_variant", "score", "layer"]
BASE_OF = {"bort-s": "sgd", "bort-a": "adamw"}
# two-sided 95 % Student t quantiles by degrees of freedom (df > 30 uses the largest tabulated df ≤ it)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
        25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t95(df: int) -> float:
    if df < 1:
        return float("nan")
    keys = [k for k in _T95 if k <= df]
    return _T95[max(keys)] if df <= 120 else 1.960


def load_results(path: str | Path) -> pd.DataFrame:
    """All records, the latest one per job (a ``--force`` re-run replaces older ones)."""
    df = pd.DataFrame(read_jsonl(path))
    if df.empty:
        return df
    for col in ("interpreter", "layer", "metric_variant"):  # metric_variant: crossed --hparam values ("" if none)
        df[col] = df[col].fillna("") if col in df else ""
    df["method"] = df["method"].fillna("erm") if "method" in df else "erm"  # records before --method: plain training
    if "l1" in df:  # an l1 penalty makes its own arm: "erm + l1 1e-05" (pairs still join on pair_id)
        lam = pd.to_numeric(df["l1"], errors="coerce").fillna(0.0)
        df.loc[lam > 0, "method"] = df.loc[lam > 0, "method"] + [f" + l1 {v:g}" for v in lam[lam > 0]]
    if "n_used" not in df:  # records before n_used: n_requested held the count used
        df["n_used"] = df["n_requested"]
    df["n_used"] = df["n_used"].fillna(df["n_requested"])
    df = df.sort_values("created_at", kind="stable").drop_duplicates(JOB, keep="last")
    df["variant"] = variants(df)
    # the protocol settings that differ between records of one metric ("substrate=blur"), however they were asked
    # for (a crossed --hparam list or separate commands): the same protocol always gets the same label
    if "metric_params" in df:
        df["metric_variant"] = differing(df, ["model", "dataset", "metric"], "metric_params")
    return df.reset_index(drop=True)


def variants(df: pd.DataFrame) -> pd.Series:
    """Per record, the recipe settings that differ between runs of its model and dataset ("lr=0.02"), else "":
    runs trained under two recipes stay apart in every table."""
    return differing(df, ["model", "dataset"], "recipe")


def differing(df: pd.DataFrame, by: list[str], column: str) -> pd.Series:
    """Per record, "k=v, …" for the keys of the dict in ``column`` whose values differ within its ``by`` group."""
    labels = pd.Series("", index=df.index, dtype=object)
    if column not in df:
        return labels
    for _, g in df.groupby(by, sort=False):
        dicts = g[column].map(lambda r: r if isinstance(r, dict) else {})
        keys = sorted({k for r in dicts for k in r})
        # a key only some records have (a substrate's own settings) counts only where its values differ
        varying = [k for k in keys if len({json.dumps(r[k], sort_keys=True) for r in dicts if k in r}) > 1]
        labels[g.index] = dicts.map(lambda r: ", ".join(f"{k}={_plain(r[k])}" for k in varying if k in r))
    return labels


def _plain(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each run's mean score, per model × dataset × interpreter × optimizer × metric."""
    keys = ["model", "dataset", "variant", "interpreter", "method", "optimizer", "metric", "metric_variant", "score",
            "layer", "higher_is_better"]
    g = df.groupby(keys, dropna=False, sort=True)
    out = g.agg(n_seeds=("seed", "nunique"), n_examples=("n", "sum"), mean=("mean", "mean"), std=("mean", "std"),
                heldout_acc=("heldout_acc", "mean")).reset_index()
    out["baseline"] = out["interpreter"].isin(BASELINES)  # sanity baselines (random, edge), marked in reports
    return out


def pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Bort − base deltas: twins joined on pair_id, one delta per seed, then mean and a 95 % paired t interval.

    The interval is mean(d) ± t(0.975, n−1)·sd(d)/√n over the per-seed differences d (paired across seeds);
    ``bort_better`` reads the sign against the score's direction; ``significant`` = the interval excludes 0.
    """
    if df.empty:
        return pd.DataFrame()
    match = ["pair_id", *JOB[1:]]
    rows = []
    bort = df[df["optimizer"].isin(list(BASE_OF))]
    for opt, base_opt in BASE_OF.items():
        b = bort[bort["optimizer"] == opt]
        s = df[df["optimizer"] == base_opt]
        if b.empty or s.empty:
            continue
        j = b.merge(s[match + ["mean"]], on=match, suffixes=("", "_base"))
        j["delta"] = j["mean"] - j["mean_base"]
        j["base_optimizer"] = base_opt
        rows.append(j)
    if not rows:
        return pd.DataFrame()
    j = pd.concat(rows)
    keys = ["model", "dataset", "variant", "interpreter", "metric", "metric_variant", "score", "layer", "method",
            "optimizer", "base_optimizer", "higher_is_better"]
    out = []
    for key, grp in j.groupby(keys, dropna=False, sort=True):
        d = grp["delta"].to_numpy(dtype=float)
        n = len(d)
        mean = float(d.mean())
        sd = float(d.std(ddof=1)) if n > 1 else float("nan")
        half = t95(n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
        hib = bool(key[-1])
        out.append({**dict(zip(keys, key)), "n_seeds": n, "bort_mean": float(grp["mean"].mean()),
                    "base_mean": float(grp["mean_base"].mean()), "delta": mean, "delta_sd": sd,
                    "ci95_low": mean - half, "ci95_high": mean + half,
                    "interval": "paired t over seeds, 95 %",
                    "bort_better": (mean > 0) == hib if mean != 0 else False,
                    "significant": bool(n > 1 and (mean - half > 0 or mean + half < 0))})
    return pd.DataFrame(out)


def arms(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose ``optimizer`` names the whole arm, "method · optimizer", for runs not trained with erm."""
    frame = frame.copy()
    if "method" in frame and not frame.empty:
        other = frame["method"] != "erm"
        frame.loc[other, "optimizer"] = frame.loc[other, "method"] + " · " + frame.loc[other, "optimizer"]
    return frame


def table3(board: pd.DataFrame, pair_table: pd.DataFrame) -> tuple[list[tuple[str, str]], list[tuple]]:
    """The paper's Table 3 shape: rows interpreter × optimizer, columns (model · dataset, deletion|insertion).

    Returns (columns, rows); a row is (interpreter, optimizer, cells) and a cell is None or a dict with ``mean``,
    ``std`` (over seeds), ``best`` (best of its column, direction-aware) and ``pair`` (the Bort − base row of
    :func:`pairs`, for Bort rows).
    """
    sub = arms(board[board["metric"].isin(["deletion", "insertion"]) & (board["score"] == board["metric"])])
    if sub.empty:
        return [], []
    sub["column"] = _column(sub)
    columns = sorted(set(zip(sub["column"], sub["metric"])))
    best = {c: (g["mean"].min() if c[1] == "deletion" else g["mean"].max())
            for c, g in sub.groupby(["column", "metric"])}
    cells = {(r.interpreter, r.optimizer, r.column, r.metric): r for r in sub.itertuples()}
    deltas = {}
    if not pair_table.empty:
        for r in arms(pair_table[pair_table["score"] == pair_table["metric"]]).itertuples():
            deltas[(r.interpreter, r.optimizer, _column(pd.DataFrame([r._asdict()])).iloc[0], r.metric)] = r
    rows = []
    for interp, opt in sorted(set(zip(sub["interpreter"], sub["optimizer"]))):
        row = []
        for col in columns:
            r = cells.get((interp, opt, *col))
            row.append(None if r is None else {"mean": r.mean, "std": r.std, "best": r.mean == best[col],
                                               "pair": deltas.get((interp, opt, *col))})
        rows.append((interp, opt, row))
    return columns, rows


def _column(frame: pd.DataFrame) -> pd.Series:
    """model · dataset, and the recipe variant and the metric variant (crossed --hparam values) where there are."""
    out = frame["model"] + " · " + frame["dataset"]
    for col in ("variant", "metric_variant"):
        v = frame[col] if col in frame else ""
        out = out + np.where(v != "", " · " + v, "")
    return out.astype(str)


def format_table3(board: pd.DataFrame, pair_table: pd.DataFrame) -> str:
    """A plain-text Table 3 with Bort − base deltas, for the terminal."""
    columns, rows = table3(board, pair_table)
    if not rows:
        return "(no deletion/insertion results yet)"
    heads = [c[0] if len(c[0]) <= 22 else "…" + c[0][-21:] for c in columns]  # the tail names the variant
    lines = [f"{'interpreter':<16}{'optimizer':<9}" + "".join(f"{h:>24}" for h in heads),
             " " * 25 + "".join(f"{('Deletion ↓' if c[1] == 'deletion' else 'Insertion ↑'):>24}" for c in columns)]
    for interp, opt, cells in rows:
        texts = []
        for cell in cells:
            text = "" if cell is None else f"{cell['mean']:.3f}" + ("" if math.isnan(cell["std"]) else
                                                                   f"±{cell['std']:.3f}")
            if cell is not None and cell["pair"] is not None:
                text += f" Δ{cell['pair'].delta:+.3f}"
            texts.append(f"{text:>24}")
        lines.append(f"{interp + ('†' if interp in BASELINES else ''):<16}{opt:<9}" + "".join(texts))
    return "\n".join(lines)


def layer_table(board: pd.DataFrame, metric: str, score: str) -> pd.DataFrame:
    """Rows model · dataset · optimizer, columns layers (model order kept), values mean over seeds."""
    sub = arms(board[(board["metric"] == metric) & (board["score"] == score)])
    if sub.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(sub["layer"]))
    wide = sub.pivot_table(index=["model", "dataset", "optimizer"], columns="layer", values="mean", aggfunc="first")
    return wide[[c for c in order if c in wide.columns]]


def example_table(board: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    sub = arms(board[board["metric"].isin(metrics) & (board["layer"] == "")])
    if sub.empty:
        return pd.DataFrame()
    sub = sub.assign(column=np.where(sub["interpreter"] != "", sub["interpreter"] + " · ", "") + sub["metric"]
                     + np.where(sub["score"] != sub["metric"], "." + sub["score"], ""))
    return sub.pivot_table(index=["model", "dataset", "optimizer"], columns="column", values="mean", aggfunc="first")


def accuracy_table(board: pd.DataFrame) -> pd.DataFrame:
    """Held-out accuracy (mean over seeds) per model · dataset, one column per optimizer."""
    if board.empty:
        return pd.DataFrame()
    one = arms(board).drop_duplicates(["model", "dataset", "variant", "optimizer", "interpreter", "metric"])
    return one.pivot_table(index=["model", "dataset", "variant"], columns="optimizer", values="heldout_acc",
                           aggfunc="first")


def studies(df: pd.DataFrame) -> str:
    """Which study files produced these records ("" when none came from `xbench run`)."""
    if "study" not in df:
        return ""
    tags = {json.dumps(t, sort_keys=True): t for t in df["study"] if isinstance(t, dict)}
    return "; ".join(f"study {t.get('name')} ({t.get('file')}, sha256 {str(t.get('sha256'))[:12]})"
                     for t in tags.values())
