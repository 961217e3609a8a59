"""xbench explain: cached maps per run × interpreter, reuse, extension, grid, CLI."""
from __future__ import annotations

import torch

from xbench import explain as explain_module
from xbench.cli import main
from xbench.explain import explain, resolve_runs


def test_explain_writes_reuses_and_extends(tiny_run, monkeypatch):
    out, runs = tiny_run
    lines = explain(str(out / "*"), interps="cam,sat", n=6, progress=False)
    files = sorted((out / runs[0]["run_id"] / "maps").glob("*.pt"))
    assert [f.name.split("-")[0] for f in files] == ["cam", "sat"]
    assert (out / runs[0]["run_id"] / "maps" / "grid.png").stat().st_size > 1000
    assert sum("grid" in line for line in lines) == 2
    state = torch.load(files[1], weights_only=True)
    assert state["maps"].shape == (6, 28, 28) and state["indices"].tolist() == list(range(6))

    calls = []
    real = explain_module.compute_maps
    monkeypatch.setattr(explain_module, "compute_maps", lambda interp, x, *a, **k: calls.append(len(x)) or
                        real(interp, x, *a, **k))
    explain(str(out / "*"), interps="cam,sat", n=6, progress=False, grid=False)
    assert calls == []  # cached
    explain(str(out / "*"), interps="sat", n=9, progress=False, grid=False)
    assert calls == [3, 3]  # only the three new images, for each of the two runs
    explain(str(out / "*"), interps="sat", n=4, hparams={"sat": {"k": 8}}, progress=False, grid=False)
    assert len(list((out / runs[0]["run_id"] / "maps").glob("sat-*.pt"))) == 2  # other settings, other file


def test_resolve_runs(tiny_run, tmp_path):
    out, runs = tiny_run
    assert len(resolve_runs(str(out / "*"))) == 2
    assert resolve_runs(runs[0]["run_dir"]) == resolve_runs(f"{runs[0]['run_dir']}/model.pt")


def test_cli_explain(tiny_run, capsys):
    out, runs = tiny_run
    assert main(["explain", "--run", runs[1]["run_dir"], "--interp", "gradcam", "--n", "3", "--quiet"]) == 0
    assert "gradcam" in capsys.readouterr().out
    assert main(["explain", "--run", runs[1]["run_dir"], "--interp", "nope"]) == 2
    assert main(["explain", "--run", str(out / "missing*"), "--interp", "cam"]) == 2
