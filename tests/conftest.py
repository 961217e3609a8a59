"""Shared fixtures: small real-format dataset files, tiny trained runs, CPU determinism."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    """Write an IDX (LeCun) uint8 file, optionally gzipped, the format torchvision and mnist10k read."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)


def write_mnist_folder(root: Path, folder: str = "MNIST", n_train: int = 30, n_test: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(root / folder / "raw" / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / folder / "raw" / f"{split}-labels-idx1-ubyte.gz", labels)
        arrays[split] = (images, labels)
    return arrays


def write_cifar_folder(root: Path, n_per_batch: int = 6, seed: int = 0):
    """CIFAR-10 python batches (pickled dicts with 'data' N×3072 uint8 and 'labels')."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        arrays[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": n_per_batch}, f)
    return arrays


def write_image_folder(root: Path, classes=("cat", "dog"), n_per_class: int = 3, size=(40, 30), seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A lenet pair trained briefly on mnist10k (2 epochs, batch 64, momentum): (out folder, [sgd, bort-s])."""
    from xbench.train import train

    out = tmp_path_factory.mktemp("ckpt")
    runs = train(model="lenet", data="mnist10k", opt="sgd,bort-s", seeds=[0], epochs=2, out=out, progress=False,
                 batch_size=64, lr=0.05, momentum=0.9)
    return out, runs
