"""Paired training, resume (including after SIGKILL), logs, and user errors."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xbench.checkpoints import load_checkpoint
from xbench.data import Dataset
from xbench.errors import TrainingDiverged, XbenchError
from xbench.train import TrainConfig, dbort_loss, load_run, train


def test_pair_shares_seed_initial_weights_and_data_order(tmp_path, monkeypatch):
    seen: dict[int, list] = {}
    original = Dataset.batches

    def recording(self, which, order, batch_size, device="cpu", num_workers=0):
        if which == "train":
            seen.setdefault(len(seen), []).append(order.clone())
        return original(self, which, order, batch_size, device, num_workers)

    monkeypatch.setattr(Dataset, "batches", recording)
    runs = train(model="lenet", data="fake", opt="sgd,bort-s", seeds=[3], epochs=2, out=tmp_path, progress=False)
    sgd, bort = runs
    assert sgd["pair_id"] == bort["pair_id"] and sgd["run_id"] != bort["run_id"]
    cfg = [json.loads((Path(r["run_dir"]) / "config.json").read_text()) for r in runs]
    assert cfg[0]["init_sha256"] == cfg[1]["init_sha256"] and cfg[0]["seed"] == cfg[1]["seed"] == 3
    # two epochs per run, recorded in order: run 0 = calls 0, 1; run 1 = calls 2, 3
    assert torch.equal(seen[0][0], seen[2][0]) and torch.equal(seen[1][0], seen[3][0])
    assert not torch.equal(seen[0][0], seen[1][0])  # epochs differ
    # the twins did train differently
    a, b = (load_checkpoint(Path(r["run_dir"]) / "model.pt")["model"] for r in runs)
    assert not torch.equal(a["conv1.weight"], b["conv1.weight"])


def test_log_and_config(tiny_run):
    out, runs = tiny_run
    for r in runs:
        rows = list(csv.DictReader(open(Path(r["run_dir"]) / "train_log.csv")))
        assert [int(x["epoch"]) for x in rows] == [1, 2]
        assert set(rows[0]) == {"epoch", "loss", "train_acc", "heldout_acc", "ortho_error", "seconds"}
        assert all(0 <= float(x["heldout_acc"]) <= 1 and float(x["ortho_error"]) > 0 for x in rows)
        model, data, cfg = load_run(r["run_dir"])
        assert not model.training and cfg["run_id"] == r["run_id"] and cfg["epochs_done"] == 2


@pytest.mark.parametrize("amp", ["none", "fp16"])  # fp16: the grad scaler's loss scale must resume too
def test_resume_extends_a_run_bit_identically(tmp_path, amp):
    kw = dict(model="lenet", data="fake", opt="bort-s", seeds=[1], progress=False, amp=amp)
    full = train(epochs=3, out=tmp_path / "a", **kw)
    train(epochs=2, out=tmp_path / "b", **kw)
    resumed = train(epochs=3, out=tmp_path / "b", **kw)
    assert resumed[0]["resumed_from"] == 2 and resumed[0]["run_id"] == full[0]["run_id"]
    a = load_checkpoint(Path(full[0]["run_dir"]) / "model.pt")
    b = load_checkpoint(Path(resumed[0]["run_dir"]) / "model.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    assert a["scaler"] == b["scaler"] and bool(a["scaler"]) == (amp == "fp16")
    again = train(epochs=3, out=tmp_path / "b", **kw)
    assert again[0]["resumed_from"] == 3  # finished runs are skipped


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    args = ["--model", "lenet", "--data", "mnist10k", "--opt", "bort-s", "--seeds", "0", "--epochs", "3",
            "--batch-size", "64", "--quiet"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "xbench.cli", "train", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    ckpts = []
    while time.time() < deadline and not ckpts:
        ckpts = list(killed.glob("*/model.pt"))
        time.sleep(0.05)
    assert ckpts, "no checkpoint appeared"
    time.sleep(0.3)  # well inside epoch 2 (an epoch takes seconds)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(ckpts[0])["epoch"] < 3, "the run finished before it was killed"
    from xbench.cli import main

    assert main(["train", *args, "--out", str(killed)]) == 0
    assert main(["train", *args, "--out", str(tmp_path / "clean")]) == 0
    a = load_checkpoint(ckpts[0])
    b = load_checkpoint(next((tmp_path / "clean").glob("*/model.pt")))
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in a["log"]] == [r["loss"] for r in b["log"]]


def test_dbort_term_matches_its_formula_and_trains(tmp_path):
    logits = torch.randn(4, 10)
    assert torch.allclose(dbort_loss(logits, 0.001, 0.1), -0.001 * logits.pow(2).mean() ** 0.1)
    runs = train(model="lenet", data="fake", opt="bort-s", seeds=[0], epochs=1, out=tmp_path, progress=False,
                 dbort=[0.001, 0.1])
    assert json.loads((Path(runs[0]["run_dir"]) / "config.json").read_text())["dbort"] == [0.001, 0.1]


def test_identity_ignores_epochs_and_pair_ignores_optimizer():
    a = TrainConfig(opt="sgd", epochs=10)
    b = TrainConfig(opt="bort-s", epochs=40, bort_lambda=0.5)
    assert a.pair_id == b.pair_id and a.run_id != b.run_id
    assert TrainConfig(opt="sgd", epochs=1).run_id == a.run_id
    assert TrainConfig(opt="sgd", bort_lambda=0.3).run_id == a.run_id  # Bort settings do not touch a plain run
    assert TrainConfig(opt="sgd", lr=0.02).pair_id != a.pair_id


@pytest.mark.parametrize("kwargs,match", [
    (dict(model="lenett"), "did you mean lenet"),
    (dict(data="mnist10"), "unknown dataset"),
    (dict(opt="sgd,bort-x"), "unknown optimizer"),
    (dict(lr=-0.1), "lr"),
    (dict(epochs=0), "epochs"),
    (dict(bort_amplitude=-3), "amplitude"),
])
def test_user_errors_leave_nothing_behind(tmp_path, kwargs, match):
    out = tmp_path / "out"
    with pytest.raises(XbenchError, match=match):
        train(**{"out": out, "epochs": 1, **kwargs})
    assert not out.exists()


def test_a_diverging_run_stops_at_its_last_finite_epoch_and_its_twin_finishes(tmp_path, capsys):
    args = dict(model="lenet", data="fake", opt="sgd,bort-s", seeds=[0], epochs=3, out=tmp_path, progress=False,
                bort_lambda=1e4)  # a Bort step of λ·Δ this large blows the weights up; plain SGD ignores λ
    with pytest.raises(TrainingDiverged, match=r"1 run\(s\) diverged.*bort-s") as info:
        train(**args)
    sgd, bort = info.value.runs
    assert sgd["diverged_at"] is None and sgd["epochs"] == 3
    assert bort["diverged_at"] is not None and bort["epochs"] == bort["diverged_at"] - 1
    if bort["epochs"]:  # the kept checkpoint is the last finite epoch, never NaN weights
        state = load_checkpoint(Path(bort["run_dir"]) / "model.pt")
        assert state["epoch"] == bort["epochs"]
        assert all(torch.isfinite(v).all() for v in state["model"].values())
        with pytest.warns(UserWarning, match=f"has {bort['epochs']} of its 3 epochs"):
            load_run(bort["run_dir"])  # explain and evaluate say so too
    from xbench.cli import main

    cli_args = ["train", "--data", "fake", "--opt", "sgd,bort-s", "--epochs", "3", "--bort-lambda", "1e4",
                "--quiet", "--out", str(tmp_path)]
    assert main(cli_args) == 2
    captured = capsys.readouterr()
    assert f"diverged in epoch {bort['diverged_at']}" in captured.out  # the table is still printed
    assert captured.err.count("\n") == 1 and captured.err.startswith("xbench: error: 1 run(s) diverged")


def test_l1_penalty_is_part_of_the_run_and_zero_keeps_the_old_ids(tmp_path):
    plain = TrainConfig(model="mlp", opt="sgd")
    assert TrainConfig(model="mlp", opt="sgd", l1=0.0).run_id == plain.run_id
    a, b = TrainConfig(model="mlp", opt="sgd", l1=1e-5), TrainConfig(model="mlp", opt="bort-s", l1=1e-5)
    assert a.run_id != plain.run_id and a.pair_id != plain.pair_id and a.pair_id == b.pair_id and "l1_1e-05" in a.run_id
    # one full-batch SGD step from the same start: the l1 run moves every weight by a further −lr·λ·sign(w)
    lr, lam = 0.1, 0.01
    runs = train(model="mlp", data="fake", opt="sgd", l1=f"0,{lam}", seeds=[0], epochs=1, out=tmp_path,
                 progress=False, lr=lr, weight_decay=0.0, momentum=0.0, batch_size=512,
                 model_kwargs={"shape": "2x1000", "init_std": 0.1})
    assert [r["l1"] for r in runs] == [0.0, lam] and len({r["run_id"] for r in runs}) == 2
    plain_w, l1_w = (load_checkpoint(Path(r["run_dir"]) / "model.pt")["model"] for r in runs)
    torch.manual_seed(0)
    from xbench.models import create_model

    init = create_model("mlp", (1, 28, 28), 10, shape="2x1000", init_std=0.1).state_dict()
    assert abs(float(init["fc1.weight"].std()) - 0.1) < 0.005 and float(init["fc1.bias"].abs().max()) == 0
    for k in ("fc1.weight", "fc2.weight", "fc3.weight"):
        torch.testing.assert_close(l1_w[k] - plain_w[k], -lr * lam * init[k].sign(), atol=1e-6, rtol=0)
    torch.testing.assert_close(l1_w["fc1.bias"], plain_w["fc1.bias"], atol=1e-6, rtol=0)  # biases are not penalised
