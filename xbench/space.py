"""Pixel space ↔ model input space.

Images live in *pixel space* ([0, 1] per channel); models see *input space* ``(pixel − mean) / std``. Baselines
(IG's black image, XRAI's black and white), noise levels and perturbation substrates are defined in one of the two
spaces, so interpreters and metrics take an :class:`InputSpace` and convert explicitly. It is a shared tool like
``registry``: datasets create it, everything downstream only reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch

# Input values in one model pass (128 MiB of float32). Protocols that batch many perturbed copies (deletion and
# insertion curves, RISE masks) stop at this as well as at their input count: at 3×224×224 a 2,048-input pass is
# 1.2 GB and runs slower than the same work in passes of ~200 (measured in benchmarks/perturbation.py).
PASS_ELEMENTS = 1 << 25
# On a CPU, passes past a few dozen 3×224×224 inputs run slower per input (activations leave the caches): tv:resnet18,
# one thread, 46 ms per input in passes of 8, 48 in passes of 28, 62 in passes of 116–232 (benchmarks/scale.py).
# Callers that say their device get this smaller bound there (28² inputs stay bounded by their input count).
CPU_PASS_ELEMENTS = 1 << 22


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


def inputs_per_pass(limit: int, example_shape: tuple[int, ...], device: torch.device | None = None) -> int:
    """How many inputs of ``example_shape`` (C,H,W) one model pass takes: at most ``limit`` and PASS_ELEMENTS values
    (CPU_PASS_ELEMENTS on a CPU ``device``)."""
    budget = CPU_PASS_ELEMENTS if device is not None and torch.device(device).type == "cpu" else PASS_ELEMENTS
    return max(1, min(int(limit), budget // max(1, prod(example_shape))))
