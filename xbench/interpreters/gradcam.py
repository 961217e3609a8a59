"""Grad-CAM (Selvaraju et al., 2017) through captum ``LayerGradCam``, ReLU'd, bilinear upsampling."""
from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam

from ..settings import Setting
from .base import INTERPRETERS, Interpreter, layer_of


@INTERPRETERS.register("gradcam")
class GradCAM(Interpreter):
    """Grad-CAM at the feature layer (captum LayerGradCam, relu_attributions), bilinear upsampling to the input."""

    settings = {"layer": Setting(None, "feature layer by module name (default: the model's own feature layer)", str, optional=True),
                "relu": Setting(True, "ReLU the map (Grad-CAM's definition)")}
    backend = "captum"

    def __init__(self, model, space=None, **hparams):
        super().__init__(model, space, **hparams)
        self.layer_name, self.layer = layer_of(model, self.hparams["layer"])

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        attr = LayerGradCam(self.model, self.layer).attribute(x, target=target,
                                                             relu_attributions=self.hparams["relu"])
        return LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), "bilinear").squeeze(1)
