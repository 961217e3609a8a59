"""What every dataset offers: two splits, its normalisation, image shape and class count."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from ..registry import Registry
from ..space import InputSpace

DATASETS: Registry = Registry("dataset")


class TensorSplit:
    """Images held in memory as uint8 [N,C,H,W] (pixel space ×255) with integer labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("TensorSplit wants uint8 images shaped [N,C,H,W]")
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, idx: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return self.images[idx].float().div_(255.0), self.labels[idx]

    def iter_pixels(self, order: torch.Tensor, batch_size: int, num_workers: int = 0, device=None):
        """Batches of (pixels, labels); with a CUDA ``device`` the uint8 images move first and convert there."""
        on_gpu = device is not None and torch.device(device).type == "cuda"
        for start in range(0, len(order), batch_size):
            idx = torch.as_tensor(order[start:start + batch_size], dtype=torch.long)
            if on_gpu:
                yield self.images[idx].to(device, non_blocking=True).float().div_(255.0), self.labels[idx]
            else:
                yield self.pixels(idx)


class FolderSplit:
    """A torchvision-style dataset yielding (pixel tensor [C,H,W] in [0,1], label); read lazily from disk."""

    def __init__(self, dataset: torch.utils.data.Dataset, labels: Sequence[int]):
        self.dataset = dataset
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, idx: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self.dataset[int(i)] for i in torch.as_tensor(idx).tolist()]
        return torch.stack([x for x, _ in items]), torch.as_tensor([y for _, y in items], dtype=torch.long)

    def iter_pixels(self, order: torch.Tensor, batch_size: int, num_workers: int = 0, device=None):
        batches = [order[s:s + batch_size].tolist() for s in range(0, len(order), batch_size)]
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, num_workers=num_workers,
                                             pin_memory=device is not None and torch.device(device).type == "cuda")
        yield from loader


Split = TensorSplit | FolderSplit


@dataclass
class Dataset:
    """A dataset as xbench uses it. ``train`` trains, ``heldout`` is never trained on (explain, evaluate)."""

    name: str
    train: Split
    heldout: Split
    space: InputSpace
    shape: tuple[int, int, int]
    num_classes: int
    source: str = ""
    licence: str = ""
    extra: dict = field(default_factory=dict)

    def split(self, which: str) -> Split:
        if which not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', not {which!r}")
        return self.train if which == "train" else self.heldout

    def batches(self, which: str, order: torch.Tensor, batch_size: int, device: torch.device | str = "cpu",
                num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs in model space, labels) on ``device``, in the given order."""
        for pixels, labels in self.split(which).iter_pixels(order, batch_size, num_workers, device):
            pixels = pixels.to(device, non_blocking=True)
            yield self.space.to_input(pixels), labels.to(device, non_blocking=True)

    def inputs(self, which: str, idx: torch.Tensor | Sequence[int], device: torch.device | str = "cpu"):
        """A batch of chosen examples as (inputs in model space, labels) on ``device``."""
        pixels, labels = self.split(which).pixels(idx)
        return self.space.to_input(pixels.to(device)), labels.to(device)

    def info(self) -> dict:
        """Everything a record or a config needs to know about the data."""
        return {"dataset": self.name, "shape": list(self.shape), "num_classes": self.num_classes,
                "n_train": len(self.train), "n_heldout": len(self.heldout), **self.space.as_dict(),
                "source": self.source, "licence": self.licence, **self.extra}
