"""XRAI (Kapishnikov et al., 2019) through PAIR ``saliency.core.XRAI``, with captum IG as its base attribution."""
from __future__ import annotations

import numpy as np
import torch

import saliency.core as pair

from ..settings import Setting
from .base import INTERPRETERS, Interpreter
from ._pair import call_model_function, to_hwc
from .ig import IG
from .segments import segments_for, segments_many  # noqa: F401  (segments_for: one image, for callers)


@INTERPRETERS.register("xrai")
class XRAI(Interpreter):
    """XRAI (PAIR): regions ranked by IG density; IG from captum with black and white baselines in pixel space.

    Segments (PAIR's Felzenszwalb set) are computed once per image in worker processes and cached in memory and
    on disk across models and runs (``segments.py``); the base attribution is captum IG
    on the model's device, averaged over the two baselines, handed to PAIR channels-last. ``ig_backend="pair"``
    lets PAIR compute IG itself through the adapter (slower, same definition up to its Riemann rule).
    """

    settings = {"steps": Setting(100, "IG steps of the base attribution", range="[1, inf)"),
                "area_threshold": Setting(1.0, "fraction of the image the regions may cover", range="(0, 1]"),
                "algorithm": Setting("full", "PAIR's region search", choices=("full", "fast")),
                "ig_backend": Setting("captum", "who computes the base IG: captum (batched) or PAIR itself",
                                      choices=("captum", "pair")),
                "workers": Setting(0, "segmentation worker processes (joblib); 0 = one per CPU core",
                                   range="[0, inf)", memory=True)}
    backend = "saliency"

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        params = pair.XRAIParameters(steps=h["steps"], area_threshold=h["area_threshold"], algorithm=h["algorithm"])
        if h["ig_backend"] == "captum":
            ig = IG(self.model, self.space, n_steps=h["steps"])
            base = (ig.attributions(x, target, "black") + ig.attributions(x, target, "white")) / 2
        pixels = self.space.to_pixels(x)
        segments = segments_many([to_hwc(p) for p in pixels], self.hparams["workers"])  # cached, in parallel
        cmf = call_model_function(self.model, x.device)
        xrai = pair.XRAI()
        out = []
        for i in range(x.shape[0]):  # PAIR explains one image per call
            kwargs = dict(segments=segments[i], extra_parameters=params)
            if h["ig_backend"] == "captum":
                kwargs["base_attribution"] = to_hwc(base[i])
            else:
                black = to_hwc(self.space.constant(0.0, x[i:i + 1])[0])
                white = to_hwc(self.space.constant(1.0, x[i:i + 1])[0])
                kwargs["baselines"] = [black, white]
            res = xrai.GetMaskWithDetails(to_hwc(x[i]), cmf, {"target": int(target[i])}, **kwargs)
            out.append(torch.from_numpy(np.asarray(res.attribution_mask, dtype=np.float32)))
        return torch.stack(out).to(x.device)
