"""Any timm classifier, ``timm:<name>`` (``timm:resnet50``, ``timm:deit_small_patch16_224``), built by
``timm.create_model`` with ``num_classes`` outputs for the dataset's channels and image size.

Weights are random unless the user asks for ``pretrained=true`` (``--model-arg pretrained=true``; timm then fetches
them, so it needs network access); tests never do. Bort constrains every Conv/Linear weight of the model
(:func:`xbench.layers.constrained_weights`): a ViT's patch embedding, attention ``qkv``/``proj`` and MLP ``fc1``/``fc2``
and the head; never norms, biases, position embeddings, class tokens or relative-position tables.
"""
from __future__ import annotations

from torch import nn

from ..settings import Setting
from .base import MODELS

_SETTINGS = {
    "pretrained": Setting(False, "load timm's pretrained weights (fetched from the network; off by default)"),
    "drop_path": Setting(0.0, "stochastic depth rate (drop_path_rate; models that have it, e.g. DeiT, Swin)",
                         range="[0, 1)"),
}


@MODELS.register("timm", takes_arg=True, settings=_SETTINGS)
def timm_model(name: str, in_channels: int = 3, in_size: int = 224, num_classes: int = 1000, *, pretrained: bool,
               drop_path: float) -> nn.Module:
    """A timm classifier by name (``timm:resnet50``); ViTs are built for the dataset's image size."""
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name[:4]}*")[:3] if len(name) >= 4 else []
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"timm has no model {name!r}{hint} (see timm.list_models())")
    kwargs = dict(pretrained=pretrained, num_classes=num_classes, in_chans=in_channels)
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    try:  # transformers take the image size (position embeddings, windows); CNNs do not accept it
        model = timm.create_model(name, img_size=in_size, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise ValueError(f"timm:{name}: {err}") from None
        try:
            model = timm.create_model(name, **kwargs)
        except TypeError as err2:
            raise ValueError(f"timm:{name}: {err2}") from None
    info = getattr(model, "feature_info", None) or [{}]
    model.feature_layer = info[-1].get("module", "")  # the last feature stage (CAM, Grad-CAM)
    return model
