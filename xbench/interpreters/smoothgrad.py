"""SmoothGrad (Smilkov et al., 2017) through captum ``NoiseTunnel(Saliency)``, with one seeded noise set."""
from __future__ import annotations

import torch
from captum.attr import NoiseTunnel, Saliency

from ..settings import Setting
from .base import INTERPRETERS, Interpreter, reduce_channels


class _SharedNoiseTunnel(NoiseTunnel):
    """NoiseTunnel whose noise is one seeded set of ``nt_samples`` draws, the same for every image.

    captum draws noise for the whole expanded batch from the global RNG, so an image's map would depend on its
    batch-mates and on unrelated RNG use; a fixed set (as RISE fixes its masks) makes maps reproducible and
    batch-independent, and lowers the variance between images.
    """

    def __init__(self, attribution_method, noise: torch.Tensor):
        super().__init__(attribution_method)
        self.noise = noise  # [n_samples, C, H, W]
        self.offset = 0

    def _add_noise_to_input(self, input, stdev, nt_samples_partition):  # captum calls it per sample chunk
        chunk = self.noise[self.offset:self.offset + nt_samples_partition]
        self.offset = (self.offset + nt_samples_partition) % len(self.noise)
        expanded = input.repeat_interleave(nt_samples_partition, dim=0)
        return expanded + chunk.repeat(input.shape[0], 1, 1, 1)


@INTERPRETERS.register("smoothgrad")
class SmoothGrad(Interpreter):
    """SmoothGrad: mean gradient over Gaussian-noised copies (captum NoiseTunnel), σ a fraction of the input range."""

    settings = {"n_samples": Setting(50, "noisy copies per image", range="[1, inf)"),
                "noise_level": Setting(0.15, "noise sigma as a fraction of the input range", range="(0, inf)"),
                "seed": Setting(0, "seed of the noise set", range="[0, inf)"),
                "reduce": Setting("sum", "how channels become one map: sum (signed), abs (sum of |.|) or max", choices=("sum", "abs", "max")),
                "samples_per_batch": Setting(25, "noisy copies per forward pass", range="[1, inf)", memory=True)}
    backend = "captum"
    stochastic = True

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        sigma = h["noise_level"] * self.space.input_range(x)
        g = torch.Generator(device="cpu").manual_seed(h["seed"])
        noise = (torch.randn((h["n_samples"], *x.shape[1:]), generator=g) * sigma).to(x.device)
        nt = _SharedNoiseTunnel(Saliency(self.model), noise)
        attr = nt.attribute(x, nt_type="smoothgrad", nt_samples=h["n_samples"],
                            nt_samples_batch_size=min(h["n_samples"], h["samples_per_batch"]), stdevs=float(sigma),
                            target=target, abs=False)
        return reduce_channels(attr.detach(), h["reduce"])
