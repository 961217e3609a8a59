"""Datasets: ``create_dataset("mnist10k")``, ``list_datasets()``; each records its normalisation and shape."""
from __future__ import annotations

from .base import DATASETS, Dataset, FolderSplit, TensorSplit
from . import sources  # noqa: F401  (registers the datasets)
from .sources import read_idx


def create_dataset(name: str, root: str | None = None, download: bool = False, **settings) -> Dataset:
    """Load a registered dataset by name (``mnist10k``, ``cifar10``, ``imagefolder:/path``, ``fake:3x32x32``)."""
    return DATASETS.create(name, root=root, download=download, **settings)


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.list(pattern)


__all__ = ["DATASETS", "Dataset", "TensorSplit", "FolderSplit", "create_dataset", "list_datasets", "read_idx"]
