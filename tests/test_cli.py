"""The command line: one-line errors with exit code 2, listings, a real training command."""
from __future__ import annotations

import subprocess
import sys

import pytest

from xbench.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "xbench.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args", [
    ["train", "--model", "lenett"],
    ["train", "--lr", "-1"],
    ["train", "--epochs", "0"],
    ["train", "--lr", "abc"],
    ["train", "--out", "/proc/xbench-cannot-write"],
    ["list", "widgets"],
])
def test_user_errors_are_one_line_with_exit_code_2(args, tmp_path):
    proc = _run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xbench: error:"), proc.stderr


@pytest.mark.parametrize("family", ["models", "optimizers", "datasets", "interpreters", "metrics"])
def test_list(family, capsys):
    assert main(["list", family]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) >= 3


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
