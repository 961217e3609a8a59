"""Per-image training augmentation with timm (``augment`` in a recipe): the train split as PIL images through
``timm.data.create_transform`` (and ``AugMixDataset`` for augmentation splits), read by DataLoader workers.

Every dataset works: in-memory splits become PIL images, image folders are read from disk again (their fixed
resize-and-crop transform is bypassed for training; held-out data keep it).
"""
from __future__ import annotations

from typing import Callable

import torch

from .base import Dataset, FolderSplit, TensorSplit


def pil_image(split, i: int):
    """Example ``i`` of a split as a PIL image (RGB, or L for one channel)."""
    from PIL import Image

    if isinstance(split, TensorSplit):
        arr = split.images[i]
        return Image.fromarray(arr[0].numpy(), "L") if arr.shape[0] == 1 else Image.fromarray(
            arr.permute(1, 2, 0).numpy(), "RGB")
    ds, idx = split.dataset, i
    if isinstance(ds, torch.utils.data.Subset):
        ds, idx = ds.dataset, ds.indices[i]
    return ds.loader(ds.samples[idx][0]).convert("RGB")


class TrainImages(torch.utils.data.Dataset):
    """(transform(PIL image), label) for the train split; ``transform`` is settable (AugMixDataset sets it)."""

    def __init__(self, split: TensorSplit | FolderSplit, transform: Callable | None):
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        img = pil_image(self.split, int(i))
        return (self.transform(img) if self.transform else img), int(self.split.labels[int(i)])


def augmented_train(data: Dataset, rs: dict) -> torch.utils.data.Dataset:
    """The train split through timm's training transform; items are (view, label) or ((clean, aug, ...), label)."""
    from timm.data import AugMixDataset, create_transform

    splits = rs["aug_splits"]
    tf = create_transform(tuple(data.shape), is_training=True, auto_augment=rs["aa"] or None,
                          color_jitter=rs["color_jitter"] or None, re_prob=rs["reprob"],
                          re_num_splits=splits if splits > 1 else 0, mean=tuple(data.space.mean),
                          std=tuple(data.space.std), separate=splits > 1)
    images = TrainImages(data.train, tf)
    return AugMixDataset(images, num_splits=splits) if splits > 1 else images


def collate(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch; augmentation splits are concatenated split by split (clean first), labels repeated."""
    xs, ys = zip(*batch)
    y = torch.as_tensor(ys, dtype=torch.long)
    if isinstance(xs[0], (tuple, list)):
        views = [torch.stack(v) for v in zip(*xs)]
        return torch.cat(views), y.repeat(len(views))
    return torch.stack(xs), y

