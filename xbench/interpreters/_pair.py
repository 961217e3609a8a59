"""Adapter between PAIR ``saliency.core`` (one unbatched channels-last numpy image per call) and a torch model.

PAIR calls ``call_model_function(x_batch_hwc, call_model_args, expected_keys)`` with float64 or float32 numpy
batches [N,H,W,C] and wants CPU numpy back. The batch is moved to the model's device as float32 NCHW, the leaf
being the model-input-space tensor itself (PAIR's own PyTorch example takes gradients in normalised space but
multiplies by differences in raw pixel space, breaking completeness; here both live in input space).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

import saliency.core as pair


def call_model_function(model: nn.Module, device: torch.device):
    """A PAIR callback returning input-output gradients of the logit ``call_model_args['target']``."""

    def fn(x_batch, call_model_args=None, expected_keys=None):
        if expected_keys and pair.INPUT_OUTPUT_GRADIENTS not in expected_keys:
            raise ValueError(f"this adapter gives input gradients only, not {expected_keys}")
        x = torch.as_tensor(np.asarray(x_batch), dtype=torch.float32, device=device).permute(0, 3, 1, 2)
        x = x.contiguous().requires_grad_(True)
        target = int(call_model_args["target"])
        with torch.enable_grad():
            out = model(x)
            (grad,) = torch.autograd.grad(out[:, target].sum(), x)
        return {pair.INPUT_OUTPUT_GRADIENTS: grad.permute(0, 2, 3, 1).detach().cpu().numpy()}

    return fn


def to_hwc(x: torch.Tensor) -> np.ndarray:
    """One image [C,H,W] → float32 numpy [H,W,C] (greyscale keeps its channel axis, PAIR wants (H,W,1))."""
    return x.detach().permute(1, 2, 0).cpu().numpy().astype(np.float32)


class _QuantileCompat:
    """numpy with ``quantile(..., interpolation=)`` mapped to ``method=`` (removed in numpy 2.4)."""

    def __init__(self, np_module):
        self._np = np_module

    def __getattr__(self, name):
        return getattr(self._np, name)

    def quantile(self, a, q, *args, interpolation=None, **kwargs):
        if interpolation is not None:
            kwargs["method"] = interpolation
        return self._np.quantile(a, q, *args, **kwargs)


@contextlib.contextmanager
def guided_ig_numpy_shim():
    """Give PAIR's guided_ig module a numpy whose ``quantile`` accepts ``interpolation=`` for the duration.

    PAIR 0.2.1 calls ``np.quantile(..., interpolation='lower')``; numpy 2.4 removed the keyword (TypeError). The
    shim is scoped to that one module and to this block; numpy itself is untouched. On numpy < 2.4 it is a no-op
    in effect (``method`` has existed since numpy 1.22).
    """
    from saliency.core import guided_ig

    original = guided_ig.np
    guided_ig.np = _QuantileCompat(original)
    try:
        yield
    finally:
        guided_ig.np = original
