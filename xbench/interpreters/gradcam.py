"""Grad-CAM (Selvaraju et al., 2017) through captum ``LayerGradCam``, ReLU'd, bilinear upsampling."""
from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam

from ..settings import Setting
from ..backtrack_autograd import token_grid
from .base import INTERPRETERS, Interpreter, layer_of, upsample


@INTERPRETERS.register("gradcam")
class GradCAM(Interpreter):
    """Grad-CAM at the feature layer (captum LayerGradCam, relu_attributions), bilinear upsampling to the input."""

    settings = {"layer": Setting(None, "feature layer by module name (default: the model's own feature layer)", str, optional=True),
                "relu": Setting(True, "ReLU the map (Grad-CAM's definition)")}
    backend = "captum"

    def __init__(self, model, space=None, **hparams):
        super().__init__(model, space, **hparams)
        self.layer_name, self.layer = layer_of(model, self.hparams["layer"])
        self._tokens: bool | None = None

    def _token_gradcam(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Grad-CAM on a ViT block's token grid (class token dropped): ReLU(Σ_k mean(∂y/∂A_k)·A_k)."""
        store = {}
        with self.hooks(), torch.enable_grad():
            self.forward_hook(self.layer, lambda m, i, o: store.__setitem__("a", o))
            score = self.model(x).gather(1, target[:, None]).sum()
            (grad,) = torch.autograd.grad(score, store["a"])
        a, grad = token_grid(store["a"].detach(), self.model), token_grid(grad, self.model)
        cam = (grad.mean((2, 3), keepdim=True) * a).sum(1)
        cam = cam.clamp(min=0) if self.hparams["relu"] else cam
        return upsample(cam, x.shape[-2:])

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self._tokens is None:  # tokens (a ViT block) or a channels-last Swin stage? one image tells
            with torch.no_grad(), self.hooks():
                self.forward_hook(self.layer, lambda m, i, o: setattr(self, "_tokens", token_grid(o, self.model) is not o))
                self.model(x[:1])
        if self._tokens:
            return self._token_gradcam(x, target)
        attr = LayerGradCam(self.model, self.layer).attribute(x, target=target,
                                                             relu_attributions=self.hparams["relu"])
        return LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), "bilinear").squeeze(1)
