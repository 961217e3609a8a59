"""The torchrun helper: world size 1 without torchrun, a real gloo group, and two ranks under torchrun."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xbench import dist
from xbench.errors import XbenchError

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE",
                "TORCHELASTIC_RESTART_COUNT")


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def group_of_one(monkeypatch):
    """torchrun's environment for a world of one process (rank 0 hosts the store)."""
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(port)).items():
        monkeypatch.setenv(name, value)
    yield
    dist.shutdown()


def test_without_torchrun_everything_is_one_process(no_torchrun):
    assert not dist.launched() and dist.init() == dist.World(0, 1, 0, "")
    assert (dist.rank(), dist.world_size(), dist.is_main()) == (0, 1, True)
    assert dist.deal(["a", "b", "c"]) == ["a", "b", "c"]
    assert dist.gather(3) == [3] and dist.all_gather(3) == [3] and dist.broadcast(4) == 4
    assert dist.all_reduce(torch.ones(2)).tolist() == [1.0, 1.0]
    assert dist.on_main(lambda: 5) == 5 and dist.main_first(lambda: 6) == 6
    def bad():
        raise XbenchError("bad")

    with pytest.raises(XbenchError) as info:
        dist.agree(bad)
    assert type(info.value) is XbenchError and dist.should_print(info.value)
    assert not dist.should_print(dist.PeerError("someone else's"))
    with dist.command():  # nothing to set up without torchrun
        pass


def test_a_real_gloo_group_of_one(group_of_one):
    w = dist.init("auto" if not torch.cuda.is_available() else "gloo")
    assert w == dist.World(0, 1, 0, "gloo") and dist.world() == w
    assert dist.all_reduce(torch.tensor([2.0]), "max").item() == 2.0
    assert dist.all_gather({"a": 1}) == [{"a": 1}] and dist.gather("x") == ["x"]
    assert dist.init() == w  # joining twice is a no-op
    dist.barrier()
    dist.shutdown()
    assert dist.world() == dist.World()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_nccl_without_cuda_is_one_user_error(group_of_one):
    with pytest.raises(XbenchError, match="nccl needs CUDA") as info:
        dist.init("nccl")
    assert "\n" not in str(info.value) and dist.world().size == 1
    with pytest.raises(XbenchError, match="one of auto, gloo, nccl"):
        dist.init("mpi")


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node 2 ...`` (what torchrun runs), never left hanging."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    for name in TORCHRUN_ENV:
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_two_ranks_collectives_and_a_user_error_on_one_rank(tmp_path):
    """Collectives agree; rank 1's mistake ends both ranks with exit code 2 and one printed line; the restart
    that --max-restarts 1 allows finds the recorded mistake and ends at once; torchrun itself returns 1."""
    train = ["--data", "fake", "--epochs", "1000", "--quiet", "--out", str(tmp_path / "runs")]
    proc = torchrun("--max-restarts", "1", str(Path(__file__).with_name("dist_worker.py")), str(tmp_path), *train)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "xbench: error:" in line]
    from xbench.registry import FAMILIES

    choices = ", ".join(repr(f) for f in FAMILIES)  # every family `xbench list` knows
    assert errors == [f"xbench: error: argument family: invalid choice: 'widgets' (choose from {choices}) "
                      f"(see `xbench list --help`)"]
    for attempt in (0, 1):  # rank 0 was stopped mid-training by SIGTERM in attempt 0, at the start in attempt 1
        assert [(tmp_path / f"exit-rank{r}-attempt{attempt}").read_text() for r in (0, 1)] == ["2", "2"]
    # torchrun's own table of the last attempt: it lists rank 1's exit code 2; whether rank 0's exit is listed too
    # depends on whether torchrun saw it exit before it sent its own SIGTERM (a race; the files above are exact)
    assert proc.stderr.count("exitcode  : 2") >= 1
    seen = [json.loads((tmp_path / f"rank{r}-attempt0.json").read_text()) for r in (0, 1)]
    assert [s["world"] for s in seen] == [[0, 2, 0, "gloo"], [1, 2, 1, "gloo"]]
    assert [s["deal"] for s in seen] == [[0, 2, 4, 6], [1, 3, 5]]
    assert seen[0]["gather"] == [0, 10] and seen[1]["gather"] is None
    assert all(s["all_gather"] == ["r0", "r1"] and s["broadcast"] == "from0" and s["on_main"] == 0 for s in seen)
    assert (tmp_path / "written-by").read_text() == "0"
    assert [s["agree"] for s in seen] == [["PeerError", "only rank 1 is wrong"],
                                          ["XbenchError", "only rank 1 is wrong"]]
