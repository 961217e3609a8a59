"""Datasets: the shipped mnist10k, and the real loaders on files written in the real formats (no network)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import write_cifar_folder, write_idx, write_image_folder, write_mnist_folder
from xbench.data import DATASETS, create_dataset, read_idx
from xbench.data import sources
from xbench.errors import XbenchError
from xbench.space import InputSpace


def test_mnist10k_matches_its_readme():
    ds = create_dataset("mnist10k")
    assert (len(ds.train), len(ds.heldout)) == (8000, 2000)
    images = torch.cat([ds.train.images, ds.heldout.images])
    labels = torch.cat([ds.train.labels, ds.heldout.labels])
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert abs(images.double().mean().item() - 33.79) < 0.01
    assert torch.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # a fixed split, the same at every load
    again = create_dataset("mnist10k")
    assert torch.equal(again.heldout.labels, ds.heldout.labels) and torch.equal(again.train.images, ds.train.images)
    assert ds.shape == (1, 28, 28) and ds.num_classes == 10 and ds.licence == "CC BY-SA 3.0"


def test_mnist10k_checksum_is_enforced(monkeypatch):
    monkeypatch.setitem(sources.MNIST10K_FILES, "t10k-labels-idx1-ubyte.gz", "0" * 64)
    with pytest.raises(XbenchError, match="sha256"):
        create_dataset("mnist10k")


def test_idx_parser_round_trip_and_errors(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", arr, gz=False)
    assert np.array_equal(read_idx((tmp_path / "a.idx").read_bytes()), arr)
    with pytest.raises(XbenchError, match="magic"):
        read_idx(b"\x01\x02\x03\x04")
    with pytest.raises(XbenchError, match="truncated"):
        read_idx((tmp_path / "a.idx").read_bytes()[:-3])


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_mnist_reads_idx_gz(tmp_path, name, folder):
    arrays = write_mnist_folder(tmp_path, folder)
    ds = create_dataset(name, root=str(tmp_path))
    assert (len(ds.train), len(ds.heldout)) == (30, 12)
    assert torch.equal(ds.train.images[:, 0], torch.from_numpy(arrays["train"][0]))
    assert ds.heldout.labels.tolist() == arrays["t10k"][1].tolist()
    x, y = ds.inputs("heldout", [0, 1])
    expect = (torch.from_numpy(arrays["t10k"][0][:2]).float() / 255 - ds.space.mean[0]) / ds.space.std[0]
    assert torch.allclose(x[:, 0], expect)


def test_cifar10_reads_python_batches(tmp_path):
    arrays = write_cifar_folder(tmp_path)
    ds = create_dataset("cifar10", root=str(tmp_path))
    assert (len(ds.train), len(ds.heldout)) == (30, 6) and ds.shape == (3, 32, 32)
    first = torch.from_numpy(arrays["data_batch_1"][0][0].reshape(3, 32, 32))
    assert torch.equal(ds.train.images[0], first)
    assert ds.heldout.labels.tolist() == arrays["test_batch"][1]


def test_missing_files_name_mnist10k(tmp_path):
    for name in ("mnist", "fashion-mnist", "cifar10"):
        with pytest.raises(XbenchError, match="mnist10k"):
            create_dataset(name, root=str(tmp_path / "empty"))


def test_imagefolder_train_val_and_single_folder(tmp_path):
    write_image_folder(tmp_path / "tv" / "train")
    write_image_folder(tmp_path / "tv" / "val", n_per_class=2)
    ds = create_dataset(f"imagefolder:{tmp_path / 'tv'}")
    assert ds.shape == (3, 224, 224) and ds.num_classes == 2 and (len(ds.train), len(ds.heldout)) == (6, 4)
    x, y = ds.inputs("heldout", [0, 3])
    assert x.shape == (2, 3, 224, 224) and y.tolist() == [0, 1]
    batches = list(ds.batches("train", torch.arange(6), 4))
    assert [b[0].shape[0] for b in batches] == [4, 2]
    write_image_folder(tmp_path / "flat", n_per_class=5)
    flat = create_dataset(f"imagefolder:{tmp_path / 'flat'}")
    assert len(flat.train) + len(flat.heldout) == 10 and len(flat.heldout) == 2
    with pytest.raises(XbenchError):
        create_dataset(f"imagefolder:{tmp_path / 'nope'}")


def _build_every_dataset(tmp_path):
    write_mnist_folder(tmp_path, "MNIST")
    write_mnist_folder(tmp_path, "FashionMNIST")
    write_cifar_folder(tmp_path)
    write_image_folder(tmp_path / "folder")
    specs = {"mnist10k": "mnist10k", "mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": "cifar10",
             "imagefolder": f"imagefolder:{tmp_path / 'folder'}", "fake": "fake:3x16x16"}
    assert set(specs) == set(DATASETS.list()), "a new dataset needs a line here"
    return {k: create_dataset(v, root=str(tmp_path)) for k, v in specs.items()}


def test_every_dataset_records_its_space_shape_and_classes(tmp_path):
    for name, ds in _build_every_dataset(tmp_path).items():
        c, h, w = ds.shape
        assert len(ds.space.mean) == len(ds.space.std) == c, name
        info = ds.info()
        assert info["shape"] == [c, h, w] and info["num_classes"] == ds.num_classes and info["source"], name
        x, y = ds.inputs("heldout", [0])
        assert x.shape == (1, c, h, w) and x.dtype == torch.float32 and 0 <= int(y) < ds.num_classes, name
        pixels = ds.space.to_pixels(x)
        assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6, name


def test_space_round_trip_and_constants():
    space = InputSpace((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    p = torch.rand(2, 3, 5, 5)
    assert torch.allclose(space.to_pixels(space.to_input(p)), p, atol=1e-6)
    black = space.constant(0.0, p)
    assert torch.allclose(black[0, :, 0, 0], torch.tensor([-2.5, -1.6, -1.0]))
    assert space.input_range(p) == pytest.approx(5.0)


def test_inputs_per_pass_caps_count_and_values():
    from xbench.space import PASS_ELEMENTS, inputs_per_pass

    assert inputs_per_pass(2048, (1, 28, 28)) == 2048  # small inputs: the count cap
    assert inputs_per_pass(2048, (3, 224, 224)) == PASS_ELEMENTS // (3 * 224 * 224)  # large inputs: the value cap
    assert inputs_per_pass(2048, (3, 10_000, 10_000)) == 1  # never zero
    from xbench.space import CPU_PASS_ELEMENTS

    cpu = torch.device("cpu")
    assert inputs_per_pass(2048, (3, 224, 224), cpu) == CPU_PASS_ELEMENTS // (3 * 224 * 224)  # smaller on a CPU
    assert inputs_per_pass(2048, (1, 28, 28), cpu) == 2048
    assert inputs_per_pass(2048, (3, 224, 224), torch.device("meta")) == PASS_ELEMENTS // (3 * 224 * 224)
