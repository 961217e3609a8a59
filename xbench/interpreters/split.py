"""SplitGrad, SplitCAM and SplitLRP (seed 002): maps read off the DC split f = g − h of a ReLU network (``dc.py``).

The split gives four sensitivities per layer, δ^{±,T} = ∂T/∂a^± for T ∈ {g, h}, α-shifted at every affine input
(α = 0.5 makes them the plain gradient, α = 0 the raw split gradients). ``stream`` picks what a map shows:

- ``+g``, ``-g``, ``+h``, ``-h``: one stream, δ^{±,T} (SplitGrad) or δ^{±,T} ⊙ a^± (SplitCAM, SplitLRP), summed
  over channels; ``+g`` is the reference notes' SplitCAM^{(l,+,g)} / SplitGrad^{(l,+,g)};
- ``g``, ``h``: T's whole evidence, ∂T/∂x (SplitGrad) or δ⁺ ⊙ a⁺ + δ⁻ ⊙ a⁻ (SplitCAM, SplitLRP);
- ``g-h``: the same for f = g − h. It does not depend on α: for SplitGrad it is the plain gradient, for SplitCAM
  gradient × activation; for SplitLRP it is ε-LRP on the split network, R_g − R_h (evidence for minus against),
  which at α = 0 conserves the logit up to the relevance biases absorb.

SplitGrad reads the input, SplitCAM a feature layer (bilinear upsampling), SplitLRP the input with ε-LRP's z-rule
(``lrp_eps``). Which combination the paper reports is not public (``extensions.md`` §1.3), hence the setting.
"""
from __future__ import annotations

import torch

from ..dc import SETTINGS as DC, DCSplit, Split
from ..settings import Setting
from .base import INTERPRETERS, Interpreter, layer_of, upsample

STREAMS = ("+g", "-g", "+h", "-h", "g", "h", "g-h")


def _stream(default: str) -> Setting:
    return Setting(default, "what the map shows: one stream (+g, -g, +h, -h), a part's whole evidence (g, h) or "
                            "f = g − h (g-h)", choices=STREAMS)


def _alpha(default: float) -> Setting:
    return Setting(default, "α-shift at every affine input: 0 = raw split sensitivities, 0.5 = the plain gradient",
                   range="[0, 0.5]")


class _Split(Interpreter):
    """Shared work: the split forward, one backward for the stream's part, and the per-stream combination."""

    # Sensitivities never read s's values (every backward rule reads only d and the weights), so recentring does
    # not change SplitGrad; it is skipped there, and s may even overflow without harm.
    recenter_default = "none"

    def __init__(self, model, space=None, **hparams):
        super().__init__(model, space, **hparams)
        h = self.hparams
        self.split = DCSplit(model, relu=h["relu"], maxpool=h["maxpool"],
                             recenter=h.get("recenter", self.recenter_default), theta=h.get("theta", 10.0))

    def _part(self, out: Split, target: torch.Tensor) -> torch.Tensor:
        """The scalar whose sensitivities the stream needs: Σ_b T[b, target_b] for T = g, h or f."""
        part = self.hparams["stream"].lstrip("+-") if self.hparams["stream"] != "g-h" else "f"
        logits = {"g": out.pos, "h": out.neg, "f": out.d}[part]
        return logits.gather(1, target[:, None]).sum()

    def _combine(self, sigma: torch.Tensor, rho: torch.Tensor, a: Split | None) -> torch.Tensor:
        """The stream's map [B,...] from σ = ∂T/∂s, ρ = ∂T/∂d (δ⁺ = σ + ρ, δ⁻ = σ − ρ) and the pair a (or None)."""
        stream = self.hparams["stream"]
        plus, minus = sigma + rho, sigma - rho
        if stream[0] == "+":
            return plus if a is None else plus * a.pos
        if stream[0] == "-":
            return minus if a is None else minus * a.neg
        return plus * a.pos + minus * a.neg

    def _sensitivities(self, x: torch.Tensor, target: torch.Tensor, keep: tuple[str, ...] = (),
                       lrp_eps: float | None = None) -> tuple[torch.Tensor, torch.Tensor, Split]:
        """(σ, ρ, the pair) at the input (``keep`` empty) or at the kept layer."""
        with torch.enable_grad():
            inp = Split(x.abs().requires_grad_(True), x.clone().requires_grad_(True))
            result = self.split(inp, alpha=self.hparams["alpha"], lrp_eps=lrp_eps, keep=keep)
            at = result.kept[keep[0]] if keep else inp
            sigma, rho = torch.autograd.grad(self._part(result.out, target), [at.s, at.d], allow_unused=True)
        sigma = torch.zeros_like(at.s) if sigma is None else sigma  # f = g − h never reaches s
        return sigma.detach(), rho.detach(), Split(at.s.detach(), at.d.detach())


@INTERPRETERS.register("split_grad")
class SplitGrad(_Split):
    """SplitGrad: α-shifted sensitivities of the DC split at the input (``g-h``: the plain gradient)."""

    settings = {"alpha": _alpha(0.35), "stream": _stream("+g"), "relu": DC["relu"], "maxpool": DC["maxpool"]}

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sigma, rho, _ = self._sensitivities(x, target)
        if self.hparams["stream"][0] in "+-":
            return self._combine(sigma, rho, None).sum(1)
        return (sigma * x.sign() + rho).sum(1)  # ∂T/∂x through x⁺ = ReLU(x), x⁻ = ReLU(−x)


@INTERPRETERS.register("split_cam")
class SplitCAM(_Split):
    """SplitCAM: α-shifted split sensitivities ⊙ the split activations at a feature layer, upsampled."""

    settings = {"layer": Setting(None, "feature layer by module name (default: the model's own feature layer)", str,
                                 optional=True),
                "alpha": _alpha(0.35), "stream": _stream("+g"), "relu": DC["relu"], "maxpool": DC["maxpool"],
                "recenter": Setting("threshold", DC["recenter"].help, choices=DC["recenter"].choices),
                "theta": DC["theta"]}

    def __init__(self, model, space=None, **hparams):
        super().__init__(model, space, **hparams)
        self.layer_name, _ = layer_of(model, self.hparams["layer"])
        self.split.node_of(self.layer_name)  # a layer the split cannot read is refused here

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sigma, rho, a = self._sensitivities(x, target, keep=(self.layer_name,))
        cam = self._combine(sigma, rho, a)
        cam = cam.sum(1) if cam.ndim == 4 else cam.sum(1)[:, None, None]  # a dense layer: one value per image
        return upsample(cam, x.shape[-2:])


@INTERPRETERS.register("split_lrp")
class SplitLRP(_Split):
    """SplitLRP: ε-LRP (z-rule) on the split network, R_g − R_h at the input by default."""

    settings = {"eps": Setting(1e-6, "ε of the z-rule, z/(z + ε) (all split weights are ≥ 0, so γ = 0)",
                               range="(0, inf)"),
                "alpha": _alpha(0.0), "stream": _stream("g-h"), "relu": DC["relu"], "maxpool": DC["maxpool"],
                "recenter": Setting("threshold", DC["recenter"].help, choices=DC["recenter"].choices),
                "theta": DC["theta"]}

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sigma, rho, a = self._sensitivities(x, target, lrp_eps=self.hparams["eps"])
        return self._combine(sigma, rho, a).sum(1)
