"""--method in training: crossing with optimizers, identity and pairs, settings shared out, bad input."""
from __future__ import annotations

import json

import pytest

from xbench.cli import main
from xbench.errors import UnknownNameError, XbenchError
from xbench.train import TrainConfig, train


def test_plain_runs_keep_their_ids():
    """erm is the default and leaves run and pair ids as they were before methods existed (checkpoints resume)."""
    cfg = TrainConfig()
    cfg.validate()
    assert cfg.run_id == "lenet-mnist10k-sgd-s0-bbee8527" and cfg.pair_id == "9ee24099"


def test_method_and_its_settings_are_the_run_identity():
    ids = set()
    for kw in ({}, {"eps": 0.2}, {"steps": 3}):
        cfg = TrainConfig(method="adv-l1", method_kwargs=kw)
        cfg.validate()
        assert cfg.method_kwargs == {"eps": 0.1, "steps": 1, "step": None, **kw}  # every setting resolved
        assert cfg.run_id.startswith("lenet-mnist10k-adv-l1-sgd-s0-")
        twin = TrainConfig(method="adv-l1", method_kwargs=kw, opt="bort-s")
        twin.validate()
        assert twin.pair_id == cfg.pair_id  # twins still differ only in the optimizer
        ids.add((cfg.run_id, cfg.pair_id))
    assert len(ids) == 3 and TrainConfig().pair_id not in {p for _, p in ids}


def test_methods_cross_with_optimizers_and_pair_within_a_method(tmp_path):
    runs = train(model="lenet", data="fake", opt="sgd,bort-s", method="erm,adv-group", seeds=[0], epochs=1,
                 out=tmp_path, progress=False, batch_size=128, method_kwargs={"eps": 0.5, "group": 7})
    assert [(r["method"], r["opt"]) for r in runs] == [("erm", "sgd"), ("erm", "bort-s"), ("adv-group", "sgd"),
                                                      ("adv-group", "bort-s")]
    assert runs[0]["pair_id"] == runs[1]["pair_id"] != runs[2]["pair_id"] == runs[3]["pair_id"]
    config = json.loads((tmp_path / runs[2]["run_id"] / "config.json").read_text())
    assert config["method"] == "adv-group" and config["method_kwargs"] == {"eps": 0.5, "group": 7, "steps": 1,
                                                                           "step": None}
    assert json.loads((tmp_path / runs[0]["run_id"] / "config.json").read_text())["method_kwargs"] == {}


def test_settings_go_to_the_methods_that_declare_them(tmp_path):
    with pytest.raises(XbenchError, match="steps is not a setting of erm, adv-penalty-l1"):
        train(method="erm,adv-penalty-l1", method_kwargs={"steps": 2}, out=tmp_path, progress=False)
    with pytest.raises(UnknownNameError, match="did you mean adv-l1"):
        train(method="adv-l", out=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("flags,match", [
    (["--method", "adv-l1", "--adv-eps", "-0.1"], "eps='-0.1' is out of range"),
    (["--method", "adv-l1", "--adv-eps", "nan"], "eps='nan' is not finite"),
    (["--method", "adv-group", "--adv-steps", "0"], "steps='0' is out of range"),
    (["--method", "erm,adv-l11"], "did you mean adv-l1"),
    (["--method", "adv-elastic", "--method-arg", "eps2=0"], "eps2='0' is out of range")])
def test_bad_method_input_is_one_line_and_writes_nothing(tmp_path, capsys, flags, match):
    out = tmp_path / "ck"
    assert main(["train", "--data", "fake", "--epochs", "1", "--out", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xbench: error:") and match in err[0]
    assert not out.exists()
