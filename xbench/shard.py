"""explain and evaluate across torchrun's ranks, and several writers on one results file.

    torchrun --nproc_per_node 8 -m xbench evaluate --runs 'checkpoints/*' --interp all --metric deletion --n 5000

Under torchrun the held-out examples of every job are cut into the same batches a single process would use
(``--batch-size``), and the batches are dealt across ranks (``dist.deal``); each rank computes its batches, every
rank receives all of them in batch order (``dist.all_gather``), and rank 0 alone writes maps caches, side files
and records. Since each batch holds the same images as in a single process, maps and scores equal a
single-process run's. Jobs already in the results file are read once by rank 0 and broadcast, so every rank skips
the same ones.

Several writers on one ``--out`` (two evaluate commands, or two torchrun jobs) share ``results.jsonl`` through a
lock file (``results.jsonl.lock``, the ``filelock`` package): under the lock a writer re-reads the file and appends
a job's records only if no other writer has; so nothing is duplicated, and since every append is a whole-file
atomic rewrite made under the lock, nothing is lost. (Per-writer files merged on read would have needed every
reader — report, the skip check — to merge; one lock keeps the file format as it is.)
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from . import dist
from .fileio import append_jsonl, read_jsonl

T = TypeVar("T")


def batches(n: int, batch_size: int) -> list[slice]:
    return [slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def over_ranks(n: int, batch_size: int, fn: Callable[[slice], T]) -> list[T]:
    """``fn`` of every batch of ``range(n)``, in batch order, on every rank; each rank computes its dealt share."""
    order = batches(n, batch_size)
    mine = {i: fn(order[i]) for i in dist.deal(range(len(order)))}
    if dist.world_size() == 1:
        return [mine[i] for i in range(len(order))]
    merged: dict[int, T] = {}
    for part in dist.all_gather(mine):
        merged.update(part)
    return [merged[i] for i in range(len(order))]


def from_main(fn: Callable[[], T]) -> T:
    """Rank 0's ``fn()`` on every rank (a file read once, so every rank decides alike)."""
    return dist.broadcast(fn() if dist.is_main() else None)


@contextmanager
def locked(results: Path) -> Iterator[None]:
    from filelock import FileLock

    results.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(results) + ".lock"):
        yield


def append_once(results: Path, key: tuple, records: Iterable[dict], key_of: Callable[[dict], Any],
                force: bool = False) -> bool:
    """Append ``records`` unless a record of job ``key`` is already there (another writer's; ``force`` appends
    anyway, as ``evaluate --force`` asks); under the lock."""
    with locked(results):
        if not force and any(key_of(r) == key for r in read_jsonl(results)):
            return False
        append_jsonl(results, records)
        return True
