"""Reports with training methods: the method column in the leaderboard and pairs, arms in Table 3, and seed 002's
side-by-side figure from the numpy previews `xbench explain` writes (records written here, no torch)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from xbench.reports import build_report


def _write(tmp_path: Path, with_method: bool = True) -> Path:
    rng = np.random.default_rng(0)
    pixels = rng.random((8, 28, 28, 1))
    recs = []
    for method in (["erm", "adv-l1"] if with_method else ["erm"]):
        for opt in ("sgd", "bort-s"):
            for seed in (0, 1):
                run = tmp_path / f"{method}-{opt}-s{seed}"
                for interp in ("cam", "sat", "split_cam", "split_lrp"):
                    maps_file = run / "maps" / f"{interp}-k.pt"
                    maps_file.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(maps_file.with_suffix(".npz"), maps=rng.standard_normal((8, 28, 28)),
                             pixels=pixels, indices=np.arange(8))
                    value = 0.3 - 0.05 * (opt == "bort-s") - 0.02 * (method != "erm") + 0.01 * seed
                    rec = {"run_id": run.name, "pair_id": f"{method}-p{seed}", "model": "lenet",
                           "dataset": "mnist10k", "optimizer": opt, "seed": seed, "interpreter": interp,
                           "interp_key": "k", "metric": "deletion", "metric_key": "d", "n_requested": 10,
                           "n_used": 10, "score": "deletion", "layer": "", "higher_is_better": False, "n": 10,
                           "mean": value, "std": 0.1, "heldout_acc": 0.9, "scores_file": None,
                           "maps_file": str(maps_file), "created_at": "2026-01-01T00:00:00"}
                    if with_method:
                        rec["method"] = method
                    recs.append(rec)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return tmp_path


def test_method_is_a_column_and_an_arm(tmp_path):
    res = build_report(_write(tmp_path))
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert set(board["method"]) == {"erm", "adv-l1"} and set(pairs["method"]) == {"erm", "adv-l1"}
    row = pairs[(pairs["method"] == "adv-l1") & (pairs["interpreter"] == "sat")].iloc[0]
    assert abs(row["delta"] - (-0.05)) < 1e-9 and row["n_seeds"] == 2  # twins joined within the method
    assert "adv-l1 · bort-s" in res.text and "<th>method</th>" in (tmp_path / "leaderboard.html").read_text()
    figures = [c for c in res.figures if c.startswith("SplitCAM and SplitLRP")]
    assert len(figures) == 2 and all(res.figures[c].stat().st_size > 1000 for c in figures)


def test_records_without_a_method_are_plain_training(tmp_path):
    build_report(_write(tmp_path, with_method=False), figures=False)
    assert set(pd.read_csv(tmp_path / "leaderboard.csv")["method"]) == {"erm"}
