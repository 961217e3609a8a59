"""xbench import: weights from elsewhere become a run that explain/evaluate/report use; bad input is one line."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from conftest import write_image_folder
from xbench.cli import main
from xbench.data import create_dataset
from xbench.importer import sha256_file
from xbench.models import create_model
from xbench.train import load_run

DATA = "fake:3x32x32"


def _weights(tmp_path, name="tv:resnet18", wrap=None, classes=10, shape=(3, 32, 32)):
    torch.manual_seed(1)
    net = create_model(name, shape, classes)
    state = net.state_dict()
    if wrap == "ddp":
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90}
    path = tmp_path / "w.pth"
    torch.save(state, path)
    return net, path


def test_import_makes_a_run_that_explain_evaluate_and_report_use(tmp_path, capsys):
    net, path = _weights(tmp_path, wrap="ddp")
    out = tmp_path / "ckpt"
    assert main(["import", "--model", "tv:resnet18", "--weights", str(path), "--data", DATA, "--out", str(out),
                 "--device", "cpu"]) == 0
    (run,) = list(out.iterdir())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["source"]["weights_sha256"] == sha256_file(path)
    assert cfg["source"]["layout"].startswith("checkpoint['state_dict']")
    assert cfg["data_info"]["dataset"] == DATA and cfg["data_info"]["mean"] == [0.5] * 3
    data = create_dataset(DATA)
    net.eval()
    with torch.no_grad():  # held-out accuracy, by a loop of our own
        x, y = data.inputs("heldout", torch.arange(len(data.heldout)))
        acc = (net(x).argmax(1) == y).float().mean().item()
    assert cfg["heldout_acc"] == pytest.approx(acc)
    model, _, loaded = load_run(run)
    for (k, a), b in zip(model.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), k
    assert main(["evaluate", "--runs", str(out / "*"), "--interp", "cam", "--metric", "deletion", "--n", "4",
                 "--out", str(tmp_path / "rep"), "--device", "cpu", "--quiet"]) == 0
    rec = json.loads((tmp_path / "rep" / "results.jsonl").read_text().splitlines()[0])
    assert rec["optimizer"] == "imported" and rec["heldout_acc"] == pytest.approx(acc)
    assert main(["report", "--out", str(tmp_path / "rep"), "--no-figures", "--quiet"]) == 0


def _fails(args, capsys, match):
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_weights_of_another_architecture_name_the_keys(tmp_path, capsys):
    _, path = _weights(tmp_path, name="tv:resnet34")
    out = tmp_path / "ckpt"
    _fails(["import", "--model", "tv:resnet18", "--weights", str(path), "--data", DATA, "--out", str(out)], capsys,
           "unexpected: layer1.2.conv1.weight")
    assert not out.exists() or not any(out.iterdir())


class _Boom:
    def __reduce__(self):
        return (open, ("MARKER", "w"))


def test_an_arbitrary_pickle_is_refused_and_not_executed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"fc.weight": _Boom()}))
    _fails(["import", "--model", "tv:resnet18", "--weights", str(path), "--data", DATA, "--out", "ckpt"], capsys,
           "weights_only=True")
    assert not (tmp_path / "MARKER").exists() and not (tmp_path / "ckpt").exists()
    torch.save({"optimizer": {"lr": 0.1}}, path)
    _fails(["import", "--model", "tv:resnet18", "--weights", str(path), "--data", DATA, "--out", "ckpt"], capsys,
           "not a state_dict")


def test_a_data_folder_with_other_classes_than_the_head(tmp_path, capsys):
    write_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), n_per_class=2)
    _, path = _weights(tmp_path, classes=10)
    _fails(["import", "--model", "tv:resnet18", "--weights", str(path), "--data", f"imagefolder:{tmp_path / 'imgs'}",
            "--out", str(tmp_path / "ckpt")], capsys, "has 3 classes but the weights' head (fc) has 10 outputs")
    assert not (tmp_path / "ckpt").exists()
