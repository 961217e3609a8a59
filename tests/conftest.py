"""Shared fixtures: small real-format dataset files, tiny trained runs, CPU determinism."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn


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


def pair_layer(m, p, n, relu="max", maxpool="dc"):
    """One layer of the DC split written out on (a⁺, a⁻), as in extensions.md §1.1 (tests of dc.py and split_*)."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        wp, wn = m.weight.clamp(min=0), (-m.weight).clamp(min=0)
        bp, bn = m.bias.clamp(min=0), (-m.bias).clamp(min=0)
        lin = (lambda a, w, b: F.linear(a, w, b)) if isinstance(m, nn.Linear) else (
            lambda a, w, b: F.conv2d(a, w, b, m.stride, m.padding))
        return lin(p, wp, bp) + lin(n, wn, None), lin(p, wn, bn) + lin(n, wp, None)
    if isinstance(m, nn.ReLU):
        hi, lo = torch.maximum(p, n), torch.minimum(p, n)
        return {"max": (hi, n), "min": (p, lo), "half": ((hi + p) / 2, (n + lo) / 2)}[relu]
    if isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        if isinstance(m, nn.MaxPool2d):
            k, st = m.kernel_size, m.stride
        else:
            k = st = p.shape[-1]  # global (output 1)
        windows = [F.unfold(t, k, stride=st) for t in (p, n)]  # [B, C·k·k, L]
        b, c = p.shape[:2]
        wp, wn = (w.view(b, c, -1, w.shape[-1]) for w in windows)
        side = (p.shape[-1] - k) // st + 1
        # the window's winner i: the first argmax of a = a⁺ − a⁻, as max_pool2d breaks ties (after a ReLU, windows of
        # zeros tie, and the subgradient follows the winner)
        idx = (wp - wn).argmax(2, keepdim=True)
        outp, outn = wp.gather(2, idx).squeeze(2), wn.gather(2, idx).squeeze(2)
        if maxpool == "dc":  # a⁺′ = max_i (a_i⁺ + Σ_{j≠i} a_j⁻) = a_winner⁺ + Σ_j a_j⁻ − a_winner⁻, a⁻′ = Σ_j a_j⁻
            total = wn.sum(2)
            outp, outn = outp + total - outn, total
        return outp.view(b, c, side, side), outn.view(b, c, side, side)
    if isinstance(m, nn.Flatten):
        return p.flatten(1), n.flatten(1)
    return p, n  # dropout in eval
