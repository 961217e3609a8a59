"""The registered datasets: mnist10k (shipped), mnist, fashion-mnist, cifar10 (torchvision), imagefolder:<path>, fake.

Every factory takes ``root`` (where torchvision datasets live) and ``download``; datasets that need neither
ignore them. Normalisation constants are the usual per-dataset channel statistics.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..errors import XbenchError
from ..settings import Setting
from ..space import InputSpace
from .base import DATASETS, Dataset, FolderSplit, TensorSplit

MNIST_SPACE = InputSpace((0.1307,), (0.3081,))
FASHION_SPACE = InputSpace((0.2860,), (0.3530,))
CIFAR10_SPACE = InputSpace((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
IMAGENET_SPACE = InputSpace((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

MNIST10K_FILES = {  # sha256 of the shipped .gz files (../shared/data/mnist/README.md)
    "t10k-images-idx3-ubyte.gz": "ba05d2d6e06f59dd97d2d5378250478bb5c9b64296a5c2681700569121e3a2d7",
    "t10k-labels-idx1-ubyte.gz": "94088eab8a64f51a9b34cc9716f54b6548ef8b2fd16ada6d1575091b933dbf4b",
}
MNIST10K_SPLIT_SEED = 0  # fixed: the 8,000 / 2,000 split never depends on a training seed
DEFAULT_ROOT = "data"


def read_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (LeCun's MNIST format): magic 0x0000 <dtype 0x08=uint8> <ndim>, big-endian sizes."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise XbenchError("not an IDX uint8 file (bad magic number)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise XbenchError(f"IDX file is truncated: {data.size} values for shape {tuple(dims)}")
    return data.reshape(tuple(dims))


def _seeded_split(n: int, n_train: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n_train].sort().values, perm[n_train:].sort().values


@DATASETS.register("mnist10k")
def mnist10k(root: str | None = None, download: bool = False) -> Dataset:
    """The official MNIST test split shipped with xbench, 8,000 train / 2,000 held out (fixed split)."""
    folder = resources.files("xbench.data") / "files"
    arrays = {}
    for name, digest in MNIST10K_FILES.items():
        raw = (folder / name).read_bytes()
        if hashlib.sha256(raw).hexdigest() != digest:
            raise XbenchError(f"mnist10k: {name} fails its sha256 check; reinstall xbench")
        arrays[name] = read_idx(gzip.decompress(raw))
    images = torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"].copy()).unsqueeze(1)
    labels = torch.from_numpy(arrays["t10k-labels-idx1-ubyte.gz"].astype(np.int64))
    tr, ho = _seeded_split(len(labels), 8000, MNIST10K_SPLIT_SEED)
    return Dataset("mnist10k", TensorSplit(images[tr], labels[tr]), TensorSplit(images[ho], labels[ho]),
                   MNIST_SPACE, (1, 28, 28), 10,
                   source="MNIST test split (LeCun, Cortes, Burges), shipped in xbench/data/files",
                   licence="CC BY-SA 3.0", extra={"split_seed": MNIST10K_SPLIT_SEED})


def _missing(name: str, root: str, why: str) -> XbenchError:
    return XbenchError(f"{name}: {why} under {root!r} (pass --data-root to its folder, or --download with network "
                       f"access; the shipped dataset 'mnist10k' needs neither)")


def _extract_gz(raw_folder: Path) -> None:
    """torchvision reads the extracted IDX files; users often only have the .gz archives."""
    if raw_folder.is_dir():
        for gz in raw_folder.glob("*.gz"):
            target = gz.with_suffix("")
            if not target.exists():
                tmp = target.with_name(target.name + ".tmp")
                with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(tmp, target)


def _torchvision_mnist(cls_name: str, name: str, space: InputSpace, root: str | None, download: bool) -> Dataset:
    import torchvision

    root = root or DEFAULT_ROOT
    cls = getattr(torchvision.datasets, cls_name)
    _extract_gz(Path(root) / cls_name / "raw")
    try:
        splits = [cls(root, train=train, download=download) for train in (True, False)]
    except RuntimeError as err:  # "Dataset not found. You can use download=True to download it"
        raise _missing(name, root, "files not found") from err
    except OSError as err:  # no network, or an unwritable root
        raise _missing(name, root, f"download failed ({type(err).__name__})") from err
    tr, ho = (TensorSplit(s.data.unsqueeze(1).to(torch.uint8), torch.as_tensor(s.targets)) for s in splits)
    return Dataset(name, tr, ho, space, (1, 28, 28), 10, source=f"torchvision.datasets.{cls_name} at {root}",
                   licence="CC BY-SA 3.0" if name == "mnist" else "MIT (Zalando Research)")


@DATASETS.register("mnist")
def mnist(root: str | None = None, download: bool = False) -> Dataset:
    """MNIST, 60,000 train / 10,000 test, through torchvision (--data-root, --download)."""
    return _torchvision_mnist("MNIST", "mnist", MNIST_SPACE, root, download)


@DATASETS.register("fashion-mnist")
def fashion_mnist(root: str | None = None, download: bool = False) -> Dataset:
    """Fashion-MNIST, 60,000 train / 10,000 test, through torchvision (--data-root, --download)."""
    return _torchvision_mnist("FashionMNIST", "fashion-mnist", FASHION_SPACE, root, download)


@DATASETS.register("cifar10")
def cifar10(root: str | None = None, download: bool = False) -> Dataset:
    """CIFAR-10, 50,000 train / 10,000 test, through torchvision (--data-root, --download)."""
    import torchvision

    base = torchvision.datasets.CIFAR10

    class _CIFAR10(base):
        # torchvision md5-checks the 170 MB of batches on every load; presence is enough here (md5 None means
        # "exists"), the pickles are validated by parsing them.
        train_list = [[f, None] for f, _ in base.train_list]
        test_list = [[f, None] for f, _ in base.test_list]
        meta = {**base.meta, "md5": None}

    root = root or DEFAULT_ROOT
    try:
        splits = [_CIFAR10(root, train=train, download=download) for train in (True, False)]
    except RuntimeError as err:
        raise _missing("cifar10", root, "files not found") from err
    except OSError as err:
        raise _missing("cifar10", root, f"download failed ({type(err).__name__})") from err
    tr, ho = (TensorSplit(torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(s.targets))
              for s in splits)
    return Dataset("cifar10", tr, ho, CIFAR10_SPACE, (3, 32, 32), 10, source=f"torchvision.datasets.CIFAR10 at {root}",
                   licence="MIT-style (Krizhevsky, 2009; no explicit licence)")


@DATASETS.register("imagefolder", takes_arg=True, settings={
    "size": Setting(224, "side of the centre crop (images are resized to 8/7 of it first)", range="[8, inf)"),
    "heldout_fraction": Setting(0.2, "held-out share when the folder has no train/ and val/", range="(0, 1)")})
def imagefolder(path: str, root: str | None = None, download: bool = False, *, size: int,
                heldout_fraction: float) -> Dataset:
    """An ImageNet-style folder of class sub-folders (train/ and val/ if present), resized to 256, 224 centre crops."""
    import torchvision
    from torchvision import transforms

    base = Path(path)
    if not base.is_dir():
        raise XbenchError(f"imagefolder: {path!r} is not a folder")
    tf = transforms.Compose([transforms.Resize(size * 8 // 7), transforms.CenterCrop(size), transforms.ToTensor(),
                             transforms.Lambda(lambda t: t.expand(3, -1, -1) if t.shape[0] == 1 else t[:3])])
    try:
        if (base / "train").is_dir() and (base / "val").is_dir():
            tr = torchvision.datasets.ImageFolder(str(base / "train"), transform=tf)
            ho = torchvision.datasets.ImageFolder(str(base / "val"), transform=tf)
            if tr.classes != ho.classes:
                raise XbenchError(f"imagefolder: train/ and val/ under {path!r} have different classes")
            train = FolderSplit(tr, tr.targets)
            heldout = FolderSplit(ho, ho.targets)
            classes = tr.classes
        else:
            full = torchvision.datasets.ImageFolder(str(base), transform=tf)
            n_ho = max(1, int(round(len(full) * heldout_fraction)))
            tr_idx, ho_idx = _seeded_split(len(full), len(full) - n_ho, MNIST10K_SPLIT_SEED)
            targets = torch.as_tensor(full.targets)
            train = FolderSplit(torch.utils.data.Subset(full, tr_idx.tolist()), targets[tr_idx].tolist())
            heldout = FolderSplit(torch.utils.data.Subset(full, ho_idx.tolist()), targets[ho_idx].tolist())
            classes = full.classes
    except (FileNotFoundError, OSError) as err:
        raise XbenchError(f"imagefolder: cannot read {path!r}: {err}") from err
    return Dataset(f"imagefolder:{path}", train, heldout, IMAGENET_SPACE, (3, size, size), len(classes),
                   source=f"image folder {path}", licence="as the folder's owner states",
                   extra={"classes": list(classes)})


@DATASETS.register("fake", takes_arg=True, settings={
    "n_train": Setting(512, "training images", range="[1, inf)"),
    "n_heldout": Setting(128, "held-out images", range="[1, inf)"),
    "num_classes": Setting(10, "classes", range="[2, inf)"),
    "seed": Setting(0, "generator seed", range="[0, inf)")})
def fake(spec: str = "1x28x28", root: str | None = None, download: bool = False, *, n_train: int, n_heldout: int,
         num_classes: int, seed: int) -> Dataset:
    """Generated, learnable data for tests: class-specific bright squares on noise; ``fake:CxHxW`` sets the shape."""
    try:
        c, h, w = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise XbenchError(f"fake: shape must look like 1x28x28, not {spec!r}") from None
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_heldout
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.rand(n, c, h, w, generator=g) * 0.3
    side = max(2, min(h, w) // 4)
    for k in range(num_classes):  # each class lights a square at its own place
        top = (k * 7919) % max(1, h - side)
        left = (k * 104729) % max(1, w - side)
        sel = labels == k
        images[sel, :, top:top + side, left:left + side] += 0.7
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    space = InputSpace((0.5,) * c, (0.5,) * c)
    return Dataset(f"fake:{c}x{h}x{w}", TensorSplit(images[:n_train], labels[:n_train]),
                   TensorSplit(images[n_train:], labels[n_train:]), space, (c, h, w), num_classes,
                   source="generated by xbench (seeded)", licence="none needed")
