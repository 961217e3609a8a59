"""xbench run: a whole study from one TOML file — checked first, run, resumed, tagged; bad files are one line."""
from __future__ import annotations

import hashlib
import json

import pytest

from xbench.cli import main
from xbench.fileio import read_jsonl

STUDY = """\
[study]
name = "tiny"

[train]
model = "lenet"
data = "fake"
opt = ["sgd", "bort-s"]
seeds = [0]
epochs = 1

[explain]
interp = "cam"
n = 4

[[evaluate]]
interp = ["cam"]
metric = ["deletion"]
n = 4
hparam = { deletion = { step = 98 } }

[[evaluate]]
metric = "gram"

[report]
no-figures = true
"""


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["run", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_study_runs_resumes_and_tags_every_record(tmp_path, capsys):
    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    out = tmp_path / "out"
    code, text, _ = run(capsys, study, "--out", out, "--dry-run", "--quiet")
    assert code == 0 and "2 run(s)" in text and "2 to train" in text and not out.exists()
    code, text, _ = run(capsys, study, "--out", out, "--quiet")
    assert code == 0, text
    records = read_jsonl(out / "reports" / "results.jsonl")
    sha = hashlib.sha256(study.read_bytes()).hexdigest()
    assert {r["metric"] for r in records} == {"deletion", "gram"}
    assert all(r["study"] == {"file": str(study), "name": "tiny", "sha256": sha} for r in records)
    assert {r["metric_params"]["step"] for r in records if r["metric"] == "deletion"} == {98}
    assert f"study tiny ({study}, sha256 {sha[:12]})" in text  # the report names its study
    assert "tiny" in (out / "reports" / "leaderboard.html").read_text()
    code, text, _ = run(capsys, study, "--out", out, "--dry-run", "--quiet")  # everything is done now
    assert code == 0 and "0 to train, 2 done" in text and "0 map set(s) to compute, 2 cached" in text
    assert text.count("0 job(s) to do") == 2
    code, text, _ = run(capsys, study, "--out", out, "--quiet")  # a re-run redoes nothing
    assert code == 0 and text.count("0 record(s) written") == 2
    assert len(read_jsonl(out / "reports" / "results.jsonl")) == len(records)
    # as if killed mid-way: one run's training and the last records lost; the re-run redoes exactly those
    import shutil

    lost = sorted((out / "checkpoints").iterdir())[0]
    shutil.rmtree(lost)
    lines = (out / "reports" / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "reports" / "results.jsonl").write_text("".join(lines[:1]))
    code, text, _ = run(capsys, study, "--out", out, "--dry-run", "--quiet")
    assert "1 to train, 1 done" in text and f"to train: {lost.name}" in text and "1 run(s) not trained yet" in text
    code, text, _ = run(capsys, study, "--out", out, "--quiet")
    assert code == 0 and sorted(r["run_id"] for r in read_jsonl(out / "reports" / "results.jsonl")) == sorted(
        r["run_id"] for r in records)


def test_two_recipes_stay_apart_and_runs_patterns_pick_one(tmp_path, capsys):
    """A second [[train]] table (another lr, its own out) and an evaluate table naming only its runs."""
    study = tmp_path / "two.toml"
    body = STUDY.split("[explain]")[0].replace("[train]", "[[train]]")
    study.write_text(body + '[[train]]\nout = "recipe-b"\nmodel = "lenet"\ndata = "fake"\nopt = ["sgd", "bort-s"]\n'
                            'seeds = [0]\nepochs = 1\nlr = 0.02\n\n[[evaluate]]\nmetric = "gram"\n\n'
                            '[[evaluate]]\nruns = "recipe-b/*"\ninterp = "cam"\nmetric = "deletion"\nn = 4\n\n[report]\n')
    out = tmp_path / "out"
    code, text, err = run(capsys, study, "--out", out, "--quiet")
    assert code == 0, err
    assert len(list((out / "recipe-b").iterdir())) == 2 and len(list((out / "checkpoints").iterdir())) == 2
    records = read_jsonl(out / "reports" / "results.jsonl")
    assert {r["run_id"] for r in records if r["metric"] == "deletion"} == {p.name for p in (out / "recipe-b").iterdir()}
    from xbench.reports import build_report

    board = build_report(out / "reports", figures=False).tables["leaderboard"]
    assert set(board[board["metric"] == "gram"]["variant"]) == {"lr=0.01", "lr=0.02"}


BAD = [  # (what is wrong, the study text, the line the error must name, words the message must hold)
    ("syntax", STUDY.replace("seeds = [0]", "seeds = [0"), 9, "invalid TOML"),
    ("unknown section", STUDY + "\n[evalute]\n", 27, "did you mean evaluate"),
    ("unknown key", STUDY.replace("epochs = 1", "epoch = 1"), 9, "did you mean epochs"),
    ("unknown study key", STUDY.replace('name = "tiny"', 'nmae = "tiny"'), 2, "did you mean name"),
    ("wrong type", STUDY.replace("n = 4\nhparam", 'n = "four"\nhparam'), 18, "invalid int value"),
    ("bad setting", STUDY.replace("epochs = 1", "epochs = 1\nlr = -1"), 10, "lr"),
    ("infinite setting", STUDY.replace("epochs = 1", "epochs = 1\nlr = inf"), 10, "not finite"),
    ("bad hparam", STUDY.replace("step = 98", "step = 0"), 19, "step"),
    ("unknown interpreter", STUDY.replace('interp = "cam"', 'interp = "cma"'), 12, "cma"),
    ("switch with a value", STUDY.replace("no-figures = true", 'no-figures = "yes"'), 25, "true or false"),
    ("table for a value", STUDY.replace("seeds = [0]", "seeds = { a = 1 }"), 8, "not a table"),
    ("runs no train makes", STUDY.replace("n = 4\nhparam", 'n = 4\nruns = "checkpoints/resnet*"\nhparam'), 19,
     "names no run"),
]


@pytest.mark.parametrize("what,text,line,words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_study_is_one_line_with_file_and_line(tmp_path, capsys, what, text, line, words):
    study = tmp_path / "bad.toml"
    study.write_text(text)
    code, out, err = run(capsys, study, "--out", tmp_path / "out", "--quiet")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"xbench: error: {study}:{line}: ") and words in lines[0], lines[0]
    assert not (tmp_path / "out").exists()  # nothing run, nothing written


def test_shipped_studies_are_valid(capsys, tmp_path):
    from pathlib import Path

    for study in sorted(Path(__file__).parents[1].joinpath("studies").glob("*.toml")):
        code, text, err = run(capsys, study, "--out", tmp_path / study.stem, "--dry-run", "--quiet")
        assert code == 0 and "[train]" in text, (study, err)
        assert not (tmp_path / study.stem).exists()
