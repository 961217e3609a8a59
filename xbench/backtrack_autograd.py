"""The backtracking g on any model, through autograd: guided backprop from a layer to the input (Bort A.4).

    bt = backtracker(model, layer="layer4")        # chain models get backtrack.Backtracker, others this one
    z, trace = bt.forward(x)                        # z: the layer's output as a map [B,C,h,w] (or [B,C])
    x_hat = bt.backward(s, trace)                   # s: [B·g, ...] image-major, like backtrack.Backtracker

The forward runs the model up to the layer (a hook stops it there) under a torch function mode that swaps every
ReLU (``nn.ReLU`` modules, ``F.relu``, ``torch.relu``, in place or not) for one whose backward is the rule asked
for: ``guided`` passes ŝ where the ReLU's input a > 0 and ŝ > 0 (A.4), ``plain`` where a > 0 (autograd's own
rule), ``none`` everything. Convolutions, linear layers, folded eval batch norm and max pooling are their exact
vector-Jacobian products, which are the chain rules of ``backtrack.py`` (transpose without bias, unpooling to the
argmax); average pooling is its VJP (the value spread over the window divided by the window size, where the chain
path copies it). All g maps of all images go through one backward: ``autograd.grad(..., is_grads_batched=True)``
vmaps the VJP over the g maps of each image (ResNet skips, VGG and timm blocks alike).

Vision transformers: a layer whose output is tokens [B, N, D] is read as its token grid — the class (and other
prefix) tokens dropped, the rest reshaped to [B, D, h, w] (h = w = √(N − prefix)); a Swin stage's channels-last
[B, h, w, C] is moved to [B, C, h, w] — so CAM, Grad-CAM and SAT use a named block like any feature map.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .backtrack import RELU_RULES, Backtracker, Trace, one_hot_maps
from .errors import XbenchError

_RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class _Guided(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(a):
        return a.clamp(min=0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0] > 0)

    @staticmethod
    def backward(ctx, s):
        (mask,) = ctx.saved_tensors
        return s * (mask & (s > 0))


class _PassThrough(_Guided):  # ReLU forward, the signal passed back unchanged
    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, s):
        return s


class ReluRule(TorchFunctionMode):
    """Every ReLU call inside this mode uses the backtracking rule ``relu`` (never in place)."""

    def __init__(self, relu: str):
        super().__init__()
        self.fn = {"guided": _Guided.apply, "none": _PassThrough.apply, "plain": None}[relu]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.fn is not None and func in _RELUS:
            return self.fn(args[0])
        return func(*args, **(kwargs or {}))


class _Stop(Exception):
    pass


def token_grid(a: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Tokens [B,N,D] → [B,D,h,w] without the prefix (class) tokens; channels-last stages of models that say so
    (timm Swin: ``output_fmt == "NHWC"``) → [B,C,h,w]; maps [B,C,h,w] and [B,C] pass unchanged."""
    if a.ndim == 4 and getattr(model, "output_fmt", "NCHW") == "NHWC":
        return a.permute(0, 3, 1, 2)
    if a.ndim != 3:
        return a
    n = a.shape[1]
    prefix = getattr(model, "num_prefix_tokens", None)
    if prefix is None:
        prefix = n - math.isqrt(n) ** 2
    side = math.isqrt(n - prefix)
    if side * side != n - prefix:
        raise XbenchError(f"{type(model).__name__}: {n} tokens less {prefix} prefix token(s) are not a square grid")
    return a[:, prefix:].transpose(1, 2).reshape(a.shape[0], a.shape[2], side, side)


def feature_module(model: nn.Module, layer: str | None, who: str) -> tuple[str, nn.Module]:
    """The named layer or the model's feature layer; none is one line naming ``--hparam <who>.layer=``."""
    name = layer or getattr(model, "feature_layer", "")
    if not name:
        raise XbenchError(f"{who}: {type(model).__name__} names no feature layer; choose one with "
                          f"--hparam {who}.layer=<module name> (e.g. the last conv block, or blocks.N of a ViT)")
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        raise XbenchError(f"{who}: {type(model).__name__} has no layer {name!r}; choose one with "
                          f"--hparam {who}.layer=<module name>") from None


class AutogradBacktracker:
    """g from ``layer`` of any model to the input by batched guided backprop; same interface as Backtracker."""

    def __init__(self, model: nn.Module, layer: str | None = None, relu: str = "guided", who: str = "sat"):
        if relu not in RELU_RULES:
            raise XbenchError(f"relu rule must be one of {RELU_RULES}, not {relu!r}")
        self.model, self.relu = model, relu
        self.layer, self.module = feature_module(model, layer, who)
        self.who = who

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Trace]:
        """The layer's output (as a map) with the graph back to x kept in the trace."""
        store = {}

        def hook(module, inputs, output):
            store["a"] = output
            raise _Stop

        x = x.detach().requires_grad_(True)
        handle = self.module.register_forward_hook(hook)
        try:
            with torch.enable_grad(), ReluRule(self.relu):
                self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        a = store.get("a")
        if not isinstance(a, torch.Tensor) or a.ndim not in (2, 3, 4):
            raise XbenchError(f"{self.who}: layer {self.layer!r} of {type(self.model).__name__} gives no feature "
                              f"map; choose another with --hparam {self.who}.layer=<module name>")
        z = token_grid(a, self.model)
        return z.detach(), Trace(x.shape[0], [x, z])

    def backward(self, s: torch.Tensor, trace: Trace, skip: int = 0) -> torch.Tensor:
        """g(s) for ``s.shape[0] = B·g`` maps (image-major): one vmapped VJP over the g maps of each image."""
        b = trace.batch
        if s.shape[0] % b:
            raise ValueError(f"{s.shape[0]} maps are not a multiple of the traced batch {b}")
        x, z = trace.records
        g = s.shape[0] // b
        grads = s.reshape(b, g, *z.shape[1:]).transpose(0, 1).to(z.dtype)  # [g, B, ...]
        (out,) = torch.autograd.grad(z, x, grads, retain_graph=True, is_grads_batched=True)
        return out.transpose(0, 1).reshape(b * g, *x.shape[1:])

    def backward_combined(self, trace, z_shape, channels, positions, values):
        return Backtracker.backward_combined(self, trace, z_shape, channels, positions, values)

    def backward_one_hot(self, trace, z_shape, channels, positions, values):
        c, h, w = z_shape if len(z_shape) == 3 else (z_shape[0], 1, 1)
        bsz, k = channels.shape
        maps = one_hot_maps((c, h, w), channels, positions, values)
        return self.backward(maps.view(bsz * k, *z_shape), trace)


def backtracker(model: nn.Module, layer: str | None = None, relu: str = "guided", who: str = "sat",
                path: str = "auto") -> Backtracker | AutogradBacktracker:
    """The chain path (``backtrack.Backtracker``, faster) where the model is a chain holding the layer, else
    autograd; ``path`` = ``chain`` or ``autograd`` forces one."""
    chain = getattr(model, "chain", None)
    name = layer or getattr(model, "feature_layer", "")
    on_chain = chain is not None and name in [n for n, _ in chain()]
    if path == "chain" or (path == "auto" and on_chain):
        return Backtracker(model, layer, relu=relu)
    return AutogradBacktracker(model, layer, relu=relu, who=who)
