"""XRAI (Kapishnikov et al., 2019) through PAIR ``saliency.core.XRAI``, with captum IG as its base attribution."""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch

import saliency.core as pair
from saliency.core import xrai as pair_xrai

from ..settings import Setting
from .base import INTERPRETERS, Interpreter
from ._pair import call_model_function, to_hwc
from .ig import IG

_SEGMENTS: "OrderedDict[str, list]" = OrderedDict()  # per-image Felzenszwalb masks; model-independent
_SEGMENTS_MAX = 4096


def segments_for(pixels_hwc: np.ndarray) -> list:
    """PAIR's XRAI segmentation of one pixel-space image, cached by the image's bytes (shared by all models)."""
    key = hashlib.sha1(pixels_hwc.tobytes() + str(pixels_hwc.shape).encode()).hexdigest()
    if key in _SEGMENTS:
        _SEGMENTS.move_to_end(key)
        return _SEGMENTS[key]
    segs = pair_xrai._get_segments_felzenszwalb(pixels_hwc)
    _SEGMENTS[key] = segs
    if len(_SEGMENTS) > _SEGMENTS_MAX:
        _SEGMENTS.popitem(last=False)
    return segs


@INTERPRETERS.register("xrai")
class XRAI(Interpreter):
    """XRAI (PAIR): regions ranked by IG density; IG from captum with black and white baselines in pixel space.

    Segments (PAIR's Felzenszwalb set) are computed once per image and cached; the base attribution is captum IG
    on the model's device, averaged over the two baselines, handed to PAIR channels-last. ``ig_backend="pair"``
    lets PAIR compute IG itself through the adapter (slower, same definition up to its Riemann rule).
    """

    settings = {"steps": Setting(100, "IG steps of the base attribution", range="[1, inf)"),
                "area_threshold": Setting(1.0, "fraction of the image the regions may cover", range="(0, 1]"),
                "algorithm": Setting("full", "PAIR's region search", choices=("full", "fast")),
                "ig_backend": Setting("captum", "who computes the base IG: captum (batched) or PAIR itself",
                                      choices=("captum", "pair"))}
    backend = "saliency"

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        params = pair.XRAIParameters(steps=h["steps"], area_threshold=h["area_threshold"], algorithm=h["algorithm"])
        if h["ig_backend"] == "captum":
            ig = IG(self.model, self.space, n_steps=h["steps"])
            base = (ig.attributions(x, target, "black") + ig.attributions(x, target, "white")) / 2
        pixels = self.space.to_pixels(x)
        cmf = call_model_function(self.model, x.device)
        xrai = pair.XRAI()
        out = []
        for i in range(x.shape[0]):  # PAIR explains one image per call
            kwargs = dict(segments=segments_for(to_hwc(pixels[i])), extra_parameters=params)
            if h["ig_backend"] == "captum":
                kwargs["base_attribution"] = to_hwc(base[i])
            else:
                black = to_hwc(self.space.constant(0.0, x[i:i + 1])[0])
                white = to_hwc(self.space.constant(1.0, x[i:i + 1])[0])
                kwargs["baselines"] = [black, white]
            res = xrai.GetMaskWithDetails(to_hwc(x[i]), cmf, {"target": int(target[i])}, **kwargs)
            out.append(torch.from_numpy(np.asarray(res.attribution_mask, dtype=np.float32)))
        return torch.stack(out).to(x.device)
