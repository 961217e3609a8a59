"""Reports: tables and intervals against hand computations, escaping, torch-free use, and a real browser."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xbench.cli import main
from xbench.evaluate import evaluate
from xbench.explain import explain
from xbench.reports import build_report
from xbench.reports.tables import t95


def _records(path: Path, run_prefix: str = "run"):
    """Three seeds × {sgd, bort-s} × {deletion, insertion}, with known numbers."""
    recs = []
    values = {("sgd", "deletion"): [0.30, 0.32, 0.34], ("bort-s", "deletion"): [0.20, 0.25, 0.24],
              ("sgd", "insertion"): [0.60, 0.62, 0.61], ("bort-s", "insertion"): [0.70, 0.66, 0.71]}
    for (opt, metric), vals in values.items():
        for seed, v in enumerate(vals):
            recs.append({"run_id": f"{run_prefix}-{opt}-s{seed}", "pair_id": f"p{seed}", "model": "lenet",
                         "dataset": "mnist10k", "optimizer": opt, "seed": seed, "interpreter": "sat",
                         "interp_key": "k", "interp_hparams": {}, "metric": metric, "metric_key": metric,
                         "n_requested": 10, "score": metric, "layer": "", "level": "example",
                         "category": "faithfulness", "higher_is_better": metric == "insertion", "n": 10, "n_nan": 0,
                         "mean": v, "std": 0.1, "sem": 0.03, "metric_params": {}, "scores_file": None,
                         "heldout_acc": 0.9, "created_at": "2026-01-01T00:00:00", "xbench_version": "0"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_pairs_deltas_and_paired_interval(tmp_path):
    _records(tmp_path / "results.jsonl")
    res = build_report(tmp_path, figures=False)
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    row = pairs[pairs["metric"] == "deletion"].iloc[0]
    d = np.array([0.20 - 0.30, 0.25 - 0.32, 0.24 - 0.34])
    half = 4.303 * d.std(ddof=1) / np.sqrt(3)
    assert row["delta"] == pytest.approx(d.mean()) and row["ci95_low"] == pytest.approx(d.mean() - half)
    assert bool(row["bort_better"]) and bool(row["significant"])
    ins = pairs[pairs["metric"] == "insertion"].iloc[0]
    assert bool(ins["bort_better"])  # higher insertion is better
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    sgd = board[(board["optimizer"] == "sgd") & (board["metric"] == "deletion")].iloc[0]
    assert sgd["mean"] == pytest.approx(0.32) and sgd["n_seeds"] == 3
    assert "Deletion" in res.text and "Δ-0.090" in res.text
    assert t95(2) == 4.303 and t95(200) == 1.96


def test_user_strings_are_escaped(tmp_path):
    _records(tmp_path / "results.jsonl", run_prefix="<script>alert(1)</script>")
    build_report(tmp_path, figures=False)
    html = (tmp_path / "leaderboard.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_reports_need_no_torch(tmp_path):
    _records(tmp_path / "results.jsonl")
    # an import hook, not sys.modules['torch'] = None: scipy.stats (rankings) looks torch up in sys.modules
    code = ("import sys, importlib.abc\n"
            "class NoTorch(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch': raise ImportError('reports must not import torch')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            f"from xbench.reports import build_report; build_report({str(tmp_path)!r}); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


def test_report_cli_errors(tmp_path):
    assert main(["report", "--out", str(tmp_path / "nothing")]) == 2


@pytest.fixture(scope="module")
def real_report(tiny_run, tmp_path_factory):
    out_ck, _ = tiny_run
    rep = tmp_path_factory.mktemp("real-report")
    explain(str(out_ck / "*"), interps="cam,sat", n=4, progress=False)
    evaluate(str(out_ck / "*"), interps="cam,sat", metrics="deletion,insertion", n=4, out=rep, progress=False)
    evaluate(str(out_ck / "*"), metrics="recon_ratio,gram,decomposition,synthesis", n=4, out=rep, progress=False,
             hparams={"decomposition": {"k": 8}, "synthesis": {"k": 8}})
    return build_report(rep), rep


def test_real_report_has_every_figure(real_report):
    res, rep = real_report
    captions = " | ".join(res.figures)
    for part in ("Deletion curves", "Insertion curves", "Saliency maps", "Reconstruction ratio", "Gram",
                 "Feature decomposition", "Adversarial synthesis"):
        assert part in captions, captions
    assert all(Path(p).stat().st_size > 1000 for p in res.figures.values())


def _browser():
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chrome and driver):
        if os.environ.get("XBENCH_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required (make test installs them)")
        pytest.skip("no chromium/chromedriver here; `make test` installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_leaderboard_renders_in_a_real_browser(real_report):
    res, rep = real_report
    driver = _browser()
    try:
        driver.get((rep / "leaderboard.html").resolve().as_uri())
        rows = driver.find_elements("css selector", "#table3 tbody tr")
        assert len(rows) == 4  # 2 interpreters × 2 optimizers
        assert "Deletion ↓" in driver.find_element("css selector", "#table3 thead").text
        images = driver.find_elements("css selector", "figure img")
        assert len(images) == len(res.figures) >= 7
        for img in images:
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
        assert driver.find_elements("css selector", "#recon tbody tr")
    finally:
        driver.quit()
