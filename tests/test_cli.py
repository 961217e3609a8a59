"""The command line: one-line errors with exit code 2, listings, a real training command."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xbench.cli import main
from xbench.registry import FAMILIES, family


def _run(*args):
    return subprocess.run([sys.executable, "-m", "xbench.cli", *args], capture_output=True, text=True)


# Every row is a user mistake: the command must end with exit code 2 and exactly one stderr line, and write nothing.
# {runs} is a trained pair (the tiny_run fixture); {bad} is a folder nobody can write to.
BAD_INPUTS = [
    # the seven settings values the typed-settings issue found
    "explain --runs {runs} --interp rise --hparam rise.n_masks=abc",
    "explain --runs {runs} --interp sat --hparam sat.k=-1",
    "explain --runs {runs} --interp ig --hparam ig.n_steps=0",
    "evaluate --runs {runs} --interp cam --metric deletion --hparam deletion.step=abc",
    "evaluate --runs {runs} --metric decomposition --hparam decomposition.k=0",
    "explain --runs {runs} --interp rise --hparam rise.p=2",
    "explain --runs {runs} --interp smoothgrad --hparam smoothgrad.noise_level=-1",
    # train
    "train --model lenett", "train --lr -1", "train --epochs 0", "train --lr abc", "train --out {bad}",
    "train --lr inf", "train --lr nan", "train --lr=-inf", "train --momentum 1", "train --momentum -0.1",
    "train --weight-decay -1", "train --bort-lambda nan", "train --lambda inf", "train --bort-mode l3",
    "train --bort-amplitude 0", "train --bort-amplitude adaa", "train --batch-size 0", "train --batch-size 1.5",
    "train --epochs 2.5", "train --epochs 1e400", "train --seeds a,b", "train --seeds -1", "train --opt sgdd",
    "train --data mnist10kk", "train --model mlp --model-arg shape=9x9", "train --model-arg nosuch=1",
    "train --model acnn_small --width 0", "train --model acnn_small --width inf", "train --dbort nan",
    "train --data fake:abc", "train --device quantum", "train --model-arg oops", "train --no-such-flag",
    "train --l1 -1", "train --l1 0,abc", "train --model mlp --model-arg init_std=0",
    # explain
    "explain --runs {runs} --interp nosuch", "explain --runs /nonexistent/*", "explain --runs {runs} --n 0",
    "explain --runs {runs} --interp cam --hparam cam.nosuch=1", "explain --runs {runs} --interp cam --hparam sat.k=3",
    "explain --runs {runs} --interp cam --hparam noequals", "explain --runs {runs} --batch-size abc",
    "explain --runs {runs} --interp sat --hparam sat.relu=leaky", "explain --runs {runs} --interp rise "
    "--hparam rise.n_masks=1e400",
    # evaluate
    "evaluate --runs {runs} --metric nosuch", "evaluate --runs {runs} --metric deletion",
    "evaluate --runs {runs} --interp cam --metric deletion --hparam deletion.substrate=plasma",
    "evaluate --runs {runs} --interp cam --metric insertion --hparam insertion.score=nan",
    "evaluate --runs {runs} --interp cam --n -5", "evaluate --runs {runs} --metric gram --out {bad}",
    "evaluate --runs {runs} --metric synthesis --hparam synthesis.batch_size=0",
    "evaluate --runs {runs} --metric recon_ratio --hparam recon_ratio.overlap=max",
    "evaluate --runs {runs} --interp cam --metric deletion --hparam deletion.blur_sigma=-inf",
    # curve orders, substrates (also inside a crossed comma list), road's percentage grid, bootstrap count
    "evaluate --runs {runs} --interp cam --metric deletion --hparam deletion.order=sideways",
    "evaluate --runs {runs} --interp cam --metric srg --hparam srg.substrate=zero,plasma",
    "evaluate --runs {runs} --interp cam --metric road --hparam road.percentages=0,50",
    "evaluate --runs {runs} --interp cam --metric road --hparam road.percentages=50,100.5",
    "report --bootstrap 99", "report --bootstrap abc", "report --clip 0.5", "report --clip -0.1",
    # weight-level and re-explaining metrics (seed 004, Quantus)
    "evaluate --runs {runs} --metric max_sensitivity", "evaluate --runs {runs} --metric complexity,weight_sparsity",
    "evaluate --runs {runs} --interp cam --metric max_sensitivity --hparam max_sensitivity.radius=0",
    "evaluate --runs {runs} --interp cam --metric local_lipschitz --hparam local_lipschitz.std=-1",
    "evaluate --runs {runs} --interp cam --metric max_sensitivity --hparam max_sensitivity.norm=l3",
    "evaluate --runs {runs} --metric stability_c1 --hparam stability_c1.radius2=0",
    "evaluate --runs {runs} --metric stability_c2 --hparam stability_c2.radius1=-0.1",
    "evaluate --runs {runs} --metric stability_c1 --hparam stability_c1.norm=fro",
    "evaluate --runs {runs} --metric faithfulness --hparam faithfulness.norm=l3",
    # report and list
    "report --results /nonexistent/results.jsonl", "report --out {bad}", "list widgets", "list models --bogus",
    "run /nonexistent/study.toml", "run studies/demo.toml --device quantum",
    "",
]


@pytest.fixture(scope="module")
def cli_paths(tiny_run, tmp_path_factory):
    out, _ = tiny_run
    bad = tmp_path_factory.mktemp("readonly") / "locked"
    bad.mkdir()
    bad.chmod(0o500)
    return {"runs": f"{out}/*", "bad": str(bad / "sub") if os.geteuid() else "/proc/xbench-cannot-write"}


@pytest.mark.parametrize("line", BAD_INPUTS)
def test_user_errors_are_one_line_with_exit_code_2(line, cli_paths, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written by mistake would land here
    args = line.format(**cli_paths).split()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xbench: error:"), err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args", [["train", "--lr", "inf"], ["list", "widgets"]])
def test_user_errors_from_a_real_process(args):
    proc = _run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xbench: error:"), proc.stderr


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_list_finds_every_registered_name(fam, capsys):
    assert main(["list", fam]) == 0
    shown = {line.split()[0].split(":")[0] for line in capsys.readouterr().out.strip().splitlines()}
    assert shown == set(family(fam).list())


@pytest.mark.parametrize("fam", list(FAMILIES))
def test_list_verbose_documents_every_setting(fam, capsys):
    assert main(["list", fam, "-v"]) == 0
    out = capsys.readouterr().out
    reg = family(fam)
    for name in reg.list():
        for key, setting in reg.settings(name).items():
            assert any(line.split()[:1] == [key] and setting.allowed() in line for line in out.splitlines()), (name, key)


def test_train_prints_accuracies(tmp_path, capsys):
    assert main(["train", "--data", "fake", "--opt", "sgd,bort-s", "--seeds", "0,1", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "sgd: held-out accuracy" in out and "bort-s: held-out accuracy" in out and "over 2 seed(s)" in out
    assert len(list(tmp_path.iterdir())) == 4


def test_warnings_are_one_line_and_only_while_the_command_runs(monkeypatch, capsys):
    import warnings

    import xbench.cli as cli

    def noisy(args):
        warnings.warn("cam: something worth knowing")

    monkeypatch.setattr(cli, "_cmd_list", noisy)
    assert cli.main(["list", "models"]) == 0
    assert capsys.readouterr().err == "xbench: warning: cam: something worth knowing\n"
    assert warnings.showwarning is not cli._one_line_warning
