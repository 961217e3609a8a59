"""Training on an ImageNet-style folder of generated JPEGs (train/ and val/, class sub-folders) with DataLoader
workers, plain and through a recipe's timm augmentation; dataset settings are part of a run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xbench.train import load_run, train


def write_jpeg_folder(root: Path, classes: int = 3, per_class: dict | None = None, side: int = 20, seed: int = 0):
    """ImageNet's layout: root/train/<class>/*.JPEG and root/val/<class>/*.JPEG; each class a colour of its own."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (per_class or {"train": 6, "val": 2}).items():
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 60, size=(side, side + 4, 3)).astype(np.uint8)
                arr[..., c % 3] += 150
                Image.fromarray(arr).save(folder / f"img_{i}.JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_jpeg_folder(tmp_path_factory.mktemp("imagenet"))


def test_imagefolder_trains_with_workers_and_records_its_size(folder, tmp_path):
    kw = dict(model="lenet", data=f"imagefolder:{folder}", opt="sgd", seeds=[0], epochs=1, batch_size=6,
              progress=False, data_kwargs={"size": 16})
    runs = train(out=tmp_path / "w", workers=2, **kw)
    same = train(out=tmp_path / "0", **kw)  # workers change speed, never the run
    assert runs[0]["run_id"] == same[0]["run_id"]
    a, b = (torch.load(Path(r["run_dir"]) / "model.pt", weights_only=True)["model"] for r in (runs[0], same[0]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = json.loads((Path(runs[0]["run_dir"]) / "config.json").read_text())
    assert cfg["data_kwargs"] == {"size": 16} and cfg["data_info"]["shape"] == [3, 16, 16]
    assert cfg["data_info"]["n_train"] == 18 and cfg["data_info"]["n_heldout"] == 6
    model, data, _ = load_run(runs[0]["run_dir"])  # explain and evaluate rebuild the data at the same size
    assert data.shape == (3, 16, 16) and model(data.inputs("heldout", [0, 1])[0]).shape == (2, 3)


def test_imagefolder_through_a_recipes_timm_augmentation(folder, tmp_path):
    runs = train(model="lenet", data=f"imagefolder:{folder}", opt="bort-s", seeds=[0], epochs=1, batch_size=6,
                 progress=False, recipe="paper-imagenet-cnn", workers=2, data_kwargs={"size": 16}, out=tmp_path)
    log = (Path(runs[0]["run_dir"]) / "train_log.csv").read_text().splitlines()
    assert runs[0]["diverged_at"] is None and float(log[1].split(",")[1]) > 0
