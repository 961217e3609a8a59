"""Rankings a reviewer can trust: per-image ranks, mean rank ± SEM and median (LATEC's rule), bootstrap 95 % intervals,
a check against the ``random`` baseline, and Kendall τ between the rankings under each pair of substrates, orders
and seeds (pandas, numpy and ``scipy.stats``; no torch).

A *unit* is one ranking: model × dataset × recipe variant × arm (method · optimizer) × metric × metric variant
(crossed ``--hparam`` values) × score. In a unit every interpreter scores the same held-out images of each run,
read from the per-example side files evaluate writes; per image the interpreters are ranked (1 = best,
direction-aware, ties averaged). Images of several seeds are pooled for the point estimates; the percentile-bootstrap
95 % intervals (``bootstrap.interval``, seeded) resample images with one seed and seeds × images with several. The
ranking of a unit orders interpreters by mean rank; τ between two units is ``scipy.stats.kendalltau`` of their mean
ranks, its interval the same bootstrap over the images both share.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import XbenchError
from .bootstrap import interval, level

UNIT = ["model", "dataset", "variant", "optimizer", "metric", "metric_variant", "score"]
GROUP = UNIT[:4]  # one model × arm: the rankings compared in "Stability"
BASELINES = ("random", "edge")  # interpreters.BASELINES, repeated here: reports do not import torch


def is_baseline(frame: pd.DataFrame) -> pd.Series:
    by_name = frame["interpreter"].isin(BASELINES)
    if "interp_baseline" not in frame:
        return by_name
    return frame["interp_baseline"].astype("boolean").fillna(by_name).astype(bool)


def example_scores(df: pd.DataFrame, results_dir: Path) -> pd.DataFrame:
    """Long table: one row per (record, image) with ``value`` and ``goodness`` (value, negated when lower is better)."""
    keep = df[(df["interpreter"] != "") & (df["layer"] == "") & df["scores_file"].notna()]
    if "level" in keep:
        keep = keep[keep["level"].fillna("example") == "example"]
    cache: dict[str, dict] = {}
    parts = []
    for r in keep.itertuples():
        if r.scores_file not in cache:
            path = results_dir / r.scores_file
            if not path.is_file():
                continue
            with np.load(path, allow_pickle=False) as z:
                cache[r.scores_file] = {k: z[k] for k in z.files if k.startswith("score__")}
        values = cache[r.scores_file].get(f"score__{r.score}")
        if values is None or values.ndim != 1:
            continue
        parts.append(pd.DataFrame({"run_id": r.run_id, "seed": r.seed, "interpreter": r.interpreter,
                                   **{k: getattr(r, k) for k in UNIT}, "image": np.arange(len(values)),
                                   "value": values.astype(float),
                                   "goodness": values.astype(float) * (1 if r.higher_is_better else -1)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def unit_matrix(ex: pd.DataFrame) -> pd.DataFrame:
    """[images (run_id, image) × interpreters] goodness of one unit; images every interpreter scored, no NaN."""
    wide = ex.pivot_table(index=["run_id", "image"], columns="interpreter", values="goodness", aggfunc="first")
    return wide.dropna(axis=0, how="any")


def image_ranks(goodness: np.ndarray) -> np.ndarray:
    """Per-row ranks, 1 = best (highest goodness), ties averaged."""
    return stats.rankdata(-goodness, axis=1)


def _same(means: np.ndarray) -> np.ndarray:
    return means


def runs_of(wide: pd.DataFrame):
    """Each row's run (seed) of a unit matrix, or None when its rows carry no run."""
    return wide.index.get_level_values("run_id") if "run_id" in wide.index.names else None


def unit_ranking(wide: pd.DataFrame, n_boot: int, clip: float = 0.0) -> pd.DataFrame:
    """Per interpreter: mean rank ± SEM, median rank, bootstrap intervals of mean rank and mean score, beats random.

    ``clip`` > 0 (LATEC's option): each interpreter's scores are clipped to their [clip, 1 − clip] quantiles before
    the mean score and its interval (ranks are taken on the raw scores).
    """
    raw = wide.to_numpy(dtype=float)
    r = image_ranks(raw)
    g = np.clip(raw, *np.quantile(raw, [clip, 1 - clip], axis=0)) if clip > 0 else raw
    n, runs = len(r), runs_of(wide)
    rank_lo, rank_hi = interval(r, runs, _same, n_boot, seed=0)
    score_lo, score_hi = interval(g, runs, _same, n_boot, seed=0)
    out = pd.DataFrame({"interpreter": wide.columns, "n_images": n, "mean_rank": r.mean(0),
                        "sem_rank": r.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.nan,
                        "median_rank": np.median(r, 0), "rank_ci_low": rank_lo, "rank_ci_high": rank_hi,
                        "mean_goodness": g.mean(0), "goodness_ci_low": score_lo, "goodness_ci_high": score_hi})
    if "random" in wide.columns:  # paired over images: goodness − random's goodness, interval must exclude 0
        diff = g - g[:, list(wide.columns).index("random")][:, None]
        lo, _ = interval(diff, runs, _same, n_boot, seed=1)
        out["beats_random"] = np.where(out["interpreter"] == "random", np.nan, (lo > 0).astype(float))  # 1/0/nan
    else:
        out["beats_random"] = np.nan
    out["position"] = out["mean_rank"].rank(method="min").astype(int)
    out["n_seeds"], out["bootstrap"] = 1 if runs is None else len(set(runs)), level(runs)
    return out.sort_values(["mean_rank", "interpreter"]).reset_index(drop=True)


def tau_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall τ-b between the rows of a and b [..., I] (vectorised; equals scipy.stats.kendalltau per row)."""
    i, j = np.triu_indices(a.shape[-1], 1)
    sa, sb = np.sign(a[..., i] - a[..., j]), np.sign(b[..., i] - b[..., j])
    den = np.sqrt((sa != 0).sum(-1) * (sb != 0).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (sa * sb).sum(-1) / den, np.nan)


def tau_between(ra: np.ndarray, rb: np.ndarray, n_boot: int, runs=None) -> tuple[float, float, float]:
    """(τ, 95 % low, high) between the mean-rank rankings of two aligned rank matrices [images × interpreters];
    ``runs`` labels each row's seed (several: the interval resamples seeds × images)."""
    tau = stats.kendalltau(ra.mean(0), rb.mean(0)).statistic
    k = ra.shape[1]
    lo, hi = interval(np.hstack([ra, rb]), runs, lambda m: tau_b(m[:k].T, m[k:].T), n_boot, seed=2)
    return float(tau), float(lo), float(hi)


def check_clip(clip: float) -> float:
    if not 0 <= float(clip) < 0.5:
        raise XbenchError(f"--clip {clip}: the quantile clipped at each end must be in [0, 0.5)")
    return float(clip)


def check_boot(n_boot: int) -> int:
    if int(n_boot) < 100:
        raise XbenchError(f"--bootstrap {n_boot}: at least 100 resamples are needed for a 95 % interval")
    return int(n_boot)
