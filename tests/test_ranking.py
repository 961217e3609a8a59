"""Rank aggregation, bootstrap intervals and Kendall τ stability in reports; comma lists crossing into jobs."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from scipy import stats

from xbench.cli import main
from xbench.errors import XbenchError
from xbench.fileio import read_jsonl
from xbench.reports import build_report
from xbench.reports.ranking import tau_b, unit_ranking
from xbench.reports.stability import pair_kind

INTERPS = ("cam", "ig", "sat", "random")


def _write(tmp, n=40):
    """A results folder written by hand: 2 seeds × 4 interpreters × (deletion under 2 substrates, srg)."""
    rng = np.random.default_rng(0)
    recs, truth = [], {}
    quality = {"cam": 0.2, "ig": 0.3, "sat": 0.35, "random": 0.6}  # deletion AUC level, lower = better
    for seed in (0, 1):
        for interp in INTERPS:
            for metric, variant, scores in (("deletion", "substrate=zero", {"deletion": False}),
                                            ("deletion", "substrate=blur", {"deletion": False}),
                                            ("srg", "", {"srg": True, "morf": False, "lerf": True})):
                arrays = {}
                for score, hib in scores.items():
                    base = quality[interp] if not hib else 1 - quality[interp]
                    arrays[score] = base + 0.15 * rng.standard_normal(n)
                    truth[(seed, interp, metric, variant, score)] = arrays[score]
                side = f"scores/run{seed}/{interp}__{metric}-{variant or 'none'}.npz"
                (tmp / side).parent.mkdir(parents=True, exist_ok=True)
                np.savez(tmp / side, **{f"score__{k}": v for k, v in arrays.items()})
                for score, hib in scores.items():
                    recs.append({"run_id": f"run{seed}", "pair_id": f"p{seed}", "model": "lenet", "dataset": "toy",
                                 "optimizer": "sgd", "seed": seed, "interpreter": interp, "interp_key": interp,
                                 "metric": metric, "metric_key": metric + variant, "metric_variant": variant,
                                 "score": score, "layer": "", "level": "example", "category": "faithfulness",
                                 "higher_is_better": hib, "n": n, "n_requested": n, "n_used": n,
                                 "mean": float(arrays[score].mean()), "std": 0.1, "scores_file": side,
                                 "heldout_acc": 0.9, "created_at": "2026-01-01T00:00:00+00:00",
                                 "interp_baseline": interp == "random"})
    (tmp / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return truth


def test_ranks_intervals_and_random_check_against_a_loop(tmp_path):
    truth = _write(tmp_path)
    result = build_report(tmp_path, figures=False, bootstrap=200)
    ranking = result.tables["ranking"]
    unit = ranking[(ranking["metric"] == "deletion") & (ranking["metric_variant"] == "substrate=zero")]
    # the loop: per image, sort interpreters by AUC (lower is better), rank 1..4, images of both seeds pooled
    ranks = {i: [] for i in INTERPS}
    for seed in (0, 1):
        for k in range(40):
            order = sorted(INTERPS, key=lambda i: truth[(seed, i, "deletion", "substrate=zero", "deletion")][k])
            for pos, i in enumerate(order):
                ranks[i].append(pos + 1)
    for r in unit.itertuples():
        mine = np.array(ranks[r.interpreter])
        assert abs(r.mean_rank - mine.mean()) < 1e-12 and r.median_rank == np.median(mine)
        assert abs(r.sem_rank - mine.std(ddof=1) / np.sqrt(80)) < 1e-12 and r.n_images == 80
        assert r.rank_ci_low <= r.mean_rank <= r.rank_ci_high
    assert list(unit["interpreter"]) == ["cam", "ig", "sat", "random"]
    assert (unit[unit["interpreter"] != "random"]["beats_random"] == 1.0).all()
    assert {"Ranking", "Stability"} <= set(_sections(tmp_path))
    stability = result.tables["stability"]
    assert {"substrate", "order", "seed"} <= set(stability["kind"])
    # two seeds pooled: intervals over seeds × images, recorded in both tables and the page; seed vs seed: images
    assert set(ranking["bootstrap"]) == {"seeds × images"} and set(ranking["n_seeds"]) == {2}
    resampled = stability.groupby("kind")["bootstrap"].agg(lambda b: ",".join(sorted(set(b))))
    assert resampled["seed"] == "images" and resampled["substrate"] == resampled["order"] == "seeds × images"
    assert "80 images, 2 seeds; bootstrap over seeds × images" in (tmp_path / "leaderboard.html").read_text()
    assert "lenet · toy · sgd: " in result.text and "not better than random (paired" not in result.text


def test_an_interpreter_no_better_than_random_is_flagged(tmp_path):
    rng = np.random.default_rng(1)
    g = rng.standard_normal((60, 3))
    g[:, 1] = g[:, 2] + 0.01 * rng.standard_normal(60)  # "weak" is random plus a little noise
    import pandas as pd

    table = unit_ranking(pd.DataFrame(g, columns=["strong", "weak", "random"]).assign(strong=lambda d: d["strong"] + 3),
                         n_boot=300)
    flags = dict(zip(table["interpreter"], table["beats_random"]))
    assert flags["strong"] == 1.0 and flags["weak"] == 0.0 and np.isnan(flags["random"])
    clipped = unit_ranking(pd.DataFrame(g, columns=["a", "b", "c"]), n_boot=100, clip=0.1).set_index("interpreter")
    from scipy.stats.mstats import winsorize

    for j, name in enumerate("abc"):  # LATEC's clipping: the same as winsorising 10 % at each end
        ref = np.sort(g[:, j])
        lo, hi = np.quantile(ref, [0.1, 0.9])
        assert abs(clipped.loc[name, "mean_goodness"] - np.clip(ref, lo, hi).mean()) < 1e-12
        assert abs(clipped.loc[name, "mean_goodness"] - float(winsorize(ref, (0.1, 0.1)).mean())) < 0.02


def test_vectorised_tau_equals_scipy_and_the_tau_interval(tmp_path):
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 4, (50, 6)).astype(float), rng.integers(0, 4, (50, 6)).astype(float)  # many ties
    ours = tau_b(a, b)
    ref = np.array([stats.kendalltau(x, y).statistic for x, y in zip(a, b)])
    assert np.allclose(ours, ref, equal_nan=True)
    truth = _write(tmp_path)
    stability = build_report(tmp_path, figures=False, bootstrap=200).tables["stability"]
    row = stability[(stability["kind"] == "substrate")].iloc[0]
    means = [np.mean([[truth[(s, i, "deletion", v, "deletion")] for i in INTERPS] for s in (0, 1)], axis=(0, 2))
             for v in ("substrate=blur", "substrate=zero")]
    assert abs(row["tau"] - stats.kendalltau(*means).statistic) < 1e-12  # well-separated means: ranks order = AUC order
    assert row["ci95_low"] <= row["tau"] <= row["ci95_high"]


def test_pair_kinds():
    assert pair_kind(("deletion", "substrate=zero", "deletion"), ("deletion", "substrate=blur", "deletion")) == \
        "substrate"
    assert pair_kind(("srg", "substrate=zero", "morf"), ("srg", "substrate=zero", "lerf")) == "order"
    assert pair_kind(("deletion", "order=morf", "deletion"), ("deletion", "order=lerf", "deletion")) == "order"
    assert pair_kind(("deletion", "", "deletion"), ("insertion", "", "insertion")) == ""


def _sections(folder):
    html = (folder / "leaderboard.html").read_text()
    import re

    return re.findall(r"<h2>([^<]+)</h2>", html)


def test_bootstrap_below_100_is_refused(tmp_path):
    _write(tmp_path)
    with pytest.raises(XbenchError, match="at least 100"):
        build_report(tmp_path, bootstrap=99)
    assert main(["report", "--out", str(tmp_path), "--bootstrap", "50"]) == 2
    assert not (tmp_path / "leaderboard.html").exists()


def test_a_comma_list_crosses_into_one_job_per_value(tiny_run, tmp_path):
    from xbench.evaluate import evaluate

    out_ck, runs = tiny_run
    evaluate(runs[0]["run_dir"], interps="cam,random,edge", metrics="deletion,road", n=4, out=tmp_path,
             progress=False, hparams={"deletion": {"substrate": "zero,blur", "step": "40"},
                                      "road": {"percentages": "20,60", "substrate": "zero,noisy_linear"}})
    recs = read_jsonl(tmp_path / "results.jsonl")
    dele = [r for r in recs if r["metric"] == "deletion"]
    assert sorted({r["metric_variant"] for r in dele}) == ["substrate=blur", "substrate=zero"]
    assert all(r["metric_params"]["substrate"] == r["metric_variant"].split("=")[1] for r in dele)
    assert all(r["metric_params"]["step"] == 40 for r in dele) and len(dele) == 3 * 2
    road = [r for r in recs if r["metric"] == "road"]
    assert {r["metric_params"]["percentages"] == [20.0, 60.0] for r in road} == {True} and len(road) == 3 * 2 * 3
    assert {r["interp_baseline"] for r in recs if r["interpreter"] in ("random", "edge")} == {True}
    result = build_report(tmp_path, figures=True, bootstrap=100)
    assert set(result.tables["ranking"]["metric_variant"]) >= {"substrate=zero", "substrate=blur",
                                                               "substrate=noisy_linear"}
    assert any("Kendall" in str(f) or "tau" in str(f) for f in result.files)
    assert "Stability" in _sections(tmp_path)


def test_dry_run_counts_crossed_jobs():
    from xbench.run import _evaluate_jobs

    hp = {"deletion": {"substrate": "zero,blur,noisy_linear"}, "road": {"percentages": "10,50"}}
    assert _evaluate_jobs(["cam", "ig"], ["deletion", "road"], ["gram"], hp) == 2 * (3 + 1) + 1
