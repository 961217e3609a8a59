"""Pixel space ↔ model input space.

Images live in *pixel space* ([0, 1] per channel); models see *input space* ``(pixel − mean) / std``. Baselines
(IG's black image, XRAI's black and white), noise levels and perturbation substrates are defined in one of the two
spaces, so interpreters and metrics take an :class:`InputSpace` and convert explicitly. It is a shared tool like
``registry``: datasets create it, everything downstream only reads it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class InputSpace:
    """Per-channel normalisation of a dataset; identity when mean 0 and std 1."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = like.shape[1]
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device)
        if mean.numel() == 1 and c > 1:
            mean, std = mean.expand(c), std.expand(c)
        return mean.view(1, c, 1, 1), std.view(1, c, 1, 1)

    def to_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixel space [B,C,H,W] in [0,1] → model input space."""
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def to_pixels(self, inputs: torch.Tensor) -> torch.Tensor:
        """Model input space → pixel space."""
        mean, std = self._stats(inputs)
        return inputs * std + mean

    def constant(self, value: float, like: torch.Tensor) -> torch.Tensor:
        """A constant pixel image (0 = black, 1 = white) in input space, shaped like ``like``."""
        return self.to_input(torch.full_like(like, value))

    def input_range(self, like: torch.Tensor) -> float:
        """Width of the valid input range (max − min over channels), for noise given as a fraction of it."""
        lo = self.to_input(torch.zeros_like(like[:1]))
        hi = self.to_input(torch.ones_like(like[:1]))
        return float((hi - lo).abs().max())

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}
