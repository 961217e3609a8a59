"""Run by tests/test_dist.py under ``python -m torch.distributed.run --nproc_per_node 2`` (gloo, CPU).

    dist_worker.py OUT_DIR [TRAIN_ARGS...]

Command 1 exercises every collective helper and writes what this rank saw to OUT_DIR/rank<r>-attempt<a>.json.
Command 2 is a user error on rank 1 alone (an unknown family for ``xbench list``) while rank 0 runs the real
``xbench train`` with TRAIN_ARGS; each rank writes the CLI's exit code to OUT_DIR/exit-rank<r>-attempt<a> and exits
with it.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from xbench import dist
from xbench.cli import main
from xbench.errors import XbenchError


def collectives(out: Path) -> None:
    w = dist.init("gloo")
    seen = {"world": [w.rank, w.size, w.local_rank, w.backend], "deal": dist.deal(list(range(7))),
            "gather": dist.gather(w.rank * 10), "all_gather": dist.all_gather(f"r{w.rank}"),
            "broadcast": dist.broadcast(f"from{w.rank}")}

    def write():
        (out / "written-by").write_text(str(dist.rank()))
        return dist.rank()

    seen["on_main"] = dist.on_main(write)

    def fails_on_rank_1():
        if dist.rank() == 1:
            raise XbenchError("only rank 1 is wrong")
        return "fine"

    try:
        dist.agree(fails_on_rank_1)
    except XbenchError as err:
        seen["agree"] = [type(err).__name__, str(err)]
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    (out / f"rank{w.rank}-attempt{attempt}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    dist.init("gloo")  # the group stays up across the commands (train places its runs on it)
    with dist.command():
        collectives(out)
    if os.environ["RANK"] == "1":
        code = main(["list", "widgets"])
    else:
        code = main(["train", *sys.argv[2:]])  # stopped by torchrun's SIGTERM once rank 1 has failed
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    (out / f"exit-rank{os.environ['RANK']}-attempt{attempt}").write_text(str(code))
    sys.exit(code)
