"""torchrun in one place: rank and world size, dealing work, gathering to rank 0, rank-0-only writes, and ending
a job together when a user makes a mistake.

    torchrun --nproc_per_node 4 -m xbench train ...        # every stage runs unchanged without torchrun

Every process reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Without
torchrun the same calls see one process (rank 0, world size 1) and do nothing collective, so pipeline code never
branches on "am I distributed".

How a user error ends a job (torchrun's rules, checked on torch 2.14): torchrun's agent watches its workers; when
one exits non-zero it sends SIGTERM to the others (SIGKILL 30 s later), restarts the whole group while
``--max-restarts`` allows, and then exits with code **1** (its ``ChildFailedError``) after printing a table with
each rank's own exit code. So, inside :func:`command`:

- setup errors are agreed on before anything is written (:func:`agree`): every rank raises, only the lowest failing
  rank's message is printed;
- a rank that raises :class:`~xbench.errors.XbenchError` later records it in torchrun's agent store and exits 2;
  the first rank to record prints the one line (:func:`should_print`);
- the other ranks, stopped by torchrun's SIGTERM or by a collective that failed when their peer left, find the
  record and exit 2 without printing (:class:`PeerError`);
- a restarted attempt that finds the record exits 2 at once: the mistake is in the command, so ``--max-restarts``
  neither repeats the work nor the line.

torchrun's table then shows exit code 2 for every rank, and torchrun itself returns 1. A rank blocked inside a
CUDA/NCCL collective cannot run Python's signal handler; torchrun kills it after 30 s (exit -9), so no rank hangs.
"""
from __future__ import annotations

import datetime
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

from .errors import XbenchError

T = TypeVar("T")
BACKENDS = ("auto", "gloo", "nccl")
_STORE_TIMEOUT = datetime.timedelta(seconds=10)


class PeerError(XbenchError):
    """Another rank made the user error; this rank ends with exit code 2 and prints nothing."""


class Terminated(BaseException):
    """torchrun (or Slurm) sent SIGTERM; a BaseException so that ``except Exception`` does not swallow it."""


@dataclass(frozen=True)
class World:
    """Where this process stands: rank, world size, rank on this node, collective backend ('' = none)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True inside a process started by torchrun (or any launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _tdist():
    """torch.distributed, imported on first use: the CLI imports this module for every command, `report` included,
    and those must not pay for (or need) torch."""
    import torch.distributed

    return torch.distributed


def _active() -> bool:
    if "torch.distributed" not in sys.modules:  # never imported, so no process group can be up
        return False
    tdist = _tdist()
    return tdist.is_available() and tdist.is_initialized()


def world() -> World:
    """This process's place: torchrun's when a process group is up, else rank 0 of 1."""
    if not _active():
        return World()
    tdist = _tdist()
    return World(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                 str(tdist.get_backend()))


def rank() -> int:
    return world().rank


def world_size() -> int:
    return world().size


def local_rank() -> int:
    return world().local_rank


def is_main() -> bool:
    return world().is_main


def init(backend: str = "auto") -> World:
    """Join torchrun's process group (gloo on CPU, nccl on CUDA for ``auto``); a no-op without torchrun or when
    a group is already up. Asking for nccl without CUDA is one XbenchError line on every rank."""
    if backend not in BACKENDS:
        raise XbenchError(f"--dist-backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if not launched() or _active():
        return world()
    import torch

    tdist = _tdist()
    cuda = torch.cuda.is_available()
    if backend == "nccl" and not cuda:
        raise XbenchError("--dist-backend nccl needs CUDA GPUs and this machine has none; use gloo (or auto)")
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    if cuda and int(os.environ.get("LOCAL_RANK", 0)) < torch.cuda.device_count():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # "cuda" then means this rank's own GPU
    # torchrun's agent keeps one store for all restarts, so a restarted group could read the last attempt's gloo
    # and NCCL addresses and connect to dead ports (pytorch/pytorch#135712); each attempt gets its own key space.
    store, rank_, size = next(tdist.rendezvous("env://"))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    tdist.init_process_group(backend=backend, store=tdist.PrefixStore(f"xbench/attempt{attempt}/", store),
                             rank=rank_, world_size=size)
    return world()


def shutdown() -> None:
    """Leave the process group (every rank, at the end of a command)."""
    if _active():
        _tdist().destroy_process_group()


def deal(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th one from its rank on (all of them at world size 1)."""
    w = world()
    return list(items)[w.rank::w.size]


def barrier() -> None:
    if _active():
        _tdist().barrier()


