"""XRAI segments: worker processes give PAIR's own segmentation; the disk cache serves another process's images."""
from __future__ import annotations

import numpy as np
import pytest
from saliency.core import xrai as pair_xrai

from xbench.interpreters import segments


def test_parallel_segments_equal_pair_and_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("XBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(segments, "_MEMORY", type(segments._MEMORY)())
    rng = np.random.default_rng(0)
    images = [rng.random((72, 72, 3)).astype(np.float32) for _ in range(3)]
    images[2][:36] = 0.2  # a flat half: fewer, larger segments
    got = segments.segments_many([images[0], images[1], images[2], images[0]], workers=2)
    for im, segs in zip(images + [images[0]], got):
        ref = pair_xrai._get_segments_felzenszwalb(im)
        assert len(segs) == len(ref) and all(np.array_equal(a, b) for a, b in zip(segs, ref))
    assert len(list((tmp_path / "xrai-segments").glob("*.npz"))) == 3  # the repeated image once
    monkeypatch.setattr(segments, "_MEMORY", type(segments._MEMORY)())  # a fresh process: memory is empty
    monkeypatch.setattr(pair_xrai, "_get_segments_felzenszwalb", lambda im: pytest.fail("recomputed"))
    again = segments.segments_many(images, workers=2)
    assert all(np.array_equal(a, b) for s, t in zip(again, got) for a, b in zip(s, t))
    monkeypatch.setenv("XBENCH_CACHE", "off")
    assert segments.cache_dir() is None
