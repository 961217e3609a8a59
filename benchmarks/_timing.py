"""Wall-clock timing that waits for the GPU (shared by the benchmark scripts)."""
from __future__ import annotations

import time

import torch


def timed(fn, device: torch.device):
    """(seconds, result) of ``fn()``, synchronising CUDA before and after so queued kernels are counted."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, out
