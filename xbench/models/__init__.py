"""Models: ``create_model("lenet", in_shape=(1, 28, 28), num_classes=10)``; each names its feature layer."""
from __future__ import annotations

from torch import nn

from ..errors import XbenchError
from .base import CHAIN_LAYERS, MODELS, ChainModel
from . import acnn, lenet, mlp, timm_models, tv  # noqa: F401  (registers the models)


def create_model(name: str, in_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10,
                 **kwargs) -> nn.Module:
    """Build a registered model for inputs shaped ``in_shape`` (C, H, W); extra kwargs go to the model (width=...)."""
    c, h, w = in_shape
    try:
        return MODELS.create(name, in_channels=c, in_size=h, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as err:
        raise XbenchError(f"model {name!r}: {err}") from err


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.list(pattern)


__all__ = ["MODELS", "ChainModel", "CHAIN_LAYERS", "create_model", "list_models"]
