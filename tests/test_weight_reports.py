"""End to end on tiny mlp runs (SGD/Bort-S × l1 0/1e-3): weight and attribution metrics through evaluate, then the
report's per-layer tables, attribution columns with their direction, and figures."""
from __future__ import annotations

import json

from xbench.evaluate import evaluate
from xbench.reports import build_report
from xbench.train import train

WEIGHT_HP = {"stability_c1": {"directions": 2, "power_iters": 5}, "stability_c2": {"directions": 1}}
MAP_HP = {"ig": {"n_steps": 4}, "max_sensitivity": {"n_samples": 2}, "local_lipschitz": {"n_samples": 2}}


def test_weight_and_attribution_metrics_reach_the_report(tmp_path):
    runs = train(model="mlp", data="fake", opt="sgd,bort-s", l1="0,1e-3", seeds=[0], epochs=1, out=tmp_path / "ck",
                 progress=False, model_kwargs={"shape": "4x300", "init_std": 0.1})
    assert len(runs) == 4
    out = tmp_path / "rep"
    evaluate(f"{tmp_path}/ck/*", metrics="weight_sparsity,disentanglement,faithfulness,stability_c1,stability_c2",
             n=6, hparams=WEIGHT_HP, out=out, progress=False)
    evaluate(f"{tmp_path}/ck/*", interps="ig", metrics="sparseness,complexity,max_sensitivity,local_lipschitz", n=3,
             hparams=MAP_HP, out=out, progress=False)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    c1 = [r for r in records if r["metric"] == "stability_c1" and r["score"] == "max_r1"]
    assert {r["layer"] for r in c1} == {"fc1", "fc2", "fc3", "fc4"} and all(r["metric_params"]["directions"] == 2 for r in c1)
    assert {r["layer"] for r in records if r["metric"] == "faithfulness"} == {f"fc{i}" for i in range(1, 6)}
    assert {r["l1"] for r in records} == {0.0, 1e-3}
    result = build_report(out)
    for caption in ("mean |w| per layer", "faithfulness: Pearson", "mean |cos|", "C1 sampled max",
                    "attribution metrics", "complexity ↓", "max_sensitivity ↓", "sparseness ↑", "erm + l1 0.001 · bort-s"):
        assert caption in result.text, caption
    assert any(c.startswith("Row cosines per layer") for c in result.figures)
    assert any(c.startswith("C1 per radius") for c in result.figures)
    assert any(c.startswith("Mean |w| per layer") for c in result.figures)
    html = (out / "leaderboard.html").read_text()
    assert "Attribution metrics" in html and "faithfulness: Pearson" in html
    pairs = result.tables["pairs"]
    assert set(pairs[pairs["metric"] == "faithfulness"]["method"]) == {"erm", "erm + l1 0.001"}
