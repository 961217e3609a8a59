"""The DC split of a ReLU network (seed 002): f = g − h with g and h monotone non-decreasing in (x⁺, x⁻).

    split = DCSplit(model)                        # traced once; an unsupported layer is named here
    out = split(x)                                # x⁺ = ReLU(x), x⁻ = ReLU(−x)
    g, h = out.pos, out.neg                       # g − h = model(x)
    out = split(x, alpha=0.35, keep=("relu2",))   # α-shifted sensitivities; the pair at relu2 in out.kept

Every tensor a is carried as a pair a⁺, a⁻ ≥ 0 with a = a⁺ − a⁻, and at the logits g = a⁺, h = a⁻. The pair rules
(``extensions.md`` §1.1) are, with W± = ReLU(±W): affine a′⁺ = W⁺a⁺ + W⁻a⁻ + b⁺, a′⁻ = W⁻a⁺ + W⁺a⁻ + b⁻;
ReLU ``max`` (Theorem 1: g, h stay convex) a′⁺ = max(a⁺, a⁻), a′⁻ = a⁻; ``min`` a′⁺ = a⁺, a′⁻ = min(a⁺, a⁻);
``half`` their mean; max pooling ``dc`` a′⁺ = max_i(a_i⁺ − a_i⁻) + N, a′⁻ = N with N the window sum of a⁻
(monotone and convex), ``wta`` both streams at the window's argmax of a (exact, but g and h only piecewise
monotone); average pooling, flatten, eval dropout and residual addition act on each stream. Eval-mode batch norm is
folded into the conv or linear map before it (or is an affine map of its own when nothing precedes it).

Why the pair is stored as (s, d) = (a⁺ + a⁻, a⁺ − a⁻): d is then the model's own activation, computed by calling
the model's own modules (hooks fire, numerics are the model's), and every rule above becomes one extra stream s of
the same cost: affine s′ = |W|s + |b|; ReLU s′ = s + κ·ReLU(−d) (κ = 1 max, −1 min, 0 half); dc max pooling
s′ = maxpool(d) + sumpool(s − d); the rest act on s as on d. The split costs two forward passes, not four, and the
pair is (s ± d)/2 whenever it is read (``Split.pos``/``neg``).

Backward (sensitivities, for the split interpreters) is autograd through s and d, with two documented changes:

- α-shift (§1.2): at the input of every affine layer, δ^± ← δ^± − α(δ⁺ + δ⁻) for g and for h alike. In (s, d) that
  is the gradient of s times (1 − 2α) and the gradient of d untouched, so ∂f = ∂g − ∂h never changes; α = 0.5 is
  the plain gradient, α = 0 the raw split gradients (which grow like the product of |W| with depth).
- recentring: the common mode a⁺ + a⁻ − |a| grows like ∏|W| too, so g and h are only representable on deep nets if
  it is removed: ``always`` sets (a⁺, a⁻) ← (ReLU(a), ReLU(−a)) after every layer, ``threshold`` does so for an
  example whose max(a⁺ + a⁻) exceeds ``theta``·max|a|, ``none`` never (only then are g and h the monotone functions
  of the input pair). g − h is unchanged. Its backward is the identity (sensitivities), or, for LRP
  (``lrp_eps``), passes relevance through unchanged; ``lrp_eps`` also damps each affine output's sensitivity by
  z/(z + ε) per stream, which turns gradient × input into ε-LRP's z-rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .dc_rules import (ADD, AFFINE, NORMS, RESHAPE_FUNCTIONS, RESHAPE_METHODS, RULES, SHAPE_METHODS, Context, Replace,
                       ScaleGrad, Split, StreamGrad, center, ratio)
from .errors import XbenchError
from .settings import Setting, check

SETTINGS = {
    "relu": Setting("max", "ReLU split: max (convex g, h; Theorem 1), min, or half (their mean)",
                    choices=("max", "min", "half")),
    "maxpool": Setting("dc", "max-pool split: dc (monotone, convex) or wta (the winner's pair; exact f only)",
                       choices=("dc", "wta")),
    "recenter": Setting("none", "remove the common mode: none, threshold (when it exceeds theta·|a|) or always",
                        choices=("none", "threshold", "always")),
    "theta": Setting(10.0, "threshold recentring: common mode allowed, as a multiple of max|a|", range="[1, inf)"),
}


@dataclass
class Output:
    out: Split  # the logits: g = out.pos, h = out.neg
    kept: dict[str, Split] = field(default_factory=dict)  # pairs at the layers asked for in ``keep``


class DCSplit:
    """The DC split of ``model`` (any fx-traceable model made of the modules in :data:`RULES`), eval mode."""

    def __init__(self, model: nn.Module, relu: str = "max", maxpool: str = "dc", recenter: str = "none",
                 theta: float = 10.0):
        values = check("dc split", SETTINGS, {"relu": relu, "maxpool": maxpool, "recenter": recenter, "theta": theta})
        self.relu, self.maxpool, self.recenter, self.theta = (values[k] for k in SETTINGS)
        self.model = model
        try:
            self.graph = fx.symbolic_trace(model).graph
        except Exception as err:  # data-dependent control flow and the like
            raise XbenchError(f"dc split: cannot trace {type(model).__name__} ({type(err).__name__}: {err})") from None
        self.modules = dict(model.named_modules())
        self.nodes = list(self.graph.nodes)
        self._logits = next(n for n in self.nodes if n.op == "output").args[0]  # never recentred: g, h live there
        self._check()
        self.folded = self._fold()

    def _check(self) -> None:
        for node in self.nodes:
            if node.op == "call_module":
                m = self.modules[node.target]
                bad = ""
                if type(m) not in RULES:
                    bad = "no rule for this layer type"
                elif isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
                    bad = f"padding_mode {m.padding_mode!r}"
                elif isinstance(m, nn.MaxPool2d) and m.dilation not in (1, (1, 1)):
                    bad = "dilated max pooling"
                elif isinstance(m, NORMS) and not m.track_running_stats:
                    bad = "batch norm without running statistics"
                if bad:
                    raise XbenchError(f"dc split: layer {node.target!r} ({type(m).__name__}) of "
                                      f"{type(self.model).__name__} is not supported: {bad}; supported: "
                                      f"{', '.join(sorted(t.__name__ for t in RULES))}, residual +, flatten")
            elif node.op == "call_function" and node.target not in ADD + RESHAPE_FUNCTIONS:
                raise XbenchError(f"dc split: operation {getattr(node.target, '__name__', node.target)!r} in "
                                  f"{type(self.model).__name__} is not supported (only +, flatten, reshape)")
            elif node.op == "call_method" and node.target not in RESHAPE_METHODS + SHAPE_METHODS:
                raise XbenchError(f"dc split: tensor method {node.target!r} in {type(self.model).__name__} "
                                  f"is not supported")
            elif node.op == "get_attr":
                raise XbenchError(f"dc split: {type(self.model).__name__} reads the tensor {node.target!r} in its "
                                  f"forward; only modules, +, flatten and reshape are supported")

    def _fold(self) -> dict:
        """conv/linear → batch norm right after it (its only user), and the reverse, for folding."""
        folded = {}
        for node in self.nodes:
            if node.op != "call_module" or not isinstance(self.modules[node.target], NORMS):
                continue
            src = node.args[0]
            if (isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1
                    and isinstance(self.modules[src.target], AFFINE)):
                folded[self.modules[src.target]] = self.modules[node.target]
                folded[self.modules[node.target]] = self.modules[src.target]
        return folded

    def node_of(self, layer: str) -> fx.Node:
        """The node whose output is ``layer``'s output (the last node inside that module)."""
        found = None
        for node in self.nodes:
            stack = node.meta.get("nn_module_stack") or {}
            if node.target == layer or any(path == layer for path, _ in stack.values()):
                found = node
        if found is None:
            raise XbenchError(f"dc split: {type(self.model).__name__} has no layer {layer!r}")
        if self._is_open(found):
            raise XbenchError(f"dc split: {layer!r} has its batch norm folded in; take the batch norm's output")
        return found

    def __call__(self, x: torch.Tensor | Split, *, alpha: float = 0.0, lrp_eps: float | None = None,
                 keep: tuple[str, ...] = ()) -> Output:
        """Run the split on x (input space; split by :func:`center`) or on an input pair given as a :class:`Split`."""
        training = [n for n, m in self.modules.items() if m.training and isinstance(m, NORMS + (nn.Dropout,))]
        if training:
            raise XbenchError(f"dc split: call model.eval() first ({training[0]} is in training mode)")
        wanted = {self.node_of(name): name for name in keep}
        ctx = Context(self.relu, self.maxpool, self.folded)
        env: dict[fx.Node, Any] = {}
        kept: dict[str, Split] = {}
        for node in self.nodes:
            if node.op == "placeholder":
                env[node] = x if isinstance(x, Split) else center(x)
            elif node.op == "output":
                out = env[node.args[0]]
            else:
                env[node] = self._run(node, env, ctx, alpha, lrp_eps)
                if isinstance(env[node], Split) and node is not self._logits and not self._is_open(node):
                    env[node] = self._recentre(env[node], lrp_eps is not None)
            if node in wanted:
                kept[wanted[node]] = env[node]
        return Output(out, kept)

    def _run(self, node: fx.Node, env: dict, ctx: Context, alpha: float, lrp_eps: float | None) -> Any:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "call_module":
            m = self.modules[node.target]
            a = args[0]
            s = a.s
            if isinstance(m, AFFINE) or (isinstance(m, NORMS) and m not in self.folded):
                s = ScaleGrad.apply(s, 1.0 - 2.0 * alpha) if alpha else s
            d_out = m(a.d.clone() if getattr(m, "inplace", False) else a.d)  # d_in is still read below
            out = Split(RULES[type(m)](m, s, a.d, d_out, ctx), d_out)
            if lrp_eps is not None and isinstance(m, AFFINE + NORMS) and not self._is_open(node):
                pos, neg = out.pos.detach(), out.neg.detach()
                out = Split(*StreamGrad.apply(out.s, out.d, pos / (pos + lrp_eps), neg / (neg + lrp_eps)))
            return out
        if node.op == "call_function" and node.target in ADD:
            a, b = args[:2]
            if not (isinstance(a, Split) and isinstance(b, Split)):
                raise XbenchError("dc split: + is supported between two activations only")
            return Split(a.s + b.s, a.d + b.d)
        if node.op == "call_function":
            a, rest = args[0], args[1:]
            return Split(node.target(a.s, *rest, **kwargs), node.target(a.d, *rest, **kwargs))
        if node.op == "call_method":
            a, rest = args[0], args[1:]
            if node.target in SHAPE_METHODS:
                return getattr(a.d, node.target)(*rest, **kwargs)
            return Split(getattr(a.s, node.target)(*rest, **kwargs), getattr(a.d, node.target)(*rest, **kwargs))
        raise XbenchError(f"dc split: graph node {node.op} {node.target} is not supported")

    def _is_open(self, node: fx.Node) -> bool:
        """A conv/linear whose batch norm is folded into it: its pair is complete only after that batch norm."""
        return node.op == "call_module" and isinstance(self.modules[node.target], AFFINE) and (
            self.modules[node.target] in self.folded)

    def _recentre(self, a: Split, lrp: bool) -> Split:
        if self.recenter == "none":
            return a
        floor = a.d.detach().abs()
        if self.recenter == "threshold":  # per example, without a device sync
            peak_s = a.s.detach().flatten(1).amax(1)
            hit = (peak_s > self.theta * floor.flatten(1).amax(1)).view(-1, *([1] * (a.s.ndim - 1)))
            floor = torch.where(hit, floor, a.s.detach())
        new = Split(Replace.apply(a.s, floor), a.d)
        if lrp:  # relevance passes unchanged: ∂/∂a_old = ∂/∂a_new · a_new / a_old, per stream
            kp, kn = ratio(new.pos.detach(), a.pos.detach()), ratio(new.neg.detach(), a.neg.detach())
            new = Split(*StreamGrad.apply(new.s, new.d, kp, kn))
        return new
