"""Layer-wise backtracking g: from a layer of a chain model back to the input (Bort paper Eq. 4 and A.4).

    bt = Backtracker(model, layer="relu5")
    z, trace = bt.forward(x)              # z: the layer's output; trace: what g needs (ReLU masks, pool indices)
    x_hat = bt.backward(s, trace)         # s: [B·g, ...] maps shaped like z, g maps per image (image-major)

Rules, walking the chain in reverse:

- Conv2d / Linear: the transpose, ẑ = Wᵀ s (``conv_transpose2d`` with the forward's stride, padding and groups),
  without bias — the paper's Eq. 4;
- ReLU / LeakyReLU: the guided rule of A.4, pass ŝ where the forward input a > 0 *and* ŝ > 0 (``relu="guided"``;
  ``"plain"`` keeps only a > 0, ``"none"`` passes everything);
- MaxPool2d / AdaptiveMaxPool2d: unpooling to the recorded argmax positions; AvgPool2d / AdaptiveAvgPool2d: spread
  the value over its window (nearest upsampling);
- Flatten: reshape; Dropout / Identity: nothing.

With the guided rule, g is exactly guided backpropagation's vector-Jacobian product from the layer (the test checks
it against autograd). One implementation serves SAT, the reconstruction ratio, feature decomposition and adversarial
synthesis. ``backward`` takes several maps per image at once: the trace of image i is broadcast over its g maps, so
k channels of B images run as one batch of B·k maps instead of k passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import XbenchError
from .settings import Setting

RELU_RULES = ("guided", "plain", "none")
RELU = Setting("guided", "ReLU rule of the backtracking g: guided (A.4), plain (forward mask only) or none",
               choices=RELU_RULES)


@dataclass
class Trace:
    """Per-layer records of one forward pass (index-aligned with the chain), for B images."""

    batch: int
    records: list[Any]


def chain_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    chain = getattr(model, "chain", None)
    if chain is None:
        raise XbenchError(f"{type(model).__name__} is not a chain model; backtracking (SAT, reconstruction, "
                          f"decomposition, synthesis) needs one of xbench's chain models (lenet, acnn_*, mlp)")
    return chain()


class Backtracker:
    """The paper's g for ``model`` from ``layer`` (default: the model's feature layer) back to the input."""

    def __init__(self, model: nn.Module, layer: str | None = None, relu: str = "guided"):
        if relu not in RELU_RULES:
            raise XbenchError(f"relu rule must be one of {RELU_RULES}, not {relu!r}")
        chain = chain_of(model)
        layer = layer or getattr(model, "feature_layer", "")
        names = [n for n, _ in chain]
        if layer not in names:
            raise XbenchError(f"layer {layer!r} is not in the chain of {type(model).__name__} ({', '.join(names)})")
        self.layers = chain[: names.index(layer) + 1]
        self.layer = layer
        self.relu = relu

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Trace]:
        """Run the chain up to the layer, recording what the backward rules need."""
        records: list[Any] = []
        with torch.no_grad():
            for _, m in self.layers:
                if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
                    records.append(x > 0)
                    x = m(x)
                elif isinstance(m, nn.MaxPool2d):
                    y, idx = F.max_pool2d(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                          return_indices=True)
                    records.append((idx, x.shape[-2:]))
                    x = y
                elif isinstance(m, nn.AdaptiveMaxPool2d):
                    y, idx = F.adaptive_max_pool2d(x, m.output_size, return_indices=True)
                    records.append((idx, x.shape[-2:]))
                    x = y
                else:
                    records.append(x.shape[1:])
                    x = m(x)
        return x, Trace(x.shape[0], records)

    def backward(self, s: torch.Tensor, trace: Trace, skip: int = 0) -> torch.Tensor:
        """g(s): maps shaped like the layer's output, ``s.shape[0] = B·g`` (image-major), back to input space.

        ``skip`` top layers are taken as already undone (``s`` is then shaped like their input).
        """
        b = trace.batch
        if s.shape[0] % b:
            raise ValueError(f"{s.shape[0]} maps are not a multiple of the traced batch {b}")
        g = s.shape[0] // b
        n = len(self.layers) - skip
        with torch.no_grad():
            for (_, m), rec in zip(reversed(self.layers[:n]), reversed(trace.records[:n])):
                s = self._back(m, s, rec, b, g)
        return s

    def backward_combined(self, trace: Trace, z_shape: tuple[int, ...], channels: torch.Tensor,
                          positions: torch.Tensor, values: torch.Tensor | float) -> torch.Tensor:
        """g of one map per image holding all its k one-hots at once (decomposition's X̂, synthesis's X_adv)."""
        c, h, w = z_shape if len(z_shape) == 3 else (z_shape[0], 1, 1)
        bsz, k = channels.shape
        maps = one_hot_maps((c, h, w), channels, positions, values).view(bsz, k, -1).sum(1)
        return self.backward(maps.view(bsz, *z_shape), trace)

    def backward_one_hot(self, trace: Trace, z_shape: tuple[int, ...], channels: torch.Tensor,
                         positions: torch.Tensor, values: torch.Tensor | float) -> torch.Tensor:
        """g of the one-hot maps of :func:`one_hot_maps` (k per image), without building them densely.

        Equal to ``backward(one_hot_maps(...), trace)``. A one-hot map through the top ReLU is the single value
        or zero, and through the conv below it is one filter placed at one position: both are done by indexing,
        so the widest transposed convolution (most of SAT's cost) is never run on a map that is almost all zeros.
        """
        bsz, k = channels.shape
        vals = torch.as_tensor(values, dtype=torch.float32, device=channels.device).expand(bsz, k).reshape(-1)
        c, h, w = z_shape if len(z_shape) == 3 else (z_shape[0], 1, 1)
        flat_c, flat_p = channels.reshape(-1), positions.reshape(-1)
        img = torch.arange(bsz, device=channels.device).repeat_interleave(k)
        layers, records, used = self.layers, trace.records, 0
        while used < len(layers) and isinstance(layers[-1 - used][1], (nn.ReLU, nn.LeakyReLU)):
            if self.relu != "none":
                mask = records[-1 - used].reshape(bsz, -1)[img, flat_c * h * w + flat_p]
                vals = vals * (mask & (vals > 0)) if self.relu == "guided" else vals * mask
            used += 1
        conv = layers[-1 - used][1] if used < len(layers) else None
        if len(z_shape) == 3 and isinstance(conv, nn.Conv2d) and conv.groups == 1 and isinstance(conv.padding, tuple):
            s = _place_filters(conv, records[-1 - used], flat_c, flat_p // w, flat_p % w, vals)
            return self.backward(s, trace, skip=used + 1)
        maps = one_hot_maps((c, h, w), channels, positions, vals.view(bsz, k))
        return self.backward(maps.view(bsz * k, *z_shape), trace, skip=used)

    def _back(self, m: nn.Module, s: torch.Tensor, rec: Any, b: int, g: int) -> torch.Tensor:
        if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
            if self.relu == "none":
                return s
            mask = rec.unsqueeze(1)  # [B,1,...] broadcast over the g maps of each image
            s = s.view(b, g, *s.shape[1:])
            s = s * mask if self.relu == "plain" else s * (mask & (s > 0))
            return s.flatten(0, 1)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return transpose(m, s, rec)
        if isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            idx, size = rec
            idx = idx.unsqueeze(1).expand(b, g, *idx.shape[1:]).flatten(0, 1)
            flat = torch.zeros(s.shape[0], s.shape[1], size[0] * size[1], dtype=s.dtype, device=s.device)
            flat.scatter_add_(2, idx.flatten(2), s.flatten(2))
            return flat.view(s.shape[0], s.shape[1], *size)
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return F.interpolate(s, size=tuple(rec[-2:]), mode="nearest")
        if isinstance(m, nn.Flatten):
            return s.reshape(s.shape[0], *rec)
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return s
        raise XbenchError(f"backtracking has no rule for {type(m).__name__}")

    def __call__(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """g(s) at input x: forward to record the trace, then backtrack s."""
        _, trace = self.forward(x)
        return self.backward(s, trace)


def transpose(layer: nn.Conv2d | nn.Linear, s: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Wᵀ s for one Conv2d/Linear layer (no bias), shaped like the layer's input ``in_shape`` (without batch).

    The paper's Eq. 4 reconstruction: for a convolution, the transposed convolution with the forward's stride,
    padding, dilation and groups, padded where a strided forward never read the last rows/columns.
    """
    if isinstance(layer, nn.Linear):
        return s @ layer.weight
    m = layer
    pad = [d * (k - 1) - p for d, k, p in zip(m.dilation, m.kernel_size, _pair(m.padding))]
    if m.stride == (1, 1) and m.groups == 1 and min(pad) >= 0:
        # At stride 1, Wᵀ is a convolution with the flipped kernel; CPUs run it several times faster than
        # conv_transpose2d (mkldnn path), with the same result.
        return F.conv2d(s, m.weight.flip(2, 3).transpose(0, 1), None, 1, pad, m.dilation)
    full = [(o - 1) * st - 2 * p + d * (k - 1) + 1
            for o, st, p, d, k in zip(s.shape[-2:], m.stride, _pair(m.padding), m.dilation, m.kernel_size)]
    extra = [i - f for i, f in zip(in_shape[-2:], full)]  # rows/cols the strided forward never read
    out = F.conv_transpose2d(s, m.weight, None, m.stride, _pair(m.padding),
                             [min(e, st - 1) for e, st in zip(extra, m.stride)], m.groups, m.dilation)
    if out.shape[-2:] != tuple(in_shape[-2:]):
        out = F.pad(out, (0, in_shape[-1] - out.shape[-1], 0, in_shape[-2] - out.shape[-2]))
    return out


def layer_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(name, layer, input z) for every Conv2d/Linear layer, from one forward pass: in chain order on a chain
    model; on any other model in the order the layers run (forward pre-hooks), each layer once (its first call)."""
    if getattr(model, "chain", None) is None:
        return _hooked_layer_inputs(model, x)
    out = []
    with torch.no_grad():
        for name, m in chain_of(model):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                out.append((name, m, x))
            x = m(x)
    return out


def _hooked_layer_inputs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    seen: dict[str, tuple[str, nn.Module, torch.Tensor]] = {}

    def pre(name):
        def hook(m, inputs):
            seen.setdefault(name, (name, m, inputs[0].detach()))  # returns None: the inputs stay as they are
        return hook

    handles = [m.register_forward_pre_hook(pre(n)) for n, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return list(seen.values())


def _place_filters(conv: nn.Conv2d, in_shape, channels, rows, cols, values) -> torch.Tensor:
    """Transposed conv of one-hot maps: filter ``channels[n]`` × ``values[n]`` placed at output (rows[n], cols[n])."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, _pair(conv.padding), conv.dilation
    c_in, height, width = in_shape
    n = len(channels)
    canvas_h = max(height + 2 * ph, int(rows.max()) * sh + dh * (kh - 1) + 1 if n else 0)
    canvas_w = max(width + 2 * pw, int(cols.max()) * sw + dw * (kw - 1) + 1 if n else 0)
    canvas = torch.zeros(n, c_in, canvas_h, canvas_w, dtype=conv.weight.dtype, device=conv.weight.device)
    r = rows[:, None] * sh + torch.arange(kh, device=rows.device) * dh  # [n, kh] canvas rows
    q = cols[:, None] * sw + torch.arange(kw, device=cols.device) * dw  # [n, kw] canvas cols
    filters = conv.weight[channels] * values.to(conv.weight.dtype)[:, None, None, None]  # [n, c_in, kh, kw]
    canvas[torch.arange(n, device=rows.device)[:, None, None, None],
           torch.arange(c_in, device=rows.device)[None, :, None, None],
           r[:, None, :, None], q[:, None, None, :]] = filters
    return canvas[:, :, ph:ph + height, pw:pw + width]


def _pair(v) -> tuple[int, int]:
    if isinstance(v, str):
        raise XbenchError(f"backtracking needs numeric conv padding, not {v!r}")
    return (v, v) if isinstance(v, int) else tuple(v)


def one_hot_maps(shape: tuple[int, ...], channels: torch.Tensor, positions: torch.Tensor,
                 values: torch.Tensor | float) -> torch.Tensor:
    """[B·k, C, h, w] maps, zero except ``values`` at (channels[b, j], positions[b, j]) — SAT's and A.5's Z⁰.

    ``channels`` and ``positions`` are [B, k] (positions index the flattened h·w plane); ``values`` is a number or
    a [B, k] tensor.
    """
    c, h, w = shape
    bsz, k = channels.shape
    z = torch.zeros(bsz * k, c * h * w, dtype=torch.float32, device=channels.device)
    flat_index = (channels * (h * w) + positions).reshape(-1, 1)
    vals = torch.as_tensor(values, dtype=torch.float32, device=channels.device).expand(bsz, k).reshape(-1, 1)
    z.scatter_(1, flat_index, vals)
    return z.view(bsz * k, c, h, w)


def spatial(z: torch.Tensor) -> torch.Tensor:
    """A feature map as [B,C,h,w]; a dense layer's [B,C] becomes channels with 1×1 maps."""
    return z if z.ndim == 4 else z.reshape(*z.shape[:2], 1, 1)


def top_channels(z: torch.Tensor, k: int, exclude_border: bool = False) -> tuple[torch.Tensor, ...]:
    """The k channels of a feature map [B,C,h,w] with the largest maxima: (values, channels, positions), each [B,k].

    Positions index the flattened h·w plane. ``exclude_border`` ranks channels whose maximum sits on the map's
    border last (upstream TraceTopk's −100 rule).
    """
    bsz, c, h, w = z.shape
    peak, pos = z.flatten(2).max(dim=2)  # [B, C]
    rank = peak
    if exclude_border:
        row, col = pos // w, pos % w
        border = (row == 0) | (row == h - 1) | (col == 0) | (col == w - 1)
        rank = torch.where(border, peak - peak.abs().max() - 100.0, peak)
    k = min(k, c)
    _, channels = rank.topk(k, dim=1)
    return peak.gather(1, channels), channels, pos.gather(1, channels)
