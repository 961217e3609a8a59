"""Reconstruction ratio per layer (Bort paper §4.2.1, Fig. 3b; Eq. 4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backtrack import layer_inputs, transpose
from ..settings import Setting
from .base import METRICS, Metric


def _coverage(conv: nn.Conv2d, in_hw, out_hw, device) -> torch.Tensor:
    """How many output windows read each input pixel (≥ 1 where read; 1 elsewhere to avoid 0/0)."""
    ones_w = torch.ones(1, 1, *conv.kernel_size, device=device)
    count = torch.nn.grad.conv2d_input((1, 1, *in_hw), ones_w, torch.ones(1, 1, *out_hw, device=device),
                                       conv.stride, conv.padding, conv.dilation)
    return count.clamp(min=1)


@METRICS.register("recon_ratio")
class ReconRatio(Metric):
    """Per Conv/Linear layer: ‖z − Wᵀ(W z)‖ / ‖z‖ for held-out inputs z at that layer (no bias; lower = invertible)."""

    category = "invertibility"
    higher_is_better = False
    level = "layer"
    settings = {"overlap": Setting("sum", "sum: the plain transpose (Eq. 4); mean: divide each input pixel by the "
                                          "windows covering it (upstream)", choices=("sum", "mean"))}

    def protocol(self, shape):
        return {"variant": "s = W z (no bias), z_hat = W^T s (transposed conv), activations not inverted",
                "overlap": self.params["overlap"] + (" (each input pixel divided by the number of windows covering it,"
                                                     " as upstream trace_back)" if self.params["overlap"] == "mean"
                                                     else " (plain transpose)"),
                "norm": "l2 over the whole layer input, per example"}

    def compute(self, model, x, y, maps):
        ratios = []
        self.layer_names = []
        for name, layer, z in layer_inputs(model, x):
            with torch.no_grad():
                if isinstance(layer, nn.Linear):
                    s = z @ layer.weight.T
                else:
                    s = F.conv2d(z, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
                z_hat = transpose(layer, s, z.shape[1:])
                if self.params["overlap"] == "mean" and isinstance(layer, nn.Conv2d):
                    z_hat = z_hat / _coverage(layer, z.shape[-2:], s.shape[-2:], z.device)
            num = (z - z_hat).flatten(1).norm(dim=1)
            den = z.flatten(1).norm(dim=1)
            ratios.append(torch.where(den > 0, num / den.clamp(min=1e-30), torch.full_like(den, float("nan"))))
            self.layer_names.append(name)
        return torch.stack(ratios, dim=1)
