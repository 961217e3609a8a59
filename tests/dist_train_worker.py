"""Run by tests/test_train_dist.py under ``python -m torch.distributed.run --nproc_per_node 2`` (gloo, CPU).

    dist_train_worker.py OUT_DIR MODE TRAIN_ARGS...

MODE ``place``: ``xbench train TRAIN_ARGS --parallel runs --out OUT/runs``, then ``--parallel data --opt bort-s --out
OUT/data``. MODE ``once``: ``xbench train TRAIN_ARGS``. MODE ``kill``: as ``once``, but rank 1 of the first attempt
SIGKILLs itself at its 10th optimizer step (mid-epoch 3 with 4 steps an epoch). Every rank records a digest of its weights at the end of
every epoch and writes {command: {"exit": code, "digests": [...]}} to OUT/rank<r>-attempt<a>.json.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import xbench.train as T
import xbench.train_dist as TD
from xbench import dist
from xbench.cli import main

out, mode, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
rank, attempt = os.environ["RANK"], os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
seen: list[str] = []
steps = [0]
original, original_step = T.mean_orthogonality_error, TD.Engine.step


def watching(model):  # every rank calls it at the end of every epoch, before rank 0 saves
    seen.append(T._state_digest(model))
    return original(model)


def stepping(self, *args, **kwargs):
    steps[0] += 1
    if mode == "kill" and rank == "1" and attempt == "0" and steps[0] == 10:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-epoch: epoch 2 is saved, epoch 3 half done
    return original_step(self, *args, **kwargs)


T.mean_orthogonality_error = watching
TD.Engine.step = stepping
dist.init("gloo")
commands = {"once": [args], "kill": [args],
            "place": [[*args, "--parallel", "runs", "--out", str(out / "runs")],
                      [*args, "--parallel", "data", "--opt", "bort-s", "--out", str(out / "data")]]}[mode]
record, code = {}, 0
for i, command in enumerate(commands):
    seen.clear()
    code = main(["train", *command])
    record[str(i)] = {"exit": code, "digests": list(seen)}
    if code:
        break
(out / f"rank{rank}-attempt{attempt}.json").write_text(json.dumps(record))
sys.exit(code)
