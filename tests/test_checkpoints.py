"""Checkpoints: atomic, safe to load, clear errors on anything that is not a complete xbench checkpoint."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from xbench.checkpoints import load_checkpoint, save_checkpoint
from xbench.errors import XbenchError
from xbench.fileio import append_jsonl, atomic_write_text, read_jsonl


def _save(path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(path, epoch=4, model=model, optimizer=opt, config={"a": 1}, log=[{"epoch": 4, "loss": 0.5}])
    return model


def test_round_trip(tmp_path):
    model = _save(tmp_path / "m.pt")
    state = load_checkpoint(tmp_path / "m.pt")
    assert state["epoch"] == 4 and state["config"] == {"a": 1} and state["log"][0]["loss"] == 0.5
    assert torch.equal(state["model"]["weight"], model.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp files left


def test_truncated_file_is_one_clear_error(tmp_path):
    _save(tmp_path / "m.pt")
    raw = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(XbenchError, match="truncated or not an xbench checkpoint"):
        load_checkpoint(tmp_path / "m.pt")


@pytest.mark.parametrize("payload", ["text", "dict", "pickle"])
def test_foreign_files_are_rejected(tmp_path, payload):
    path = tmp_path / "f.pt"
    if payload == "text":
        path.write_text("hello")
    elif payload == "dict":
        torch.save({"weight": torch.zeros(2)}, path)
    else:  # an arbitrary pickled object: weights_only refuses to run it
        path.write_bytes(pickle.dumps(ValueError("x")))
    with pytest.raises(XbenchError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(XbenchError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


def test_atomic_text_and_jsonl(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two"
    append_jsonl(tmp_path / "r.jsonl", [{"x": 1.5}])
    append_jsonl(tmp_path / "r.jsonl", [{"x": 2}, {"y": "z"}])
    assert read_jsonl(tmp_path / "r.jsonl") == [{"x": 1.5}, {"x": 2}, {"y": "z"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "r.jsonl"]


def test_atomic_writes_get_the_umask_permissions_of_a_plain_open(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    mode = (tmp_path / "a.txt").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o640
