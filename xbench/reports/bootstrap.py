"""Percentile-bootstrap 95 % intervals for the rankings: over images (one seed) or over seeds × images (several).

Every interval in "Ranking" and "Stability" is of a statistic of row means: ``of_means(mean over the rows of data)``
(the identity for a mean rank or a mean score, Kendall τ between two halves of the columns for τ). With one seed the
rows are resampled by ``scipy.stats.bootstrap``. With several seeds (runs of one unit) the resampling has two levels,
as the seed-to-seed variation belongs in the interval: draw as many seeds as there are, with replacement, then within
each drawn seed as many of its images as it has, with replacement; the statistic pools every drawn image, so with
unequal image counts a seed with more images weighs more, as it does in the point estimate.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

IMAGES, SEEDS_IMAGES = "images", "seeds × images"  # the label a table records: what the bootstrap resampled
_CHUNK = 1 << 22  # drawn image indices held at once (resamples are drawn in chunks of this many indices)


def level(runs) -> str:
    """The resampling ``interval`` uses for these row labels."""
    return SEEDS_IMAGES if runs is not None and len(np.unique(runs)) > 1 else IMAGES


def interval(data: np.ndarray, runs, of_means, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of ``of_means(m)``, m = data's mean over rows, data [rows, ...]; ``runs`` labels each row's seed.

    ``of_means`` takes the means with the resamples on the last axis (``data.shape[1:] + (n_boot,)``), the layout
    ``scipy.stats.bootstrap`` hands a vectorised statistic.
    """
    if len(data) < 2:
        nan = np.full(np.shape(of_means(data.mean(0)[..., None]))[:-1], np.nan)
        return nan, nan
    rng = np.random.default_rng(seed)
    if level(runs) == IMAGES:
        res = stats.bootstrap((data,), lambda x, axis: of_means(np.mean(x, axis=axis)), n_resamples=n_boot,
                              method="percentile", axis=0, vectorized=True, random_state=rng)
        return res.confidence_interval.low, res.confidence_interval.high
    theta = of_means(nested_means(data, runs, n_boot, rng))
    ci = stats.quantile(theta, np.array([0.025, 0.975]), axis=-1)  # what bootstrap's percentile method takes
    return ci[..., 0], ci[..., 1]


def nested_means(data: np.ndarray, runs, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Row means of ``n_boot`` two-level resamples (seeds, then images within each drawn seed): [..., n_boot].

    ``scipy.stats.bootstrap`` resamples the observations of one level only, so the two levels are drawn here:
    seeds ``rng.integers(0, S, (B, S))``, then image positions ``rng.integers(0, n_seed, (B, S, n_max))`` of which
    the first ``n_seed`` of each drawn seed are used (image counts may differ). The drawn rows become counts per
    row, and the means one matrix product; no loop per resample.
    """
    codes = np.unique(np.asarray(runs), return_inverse=True)[1].ravel()
    sizes = np.bincount(codes)
    n_seeds, n_max, n = len(sizes), int(sizes.max()), len(data)
    order = np.argsort(codes, kind="stable")
    members = np.zeros((n_seeds, n_max), dtype=np.int64)  # members[s, :sizes[s]]: the rows of seed s
    members[codes[order], np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)] = order
    flat = data.reshape(n, -1).astype(float)
    step = max(1, _CHUNK // (n_seeds * n_max))
    out = []
    for start in range(0, n_boot, step):  # chunks bound the memory; each chunk is one vectorised draw
        b = min(step, n_boot - start)
        drawn = rng.integers(0, n_seeds, (b, n_seeds))  # [B, S] seeds, with replacement
        size = sizes[drawn][..., None]  # [B, S, 1] their image counts
        rows = members[drawn[..., None], rng.integers(0, size, (b, n_seeds, n_max))]  # [B, S, n_max]
        used = np.arange(n_max) < size
        key = (np.arange(b)[:, None, None] * n + rows)[used]
        counts = np.bincount(key, minlength=b * n).reshape(b, n).astype(float)
        out.append(counts @ flat / counts.sum(1, keepdims=True))
    return np.moveaxis(np.concatenate(out).reshape((n_boot,) + data.shape[1:]), 0, -1)
