"""Training under torchrun (2 gloo ranks on CPU, started as torchrun starts them): run-parallel equals serial bit for
bit; data-parallel equals one process at the same global batch (tolerance below), with identical weights on every
rank, resuming under another world size; bad input is one line and exit 2 on every rank; a killed rank restarts."""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from xbench.errors import XbenchError
from xbench.train import train
from xbench.train_dist import check_world, placement

from test_dist import torchrun

WORKER = str(Path(__file__).with_name("dist_train_worker.py"))
ARGS = ["--model", "lenet", "--data", "fake", "--seeds", "0", "--epochs", "3", "--batch-size", "128", "--lr", "0.05",
        "--momentum", "0.9", "--quiet"]
SETTINGS = dict(model="lenet", data="fake", seeds=[0], batch_size=128, lr=0.05, momentum=0.9, progress=False)
TOLERANCE = 1e-5  # data-parallel vs one process: the same sums in another order (float32), 12 momentum steps


@contextmanager
def one_thread():
    """torchrun runs each worker with OMP_NUM_THREADS=1; the serial reference does the same sums the same way."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "model.pt", weights_only=True)


def _records(folder: Path, attempt: int = 0) -> list[dict]:
    return [json.loads((folder / f"rank{r}-attempt{attempt}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """Both placements under torchrun, and the serial reference, trained once for the tests below."""
    out = tmp_path_factory.mktemp("placed")
    proc = torchrun(WORKER, str(out), "place", *ARGS, "--opt", "sgd,bort-s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with one_thread():
        serial = train(opt="sgd,bort-s", epochs=3, out=out / "serial", **SETTINGS)
    return out, serial, proc


def test_run_parallel_output_is_bit_identical_to_a_serial_run(placed):
    out, serial, proc = placed
    records = _records(out)
    assert [r["0"]["exit"] for r in records] == [0, 0]
    assert len(records[0]["0"]["digests"]) == len(records[1]["0"]["digests"]) == 3  # one run per rank, 3 epochs
    for run in serial:
        a, b = _weights(out / "runs" / run["run_id"]), _weights(Path(run["run_dir"]))
        assert a["epoch"] == b["epoch"] == 3 and a["log"][-1]["loss"] == b["log"][-1]["loss"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert (out / "runs" / run["run_id"] / "train_log.csv").exists()
    assert proc.stdout.count("held-out accuracy") == 3  # sgd and bort-s, then bort-s: printed by rank 0 alone


def test_data_parallel_equals_one_process_and_ranks_agree(placed):
    out, serial, _ = placed
    records = _records(out)
    assert records[0]["1"]["digests"] == records[1]["1"]["digests"]  # identical weights on every rank, every epoch
    bort = serial[1]
    dp = _weights(out / "data" / bort["run_id"])  # the same run id: placement is not part of a run
    one = _weights(Path(bort["run_dir"]))
    diff = max((dp["model"][k] - one["model"][k]).abs().max().item() for k in one["model"])
    assert 0 <= diff < TOLERANCE, diff
    assert dp["log"][-1]["heldout_acc"] == pytest.approx(one["log"][-1]["heldout_acc"], abs=0.01)
    assert sorted(p.name for p in (out / "data" / bort["run_id"]).iterdir()) == [
        "config.json", "model.pt", "train_log.csv"]  # rank 0 alone wrote, atomically (no temp files left)


def test_a_data_parallel_run_resumes_in_one_process(placed):
    out, _, _ = placed
    shutil.copytree(out / "data", out / "resumed")  # the other tests keep the 3-epoch run
    with one_thread():
        resumed = train(opt="bort-s", epochs=4, out=out / "resumed", **SETTINGS)
        fresh = train(opt="bort-s", epochs=4, out=out / "fresh", **SETTINGS)
    assert resumed[0]["resumed_from"] == 3
    a, b = _weights(Path(resumed[0]["run_dir"])), _weights(Path(fresh[0]["run_dir"]))
    assert max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"]) < TOLERANCE


def test_bad_input_ends_every_rank_with_one_line_and_exit_2(tmp_path):
    runs = tmp_path / "runs"
    proc = torchrun(WORKER, str(tmp_path), "once", *ARGS, "--opt", "bort-s", "--parallel", "data",
                    "--batch-size", "127", "--out", str(runs), timeout=180)
    assert proc.returncode == 1, proc.stderr[-3000:]  # torchrun's own code when a worker failed
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "xbench: error:" in line]
    assert errors == ["xbench: error: --parallel data: --batch-size 127 (the global batch) is not divisible by the "
                      "world size 2"]
    assert [r["0"]["exit"] for r in _records(tmp_path)] == [2, 2] and not runs.exists()


def test_placement_rules_and_world_errors():
    assert placement("auto", 6, 4) == "runs" and placement("auto", 1, 2) == "data" and placement("data", 9, 1) == "serial"
    check_world("runs", 7, 1, 8)  # whole runs: any batch, any data size
    with pytest.raises(XbenchError, match="world size 4 is larger than the 3 training images"):
        check_world("data", 8, 3, 4)
    with pytest.raises(XbenchError, match="not divisible by the world size 4"):
        check_world("data", 6, 100, 4)
    check_world("runs", 8, 100, 4, "adv-l1")  # whole runs train any method
    with pytest.raises(XbenchError, match="erm.*not --method adv-l1; use --parallel runs"):
        check_world("data", 8, 100, 4, "adv-l1")


@pytest.mark.slow
def test_a_rank_killed_mid_run_restarts_and_ends_equal_to_an_uninterrupted_run(tmp_path, placed):
    out, serial, _ = placed
    proc = torchrun("--max-restarts", "1", WORKER, str(tmp_path), "kill", *ARGS, "--opt", "bort-s",
                    "--parallel", "data", "--out", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "rank1-attempt0.json").exists()  # rank 1 died in attempt 0
    again = _records(tmp_path, attempt=1)
    assert [r["0"]["exit"] for r in again] == [0, 0] and len(again[0]["0"]["digests"]) == 1  # epoch 3 again
    a = _weights(tmp_path / "runs" / serial[1]["run_id"])
    b = _weights(out / "data" / serial[1]["run_id"])
    assert a["epoch"] == b["epoch"] == 3
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
