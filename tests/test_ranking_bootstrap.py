"""Bootstrap intervals of the rankings: over images with one seed (scipy.stats.bootstrap, as before), over seeds ×
images with several (a two-level resampling), checked against scipy, a plain loop on the same draws, and closed forms."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from xbench.reports.bootstrap import SEEDS_IMAGES, nested_means
from xbench.reports.ranking import image_ranks, tau_between, unit_ranking

NAMES = ["a", "b", "c", "random"]


def _wide(goodness: np.ndarray, runs: np.ndarray) -> pd.DataFrame:
    index = pd.MultiIndex.from_arrays([runs, np.arange(len(runs))], names=["run_id", "image"])
    return pd.DataFrame(goodness, index=index, columns=NAMES[: goodness.shape[1]])


def test_one_seed_is_scipy_bootstrap_over_images():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((40, 4)) + [0.8, 0.4, 0.2, 0.0]
    r = image_ranks(g)
    ref = {}
    for name, data, seed in (("rank", r, 0), ("goodness", g, 0), ("diff", g - g[:, [3]], 1)):
        res = stats.bootstrap((data,), np.mean, n_resamples=300, method="percentile", axis=0,
                              random_state=np.random.default_rng(seed))
        ref[name] = res.confidence_interval
    for wide in (_wide(g, np.array(["run0"] * 40)), pd.DataFrame(g, columns=NAMES)):  # one run, or no run at all
        t = unit_ranking(wide, n_boot=300).set_index("interpreter").loc[NAMES]
        assert np.allclose(t["rank_ci_low"], ref["rank"].low) and np.allclose(t["rank_ci_high"], ref["rank"].high)
        assert np.allclose(t["goodness_ci_low"], ref["goodness"].low)
        assert np.allclose(t["goodness_ci_high"], ref["goodness"].high)
        assert list(t["beats_random"].iloc[:3]) == list((ref["diff"].low[:3] > 0).astype(float))
        assert set(t["bootstrap"]) == {"images"} and set(t["n_seeds"]) == {1}
    rb = image_ranks(g + rng.standard_normal(g.shape))
    res = stats.bootstrap((np.arange(40),), lambda k: stats.kendalltau(r[k].mean(0), rb[k].mean(0)).statistic,
                          n_resamples=200, method="percentile", vectorized=False, random_state=np.random.default_rng(2))
    tau, lo, hi = tau_between(r, rb, 200, runs=np.array(["run0"] * 40))
    assert np.isclose(lo, res.confidence_interval.low) and np.isclose(hi, res.confidence_interval.high)
    assert tau == stats.kendalltau(r.mean(0), rb.mean(0)).statistic


def _loop_nested(rows_of_seed: list[np.ndarray], n_boot: int, seed: int, statistic) -> np.ndarray:
    """The two-level bootstrap as a plain loop, on the draws nested_means makes (one chunk): seeds, then images."""
    rng = np.random.default_rng(seed)
    sizes = np.array([len(m) for m in rows_of_seed])
    drawn = rng.integers(0, len(sizes), (n_boot, len(sizes)))
    pos = rng.integers(0, sizes[drawn][..., None], (n_boot, len(sizes), sizes.max()))
    out = []
    for b in range(n_boot):
        rows = []
        for k, s in enumerate(drawn[b]):
            for j in range(sizes[s]):
                rows.append(rows_of_seed[s][pos[b, k, j]])
        out.append(statistic(np.array(rows)))
    return np.percentile(np.array(out), [2.5, 97.5], axis=0)


def test_several_seeds_match_a_plain_loop_with_unequal_image_counts():
    rng = np.random.default_rng(1)
    runs = np.array(["s2"] * 7 + ["s0"] * 12 + ["s1"] * 4 + ["s0"] * 3)  # unequal counts, rows not grouped
    g = rng.standard_normal((len(runs), 4)) + np.where(runs == "s1", 1.0, 0.0)[:, None] * [1, -1, 0, 0]
    r = image_ranks(g)
    t = unit_ranking(_wide(g, runs), n_boot=200).set_index("interpreter").loc[NAMES]
    rows_of_seed = [np.flatnonzero(runs == s) for s in ("s0", "s1", "s2")]  # np.unique's order
    lo, hi = _loop_nested(rows_of_seed, 200, 0, lambda rows: r[rows].mean(0))
    assert np.allclose(t["rank_ci_low"], lo) and np.allclose(t["rank_ci_high"], hi)
    lo, hi = _loop_nested(rows_of_seed, 200, 0, lambda rows: g[rows].mean(0))
    assert np.allclose(t["goodness_ci_low"], lo) and np.allclose(t["goodness_ci_high"], hi)
    assert set(t["bootstrap"]) == {SEEDS_IMAGES} and set(t["n_seeds"]) == {3}
    rb = image_ranks(g + 0.5 * rng.standard_normal(g.shape))
    tau, lo, hi = tau_between(r, rb, 150, runs=runs)
    ref = _loop_nested(rows_of_seed, 150, 2, lambda rows: stats.kendalltau(r[rows].mean(0), rb[rows].mean(0)).statistic)
    assert np.allclose([lo, hi], ref)


def test_seed_offsets_widen_the_interval_to_the_spread_of_the_seed_means():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 4))  # the same 30 images in every seed, interpreter "a" shifted per seed
    g = np.concatenate([x + [off, 0, 0, 0] for off in (0.0, 2.0, 4.0)])
    runs = np.repeat(["s0", "s1", "s2"], 30)
    nested = unit_ranking(_wide(g, runs), n_boot=1000).set_index("interpreter").loc["a"]
    pooled = unit_ranking(_wide(g, runs).droplevel("run_id"), n_boot=1000).set_index("interpreter").loc["a"]
    seed_means = x[:, 0].mean() + np.array([0.0, 2.0, 4.0])
    width = nested["goodness_ci_high"] - nested["goodness_ci_low"]
    assert width > 3 * (pooled["goodness_ci_high"] - pooled["goodness_ci_low"])
    # 1 in 27 resamples draws the lowest seed three times: the 2.5 % point sits within image noise of its mean
    assert nested["goodness_ci_low"] < seed_means[0] + 0.3 and nested["goodness_ci_high"] > seed_means[2] - 0.3
    assert nested["rank_ci_high"] - nested["rank_ci_low"] > 2 * (pooled["rank_ci_high"] - pooled["rank_ci_low"])
    assert pooled["bootstrap"] == "images" and nested["bootstrap"] == SEEDS_IMAGES


def test_nested_variance_is_the_two_level_closed_form():
    rng = np.random.default_rng(3)
    n_seeds, n = 4, 25
    data = rng.standard_normal((n_seeds, n)) + 3 * rng.standard_normal((n_seeds, 1))
    means = nested_means(data.reshape(-1, 1), np.repeat(np.arange(n_seeds), n), 4000, np.random.default_rng(4))[0]
    # equal counts: Var* = var_between / S + mean(var_within) / (S·n), population variances (ddof 0)
    expect = data.mean(1).var() / n_seeds + data.var(1).mean() / (n_seeds * n)
    assert abs(means.var() / expect - 1) < 0.1 and abs(means.mean() - data.mean()) < 0.1 * np.sqrt(expect)
