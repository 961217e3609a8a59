"""XRAI's image segmentations (PAIR's Felzenszwalb set), computed in joblib worker processes and cached per image.

    segs = segments_many([pixels_hwc, ...], workers=0)     # one list of boolean masks per image

Segments depend on the image alone (pixel space), never on the model, so one cache serves every model and run:
in memory (an LRU of ``MEMORY_MAX`` images) and on disk (``$XBENCH_CACHE/xrai-segments/<sha1 of the image>.npz``,
default ``~/.cache/xbench``; masks bit-packed; ``XBENCH_CACHE=off`` disables it), so a second ``evaluate`` or
``explain`` process finds them too. Misses are computed in parallel worker processes (joblib's loky backend,
``workers`` of them; 0 = one per CPU core) when there are several and the images are large enough to pay for the
workers' start; otherwise in this process.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from saliency.core import xrai as pair_xrai

from ..fileio import atomic_write

MEMORY_MAX = 4096
PARALLEL_MIN_PIXELS = 64 * 64  # smaller images segment in milliseconds: workers would cost more than they save
_MEMORY: "OrderedDict[str, list]" = OrderedDict()


def image_key(pixels_hwc: np.ndarray) -> str:
    return hashlib.sha1(pixels_hwc.tobytes() + str((pixels_hwc.shape, pixels_hwc.dtype.str)).encode()).hexdigest()


def cache_dir() -> Path | None:
    root = os.environ.get("XBENCH_CACHE", str(Path.home() / ".cache" / "xbench"))
    return None if root.lower() in ("off", "0", "") else Path(root) / "xrai-segments"


def _read(key: str) -> list | None:
    folder = cache_dir()
    path = folder / f"{key}.npz" if folder else None
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as f:
            masks = np.unpackbits(f["bits"], axis=1, count=int(np.prod(f["shape"]))).astype(bool)
            return list(masks.reshape(-1, *f["shape"]))
    except Exception:  # a torn or foreign file is recomputed, never trusted
        return None


def _write(key: str, segs: list) -> None:
    folder = cache_dir()
    if folder is None or not segs:
        return
    masks = np.stack(segs).astype(bool)
    bits = np.packbits(masks.reshape(len(masks), -1), axis=1)
    try:
        atomic_write(folder / f"{key}.npz", lambda f: np.savez(f, bits=bits, shape=np.array(masks.shape[1:])))
    except OSError:  # a read-only home: the memory cache still serves this process
        pass


def _remember(key: str, segs: list) -> list:
    _MEMORY[key] = segs
    _MEMORY.move_to_end(key)
    if len(_MEMORY) > MEMORY_MAX:
        _MEMORY.popitem(last=False)
    return segs


def segments_many(images: list[np.ndarray], workers: int = 0) -> list[list]:
    """PAIR's XRAI segments of each pixel-space image [H,W,C], from the caches or computed (in parallel)."""
    keys = [image_key(im) for im in images]
    found: dict[str, list] = {}
    for k in dict.fromkeys(keys):
        segs = _MEMORY.get(k)
        if segs is None:
            segs = _read(k)
        if segs is not None:
            found[k] = _remember(k, segs)
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    todo = [images[keys.index(k)] for k in missing]
    n_jobs = min(len(todo), workers if workers > 0 else (os.cpu_count() or 1))
    if n_jobs > 1 and todo[0].shape[0] * todo[0].shape[1] >= PARALLEL_MIN_PIXELS:
        from joblib import Parallel, delayed

        computed = Parallel(n_jobs=n_jobs, backend="loky")(delayed(pair_xrai._get_segments_felzenszwalb)(im)
                                                            for im in todo)
    else:
        computed = [pair_xrai._get_segments_felzenszwalb(im) for im in todo]
    for k, segs in zip(missing, computed):
        found[k] = _remember(k, segs)
        _write(k, segs)
    return [found[k] for k in keys]


def segments_for(pixels_hwc: np.ndarray) -> list:
    """One image's segments (cached)."""
    return segments_many([pixels_hwc], workers=1)[0]
