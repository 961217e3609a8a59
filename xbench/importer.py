"""``xbench import``: weights trained elsewhere become a run folder that explain, evaluate and report treat like a
trained one.

    import_model("tv:resnet18", "resnet18.pth", "imagefolder:/data/val", out="checkpoints")

The weights are a state_dict file, a checkpoint holding one under a known key (``state_dict``, ``model``,
``model_state_dict``, ``net``, ``module``; an xbench checkpoint too; DDP's ``module.`` prefix is dropped), or
``pretrained`` (the library's default weights, where its hub is reachable). Every file is read with
``torch.load(weights_only=True)``: a pickle of arbitrary objects is refused before any of it runs. Everything is
checked (weights fit the model, the data's class count fits the head) before anything is written; the run folder
then gets ``config.json`` (source, weights sha256, dataset and input space, held-out accuracy measured here) and
``model.pt`` in xbench's checkpoint format (one epoch done, no optimizer state).
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .checkpoints import CHECKPOINT_NAME, FORMAT, save_checkpoint
from .data import DATASETS, create_dataset
from .errors import XbenchError
from .fileio import atomic_write_json, check_writable
from .models import MODELS, create_model
from .train import accuracy, resolve_device

STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, layout) from a weights file, loaded with ``weights_only=True``; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise XbenchError(f"import: no weights file at {str(path)!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the safe unpickler refuses foreign globals (nothing of the pickle runs) or torn files
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise XbenchError(f"import: {str(path)!r} is not a weights file torch loads with weights_only=True "
                          f"(refused, nothing executed: {reason})") from None
    layout = "state_dict"
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        obj, layout = obj["model"], "xbench checkpoint"
    elif isinstance(obj, dict) and not _is_state(obj):
        key = next((k for k in STATE_KEYS if isinstance(obj.get(k), dict) and _is_state(obj[k])), None)
        if key is None:
            raise XbenchError(f"import: {str(path)!r} holds a {type(obj).__name__} with keys "
                              f"{', '.join(map(str, list(obj)[:6]))}, not a state_dict or a checkpoint with one "
                              f"under {', '.join(STATE_KEYS)}")
        obj, layout = obj[key], f"checkpoint[{key!r}]"
    if not isinstance(obj, dict) or not _is_state(obj):
        raise XbenchError(f"import: {str(path)!r} holds a {type(obj).__name__}, not a state_dict")
    if obj and all(k.startswith("module.") for k in obj):
        obj, layout = {k[len("module."):]: v for k, v in obj.items()}, layout + " (DDP 'module.' prefix dropped)"
    return dict(obj), layout


def _is_state(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def _head(model: nn.Module) -> str:
    """Name of the classifier: the last Linear (or 1×1 Conv) module in registration order."""
    heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)
             or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))]
    return heads[-1] if heads else ""


def check_fit(model: nn.Module, state: dict[str, torch.Tensor], num_classes: int, data: str) -> None:
    """Raise one line naming the first missing/unexpected/mis-shaped keys, or the class-count mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    head = _head(model)
    if not missing and not unexpected and shaped and all(k.startswith(head + ".") for k in shaped):
        outputs = state[f"{head}.weight"].shape[0] if f"{head}.weight" in state else state[shaped[0]].shape[0]
        raise XbenchError(f"import: {data} has {num_classes} classes but the weights' head ({head}) has {outputs} "
                          f"outputs")
    if missing or unexpected or shaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shaped)):
            if keys:
                more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                parts.append(f"{label}: {', '.join(keys[:3])}{more}")
        raise XbenchError(f"import: the weights do not fit {type(model).__name__}: {'; '.join(parts)}")


def pretrained_state(model: str) -> tuple[dict[str, torch.Tensor], str, str | None]:
    """(state_dict, tag, sha256 of the cached file) of a library's default weights; needs its hub reachable."""
    family, _, name = model.partition(":")
    if family == "timm":
        import timm

        try:
            return timm.create_model(name, pretrained=True).state_dict(), f"timm {name} pretrained", None
        except Exception as err:  # hub unreachable, unknown tag: one line
            raise XbenchError(f"import: cannot fetch timm's pretrained {name} ({type(err).__name__})") from None
    if family != "tv":
        raise XbenchError(f"import: --weights pretrained works for tv:<name> and timm:<name> models, not "
                          f"{model!r}; give a file")
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        state = weights.get_state_dict(progress=False)
    except Exception as err:  # network, missing entry: one line
        raise XbenchError(f"import: cannot fetch torchvision's pretrained {name} ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:120] if str(err) else ''})") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    return state, f"torchvision {weights}", sha256_file(cached) if cached.is_file() else None


def run_id_of(model: str, data: str, sha: str) -> str:
    name = f"{model}-{data}-imported-{sha[:12]}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def import_model(model: str, weights: str, data: str, out: str | Path = "checkpoints", device: str = "auto",
                 data_root: str | None = None, model_kwargs: dict[str, Any] | None = None,
                 batch_size: int = 256) -> dict[str, Any]:
    """Check everything, measure held-out accuracy, then write ``<out>/<run_id>/``; returns the run's summary."""
    MODELS.get(model)
    DATASETS.get(data)
    model_kwargs = dict(model_kwargs or {})
    check_writable(out)
    dev = resolve_device(device)
    dataset = create_dataset(data, root=data_root)
    net = create_model(model, dataset.shape, dataset.num_classes, **model_kwargs)
    if weights == "pretrained":
        state, layout, sha = pretrained_state(model)
        source = {"kind": "pretrained", "weights": layout}
    else:
        state, layout = read_weights(weights)
        sha = sha256_file(weights)
        source = {"kind": "file", "weights": str(Path(weights).resolve()), "layout": layout}
    check_fit(net, state, dataset.num_classes, data)
    net.load_state_dict(state)
    net.to(dev).eval()
    acc = accuracy(net, dataset, "heldout", dev, batch_size)
    digest = sha or hashlib.sha256(json.dumps(sorted(state)).encode()).hexdigest()
    run_id = run_id_of(model, data, digest)
    meta = {"run_id": run_id, "pair_id": run_id, "model": model, "data": data, "opt": "imported", "seed": 0,
            "epochs": 1, "model_kwargs": model_kwargs, "method": "erm", "method_kwargs": {}, "dbort": None,
            "source": {**source, "weights_sha256": sha}, "heldout_acc": acc, "data_info": dataset.info(),
            "xbench_version": __version__}
    run_dir = Path(out) / run_id
    atomic_write_json(run_dir / "config.json", meta)
    log = [{"epoch": 1, "loss": None, "train_acc": None, "heldout_acc": acc, "ortho_error": None, "seconds": 0.0}]
    save_checkpoint(run_dir / CHECKPOINT_NAME, epoch=1, model=net, optimizer=None, config=meta, log=log)
    return {"run_id": run_id, "run_dir": str(run_dir), "heldout_acc": acc, "weights_sha256": sha, "layout": layout,
            "n_heldout": len(dataset.heldout)}
