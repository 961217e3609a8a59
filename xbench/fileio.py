"""Atomic file writes (temp file in the same folder, fsync, rename) and JSON-lines records; no torch needed."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import XbenchError


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it into place.

    A reader never sees a half-written file; a killed writer leaves only a ``.tmp`` file that the next write
    replaces. The file gets the permissions a plain ``open`` would give it (mkstemp's are owner-only), so reports
    and checkpoints stay readable by the group as the user's umask intends.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it and put it back
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a JSON-lines file; a missing file has none."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Append records by rewriting the file atomically, so a killed run never leaves a torn line."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    new = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    atomic_write_text(path, old + new)


def check_writable(folder: str | Path) -> None:
    """Raise XbenchError (before anything is written) when ``folder`` cannot be created or written.

    Probes by creating (and removing) a temporary folder in the nearest existing ancestor, since permission bits
    lie on special file systems and for root.
    """
    p = Path(folder).absolute()
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise XbenchError(f"output folder {str(folder)!r} is not a folder")
    try:
        tempfile.TemporaryDirectory(dir=probe).cleanup()
    except OSError:
        raise XbenchError(f"output folder {str(folder)!r} is not writable") from None
