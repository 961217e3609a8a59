"""Noisy-linear imputation (ROAD, Rong et al. ICML 2022), batched on the model's device.

Every removed pixel becomes the weighted mean of its 8 neighbours (weight 1/6 for the 4 edge neighbours, 1/12 for
the 4 diagonal ones, weights of neighbours outside the image dropped), kept pixels stay, and N(0, noise²) is added to
the removed ones. Per image and channel that is a sparse linear system over the removed pixels,

    d_i·u_i − Σ_{j removed} w_ij·u_j = Σ_{j kept} w_ij·x_j        (d_i = Σ of in-image neighbour weights),

the system ROAD's ``NoisyLinearImputer`` builds with ``scipy.sparse`` and solves with ``spsolve`` one image at a time
on the CPU. The matrix is symmetric and positive definite whenever each hole touches a kept pixel, so here it is
solved for every image, channel and curve point of a pass at once with Jacobi-preconditioned conjugate gradients:
the operator is one depthwise 3×3 convolution, the CG scalars are per (image, channel) — nothing is batch-global. A
hole with no kept neighbour at all (everything removed) has a zero right-hand side and stays at 0 (+ noise).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..settings import Setting

NEIGHBOURS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))  # ROAD's neighbors_weights

SETTINGS = {"noise": Setting(0.01, "noisy_linear: std of the Gaussian noise added to imputed pixels (input space)",
                             range="[0, inf)"),
            "noise_seed": Setting(0, "noisy_linear: seed of the noise (one field per curve point, shared by images)",
                                  range="[0, inf)"),
            "cg_tol": Setting(1e-6, "noisy_linear: CG stops when every residual norm ≤ tol · its right-hand side",
                              range="(0, 1)"),
            "cg_iters": Setting(2000, "noisy_linear: most CG iterations", range="[1, inf)")}


def _neighbour_sum(u: torch.Tensor) -> torch.Tensor:
    """Σ_j w_ij·u_j per channel, zero padding (outside neighbours are absent).

    The kernel is (1/12)·([1,2,1]ᵀ[1,2,1] − 4δ): two separable 3-tap passes (cheaper than a depthwise conv on
    CPUs).
    """
    v = F.pad(u, (1, 1, 1, 1))
    a = v[..., :-2, :] + 2 * v[..., 1:-1, :] + v[..., 2:, :]
    return (a[..., :-2] + 2 * a[..., 1:-1] + a[..., 2:] - 4 * u) / 12


def impute(x: torch.Tensor, removed: torch.Tensor, noise: torch.Tensor | None = None, tol: float = 1e-6,
           max_iter: int = 2000, check_every: int = 8) -> torch.Tensor:
    """x [N,C,H,W] with pixels where ``removed`` [N,1,H,W] (bool) replaced by the linear imputation (+ ``noise``).

    ``noise`` (broadcastable to x, already scaled) is added on the removed pixels only.
    """
    r = removed.to(x.dtype).expand_as(x)
    kept = x * (1 - r)
    d = _neighbour_sum(torch.ones_like(x[:1, :1])).clamp(min=1e-12)  # in-image neighbour weight per pixel
    b = r * _neighbour_sum(kept)
    u = torch.zeros_like(x)
    res = b.clone()
    z = res / d
    p = z.clone()
    rz = (res * z).sum((2, 3), keepdim=True)
    stop = (tol * b.flatten(2).norm(dim=2)).view_as(rz) ** 2
    for it in range(max_iter):
        ap = r * (d * p - _neighbour_sum(p))
        pap = (p * ap).sum((2, 3), keepdim=True)
        alpha = torch.where(pap > 0, rz / pap.clamp(min=1e-30), torch.zeros_like(pap))
        u.add_(alpha * p)
        res.sub_(alpha * ap)
        z = res / d
        rz_new = (res * z).sum((2, 3), keepdim=True)
        beta = torch.where(rz > 0, rz_new / rz.clamp(min=1e-30), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
        if (it + 1) % check_every == 0 and bool(((res * res).sum((2, 3), keepdim=True) <= stop).all()):
            break
    out = kept + r * u
    if noise is not None:
        out = out + r * noise
    return out


def noise_field(shape: tuple[int, ...], std: float, seed: int, device, dtype) -> torch.Tensor | None:
    """Seeded N(0, std²) of ``shape``, drawn on the CPU (the same numbers on every device), or None for std 0."""
    if std == 0:
        return None
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return (torch.randn(shape, generator=g) * std).to(device=device, dtype=dtype)