def all_gather(obj: Any) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not _active():
        return [obj]
    tdist = _tdist()
    out: list = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def gather(obj: Any) -> list | None:
    """Every rank's ``obj`` in rank order on rank 0; None on the other ranks."""
    if not _active():
        return [obj]
    tdist = _tdist()
    out = [None] * tdist.get_world_size() if is_main() else None
    tdist.gather_object(obj, out, dst=0)
    return out


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    _tdist().broadcast_object_list(box, src=src)
    return box[0]


def all_reduce(tensor: "torch.Tensor", op: str = "sum") -> "torch.Tensor":
    """Reduce ``tensor`` in place across ranks (``sum``, ``min`` or ``max``) and return it."""
    if _active():
        tdist = _tdist()
        tdist.all_reduce(tensor, op={"sum": tdist.ReduceOp.SUM, "min": tdist.ReduceOp.MIN,
                                     "max": tdist.ReduceOp.MAX}[op])
    return tensor


def agree(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on every rank; if it raised an XbenchError on any rank, raise on every rank.

    The lowest failing rank re-raises its own error (it prints the line); the others raise :class:`PeerError`
    with the same message (they print nothing). Call it before writing anything, so a job that fails on one
    rank leaves nothing half-written on any rank.
    """
    own: XbenchError | None = None
    result = None
    try:
        result = fn(*args, **kwargs)
    except XbenchError as err:
        own = err
    messages = all_gather(None if own is None else str(own))
    failed = [i for i, m in enumerate(messages) if m is not None]
    if failed:
        if own is not None and failed[0] == rank():
            raise own
        raise PeerError(messages[failed[0]])
    return result  # type: ignore[return-value]


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Rank 0 alone runs ``fn`` (writes, downloads); every rank returns its result or raises its XbenchError."""
    if not _active():
        return fn(*args, **kwargs)
    result, own = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except XbenchError as err:
            own = err
    result, message = broadcast((result, None if own is None else str(own)))
    if own is not None:
        raise own
    if message is not None:
        raise PeerError(message)
    return result  # type: ignore[return-value]


def main_first(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Rank 0 runs ``fn`` first (a download or an extraction that must not race), then every other rank does."""
    if world().size == 1:
        return fn(*args, **kwargs)
    first = on_main(fn, *args, **kwargs)
    return agree(lambda: first if is_main() else fn(*args, **kwargs))


# --- ending a job together -------------------------------------------------------------------------------------

_commands = 0  # commands run by this process; identical on every rank, so store keys match across ranks
_store_client: Any = None


def _store():
    """A client of torchrun's agent store (it outlives every worker and every restart), or None."""
    global _store_client
    if _store_client is None and launched() and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        try:
            _store_client = _tdist().TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                              is_master=False, timeout=_STORE_TIMEOUT, wait_for_workers=False)
        except (RuntimeError, ValueError, KeyError):
            _store_client = False
    return _store_client or None


def _key(name: str) -> str:
    return f"xbench/command{_commands}/{name}"


def _recorded_error() -> str | None:
    store = _store()
    if store is None:
        return None
    try:
        return store.get(_key("error")).decode() if store.check([_key("error")]) else None
    except RuntimeError:
        return None


def _record_error(message: str) -> None:
    store = _store()
    if store is not None:
        try:
            store.set(_key("error"), message)
        except RuntimeError:
            pass


def should_print(err: XbenchError) -> bool:
    """Whether this rank prints ``err``: never for a peer's error; otherwise only the first rank to claim it."""
    if isinstance(err, PeerError):
        return False
    store = _store()
    if store is None:
        return True
    try:
        return store.add(_key("printed"), 1) == 1
    except RuntimeError:
        return True


def _raise_terminated(signum, frame):
    raise Terminated()


@contextmanager
def command() -> Iterator[None]:
    """Run one command so that a user error on any rank ends every rank with exit code 2 and one printed line.

    Use it around a whole command (the CLI does); catch XbenchError outside it, print when
    :func:`should_print`, and return 2. Without torchrun it does nothing.
    """
    global _commands
    if not launched():
        yield
        return
    _commands += 1
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        earlier = _recorded_error()
        if earlier is not None:  # the last attempt ended on a user error: this one would too
            raise PeerError(earlier)
    was_up = _active()
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        yield
    except BaseException as err:
        if main_thread:  # ending anyway: a second SIGTERM must not turn exit code 2 into a kill
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if isinstance(err, PeerError) or not isinstance(err, (Exception, Terminated)):
            raise
        if isinstance(err, XbenchError):
            _record_error(str(err))
            raise
        message = _recorded_error()  # killed, or a collective failed because a peer left: was it a user error?
        if message is not None:
            raise PeerError(message) from err
        if isinstance(err, Terminated):  # a real stop (a peer crashed, Slurm's time limit): die as asked
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        raise
    if main_thread:
        signal.signal(signal.SIGTERM, previous)
    if not was_up:  # this command joined the group: leave it, so the next command starts as this one did
        shutdown()
