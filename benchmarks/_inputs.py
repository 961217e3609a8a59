"""What several benchmark scripts start from (shared, so their inputs stay the same): the common flags, mnist10k
held-out digits with seeded uniform maps, and random 3×224² images with maps in the ImageNet input space."""
from __future__ import annotations

import argparse

import torch

from xbench.data import create_dataset
from xbench.space import InputSpace

IMAGENET = InputSpace((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def parser(doc: str, images: int) -> argparse.ArgumentParser:
    """--device, --images (default ``images``) and --no-quantus; the description is the script's first doc line."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=images)
    ap.add_argument("--no-quantus", action="store_true")
    return ap


def digits(n: int, device):
    """(mnist10k, its first ``n`` held-out digits, their labels, uniform maps [n, 28, 28] drawn with seed 0)."""
    torch.manual_seed(0)
    data = create_dataset("mnist10k")
    x, y = data.inputs("heldout", range(n), device)
    maps = torch.rand(len(x), 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    return data, x, y, maps


def imagenet_sized(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uniform-noise 3×224² images in IMAGENET's input space (seed 1) and uniform maps (seed 2)."""
    x = IMAGENET.to_input(torch.rand(n, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device))
    return x, torch.rand(n, 224, 224, generator=torch.Generator().manual_seed(2)).to(device)
