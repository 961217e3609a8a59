"""xbench evaluate: records per the contract, side files, resume/skip, force, user errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xbench.cli import main
from xbench.errors import XbenchError
from xbench.evaluate import evaluate
from xbench.fileio import read_jsonl

RECORD_FIELDS = {"run_id", "pair_id", "model", "dataset", "optimizer", "seed", "interpreter", "interp_hparams",
                 "metric", "metric_params", "n", "mean", "std", "scores_file", "xbench_version", "created_at",
                 "higher_is_better", "category", "score", "layer", "heldout_acc", "epochs_done", "checkpoint_sha256"}


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    out_ck, runs = tiny_run
    rep = tmp_path_factory.mktemp("reports")
    evaluate(str(out_ck / "*"), interps="cam,sat", metrics="deletion,insertion", n=5, out=rep, progress=False)
    evaluate(str(out_ck / "*"), metrics="recon_ratio,gram,decomposition,synthesis", n=5, out=rep, progress=False,
             hparams={"decomposition": {"k": 8}, "synthesis": {"k": 8}})
    return out_ck, runs, rep


def test_records_follow_the_contract(evaluated):
    _, runs, rep = evaluated
    recs = read_jsonl(rep / "results.jsonl")
    assert {r["run_id"] for r in recs} == {r["run_id"] for r in runs}
    maps = [r for r in recs if r["metric"] in ("deletion", "insertion")]
    assert len(maps) == 2 * 2 * 2  # runs × interpreters × metrics
    for r in recs:
        assert RECORD_FIELDS <= set(r), RECORD_FIELDS - set(r)
        assert isinstance(r["mean"], float) and isinstance(r["n"], int)
        side = np.load(rep / r["scores_file"])
        assert f"score__{r['score']}" in side.files
    d = next(r for r in maps if r["metric"] == "deletion" and r["interpreter"] == "sat")
    assert d["metric_params"]["substrate"] == "zero" and d["metric_params"]["score"] == "softmax"
    assert d["interp_hparams"]["k"] == 64 and d["higher_is_better"] is False and d["n"] == 5
    side = np.load(rep / d["scores_file"])
    assert side["score__deletion"].shape == (5,) and side["detail__curves"].shape[0] == 5
    assert abs(side["score__deletion"].astype(float).mean() - d["mean"]) < 1e-9
    layers = [r for r in recs if r["metric"] == "recon_ratio"]
    assert [r["layer"] for r in layers[:5]] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert {r["score"] for r in recs if r["metric"] == "synthesis"} == {"fooling", "source_similarity",
                                                                         "target_similarity"}


def test_rerun_skips_and_force_recomputes(evaluated):
    out_ck, _, rep = evaluated
    before = len(read_jsonl(rep / "results.jsonl"))
    msg = evaluate(str(out_ck / "*"), interps="cam,sat", metrics="deletion,insertion", n=5, out=rep, progress=False)
    assert msg.startswith("0 record(s) written, 8 job(s) already done")
    assert len(read_jsonl(rep / "results.jsonl")) == before
    evaluate(str(out_ck / "*"), interps="cam", metrics="deletion", n=5, out=rep, progress=False, force=True)
    assert len(read_jsonl(rep / "results.jsonl")) == before + 2
    evaluate(str(out_ck / "*"), interps="cam", metrics="deletion", n=5, out=rep, progress=False,
             hparams={"deletion": {"step": 20}})  # another protocol is another job
    assert len(read_jsonl(rep / "results.jsonl")) == before + 4


def test_user_errors(tiny_run, tmp_path):
    out_ck, _ = tiny_run
    with pytest.raises(XbenchError, match="--interp"):
        evaluate(str(out_ck / "*"), metrics="deletion", out=tmp_path)
    with pytest.raises(XbenchError, match="unknown metric"):
        evaluate(str(out_ck / "*"), interps="cam", metrics="deletions", out=tmp_path)
    assert main(["evaluate", "--runs", str(out_ck / "*"), "--metric", "deletion", "--out", str(tmp_path)]) == 2
    assert main(["evaluate", "--runs", str(tmp_path / "none*"), "--metric", "gram", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "results.jsonl").exists()


def test_n_beyond_the_heldout_split_warns_and_records_both_counts(tiny_run, tmp_path):
    out_ck, runs = tiny_run
    with pytest.warns(UserWarning, match="--n 99999 is more than the 2000 held-out images of mnist10k; using 2000"):
        evaluate(runs[0]["run_dir"], metrics="gram", n=99999, out=tmp_path, progress=False)
    (rec, *_) = read_jsonl(tmp_path / "results.jsonl")
    assert rec["n_requested"] == 99999 and rec["n_used"] == 2000
    summary = evaluate(runs[0]["run_dir"], metrics="gram", n=2000, out=tmp_path, progress=False)
    assert "0 record(s) written, 1 job(s) already done" in summary  # the same job as far as resume is concerned
