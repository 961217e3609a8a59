"""Sharded explain/evaluate: two gloo ranks under torchrun equal one process; two writers on one --out."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_dist import TORCHRUN_ENV, torchrun
from xbench.evaluate import evaluate
from xbench.importer import import_model
from xbench.models import create_model

# torchrun's own parser claims `--n` (a prefix of its --nnodes, --nproc-per-node...): --n-examples is the alias
ARGS = ["--interp", "cam,sat", "--metric", "deletion,recon_ratio", "--n-examples", "10", "--batch-size", "3", "--device",
        "cpu", "--quiet"]
VOLATILE = {"created_at", "seconds", "interp_seconds_per_image", "maps_file", "device"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shard")
    torch.manual_seed(0)
    torch.save(create_model("lenet").state_dict(), tmp / "w.pt")
    r = import_model("lenet", str(tmp / "w.pt"), "mnist10k", out=tmp / "ckpt", device="cpu")
    return Path(r["run_dir"])


def _copy(run, dest):
    shutil.copytree(run, dest / run.name)
    return dest / run.name


def _records(out):
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in rows),
                  key=lambda r: (r["interpreter"], r["metric"], r["layer"]))


def test_two_ranks_equal_one_process_field_by_field(run, tmp_path):
    one = _copy(run, tmp_path / "a")
    assert evaluate(one, interps="cam,sat", metrics="deletion,recon_ratio", n=10, batch_size=3,
                    out=tmp_path / "one", device="cpu", progress=False).startswith("7 record(s)")
    two = _copy(run, tmp_path / "b")
    proc = torchrun("-m", "xbench", "evaluate", "--runs", str(two), *ARGS, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("record(s) written") == 1  # rank 0 speaks for the job
    assert _records(tmp_path / "one") == _records(tmp_path / "two")
    for name in ("cam", "sat"):  # maps caches written once, equal to one process's
        (a,), (b,) = (list((r / "maps").glob(f"{name}-*.pt")) for r in (one, two))
        ma, mb = (torch.load(p, weights_only=True) for p in (a, b))
        assert torch.equal(ma["maps"], mb["maps"]) and torch.equal(ma["indices"], mb["indices"])
    for side in (tmp_path / "one" / "scores").rglob("*.npz"):
        other = np.load(tmp_path / "two" / side.relative_to(tmp_path / "one"))
        for k, v in np.load(side).items():
            assert np.array_equal(v, other[k], equal_nan=v.dtype.kind == "f"), k
    # rank 1 killed once the first job's records are written; the same command again completes the rest
    three = _copy(run, tmp_path / "c")
    killed = _torchrun_killed_midway(["-m", "xbench", "evaluate", "--runs", str(three), *ARGS, "--out",
                                      str(tmp_path / "three")], tmp_path / "three" / "results.jsonl")
    again = torchrun("-m", "xbench", "evaluate", "--runs", str(three), *ARGS, "--out", str(tmp_path / "three"))
    assert again.returncode == 0, again.stderr[-2000:]
    if killed:  # (on a fast machine the job may finish before the kill: then the re-run only skips)
        assert "job(s) already done" in again.stdout and not again.stdout.startswith("0 record(s)")
    assert _records(tmp_path / "one") == _records(tmp_path / "three")  # nothing lost, nothing twice


def _torchrun_killed_midway(args, results) -> bool:
    """Start torchrun with 2 ranks, SIGKILL rank 1 as soon as ``results`` exists; True if it was still running."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    for name in TORCHRUN_ENV:
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not results.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = False
    for pid in (p.name for p in Path("/proc").iterdir() if p.name.isdigit()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == proc.pid and b"RANK=1" in environ:
            os.kill(int(pid), signal.SIGKILL)
            killed = True
    proc.wait(timeout=240)
    return killed and proc.returncode != 0


def test_two_evaluate_processes_on_one_out_lose_and_duplicate_nothing(run, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    for name in TORCHRUN_ENV:
        env.pop(name, None)
    procs = []
    for i in range(2):  # each its own copy of the run (maps caches apart), both appending to one results file
        r = _copy(run, tmp_path / f"r{i}")
        procs.append(subprocess.Popen([sys.executable, "-m", "xbench", "evaluate", "--runs", str(r), *ARGS,
                                       "--out", str(tmp_path / "out")], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    keys = [(r["interpreter"], r["metric"], r["layer"]) for r in rows]
    assert len(keys) == len(set(keys)) == 7  # cam/sat × deletion, and recon_ratio's 5 layers, once each
