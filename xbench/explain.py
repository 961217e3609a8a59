"""Saliency maps for the held-out images of trained runs, cached in the run folder.

    explain("checkpoints/*", interps="cam,sat", n=64)

Maps of the first ``n`` held-out images go to ``<run>/maps/<interp>-<key>.pt`` where ``key`` hashes the
interpreter's hyperparameters; an existing file with the same key is reused (and extended when more images are asked
for). Targets are the model's predictions on the clean images. A PNG grid (image, then one column per interpreter)
is written to ``<run>/maps/grid.png``.
"""
from __future__ import annotations

import glob
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__, dist
from .checkpoints import CHECKPOINT_NAME
from .data import Dataset
from .errors import XbenchError
from .fileio import atomic_write
from .interpreters import INTERPRETERS, Interpreter, create_interpreter
from .shard import over_ranks
from .train import load_run, resolve_device

MAPS_FORMAT = "xbench-maps-v1"
GRID_IMAGES = 8


def resolve_runs(spec: str | Path | Iterable[str | Path]) -> list[Path]:
    """Run folders from a folder, a wildcard pattern or a comma-separated list; each must hold a checkpoint."""
    if isinstance(spec, str):
        items = [s.strip() for s in spec.split(",")]
    else:
        items = [str(spec)] if isinstance(spec, Path) else [str(s) for s in spec]
    runs: list[Path] = []
    for item in items:
        matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        for m in matches:
            p = Path(m)
            if (p / CHECKPOINT_NAME).is_file():
                runs.append(p)
            elif p.is_file() and p.name == CHECKPOINT_NAME:
                runs.append(p.parent)
    if not runs:
        raise XbenchError(f"no trained runs found at {spec!r} (a run folder holds {CHECKPOINT_NAME})")
    return list(dict.fromkeys(runs))


def maps_path(run: Path, interp: Interpreter) -> Path:
    return Path(run) / "maps" / f"{interp.registry_name}-{interp.key}.pt"


def _load_maps(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file is recomputed, never trusted
        return None
    return state if isinstance(state, dict) and state.get("format") == MAPS_FORMAT else None


def compute_maps(interp: Interpreter, x: torch.Tensor, target: torch.Tensor, batch_size: int,
                 bar: tqdm | None = None) -> torch.Tensor:
    """Maps for inputs x (already on the model's device), in batches; returned on the CPU. Under torchrun the
    batches are dealt across ranks and every rank gets all maps (``shard.over_ranks``)."""
    def one(sl: slice) -> torch.Tensor:
        maps = interp.attribute(x[sl], target[sl]).cpu()
        if bar is not None:
            bar.update(len(maps))
        return maps

    out = over_ranks(x.shape[0], batch_size, one)
    return torch.cat(out) if out else torch.empty(0, *x.shape[-2:])


def heldout_examples(model: torch.nn.Module, data: Dataset, n: int, device: torch.device):
    """The first n held-out images (model input space) with labels and the model's predictions."""
    if n < 1:
        raise XbenchError(f"--n must be at least 1, not {n}")
    if n > len(data.heldout):
        warnings.warn(f"--n {n} is more than the {len(data.heldout)} held-out images of {data.name}; using "
                      f"{len(data.heldout)}", stacklevel=2)
    idx = torch.arange(min(n, len(data.heldout)))
    x, y = data.inputs("heldout", idx, device)
    with torch.no_grad():
        pred = torch.cat([model(x[s:s + 256]).argmax(1) for s in range(0, len(x), 256)])
    return idx, x, y, pred


def maps_for(run: Path, model: torch.nn.Module, data: Dataset, name: str, hparams: dict, n: int,
             device: torch.device, batch_size: int = 32, progress: bool | None = None,
             examples=None) -> tuple[torch.Tensor, dict]:
    """Maps [n,H,W] (CPU) and their record for one run × interpreter: from the cache, extended or computed."""
    interp = create_interpreter(name, model, data.space, **hparams)
    path = maps_path(run, interp)
    idx, x, y, pred = examples if examples is not None else heldout_examples(model, data, n, device)
    cached, have = _cached(path, idx)
    if have < len(idx):
        bar = tqdm(total=len(idx) - have, desc=f"{run.name} {name}", leave=False, file=sys.stderr,
                   disable=None if progress is None else not progress)
        t0 = time.perf_counter()
        new = compute_maps(interp, x[have:], pred[have:], batch_size, bar)
        bar.close()
        seconds = (time.perf_counter() - t0) / max(1, len(new))
        maps = new if cached is None else torch.cat([cached["maps"], new])
        state = {"format": MAPS_FORMAT, "interpreter": name, "interp_hparams": json.dumps(interp.hparams, default=str),
                 "backend": interp.backend, "indices": idx, "targets": pred.cpu(), "labels": y.cpu(), "maps": maps,
                 "seconds_per_image": seconds, "xbench_version": __version__, "device": str(device)}
        if dist.is_main():  # under torchrun every rank holds the maps; rank 0 alone writes them
            atomic_write(path, lambda f: torch.save(state, f))
            _write_preview(path, maps, data.space.to_pixels(x[:GRID_IMAGES]), idx)
        cached = state
    record = {"interpreter": name, "interp_hparams": json.loads(cached["interp_hparams"]), "interp_key": interp.key,
              "backend": cached["backend"], "target_rule": "prediction", "maps_file": str(path),
              "seconds_per_image": float(cached["seconds_per_image"])}
    return cached["maps"][: len(idx)], record


def _cached(path: Path, idx: torch.Tensor) -> tuple[dict | None, int]:
    """The cached maps at ``path`` and how many of them serve the images ``idx`` (0: none, or another selection)."""
    cached = _load_maps(path)
    have = 0 if cached is None else len(cached["maps"])
    if cached is not None and not torch.equal(cached["indices"][: min(have, len(idx))], idx[: min(have, len(idx))]):
        return None, 0  # a different image selection: start over
    return cached, have


def _write_preview(path: Path, maps: torch.Tensor, pixels: torch.Tensor, idx: torch.Tensor) -> None:
    """The first maps with their images as numpy (``<maps>.npz``): what torch-free reports draw figures from."""
    preview = {"maps": maps[:GRID_IMAGES].numpy(), "indices": idx[:GRID_IMAGES].cpu().numpy(),
               "pixels": pixels.permute(0, 2, 3, 1).cpu().numpy()}
    atomic_write(path.with_suffix(".npz"), lambda f: np.savez(f, **preview))


def explain(runs: str | Path | Iterable, interps: str | Iterable[str] = "all", n: int = 64,
            hparams: dict[str, dict[str, Any]] | None = None, device: str = "auto", batch_size: int = 32,
            data_root: str | None = None, progress: bool | None = None, grid: bool = True,
            dry_run: bool = False) -> list[str]:
    """Compute (or reuse) maps for every run × interpreter; returns one summary line per pair (``dry_run``: one
    line, the count of map sets to compute and of those cached, computing and writing nothing)."""
    names = INTERPRETERS.resolve(interps)
    hparams = hparams or {}
    unknown = set(hparams) - set(names)
    if unknown:
        raise XbenchError(f"settings given for interpreters not asked for: {', '.join(sorted(unknown))}")
    for name in names:  # every setting checked before any run is loaded or any file written
        INTERPRETERS.check(name, hparams.get(name, {}))
    run_dirs = resolve_runs(runs)
    dist.init()  # under torchrun: join the group (batches of images are dealt across ranks); else nothing
    dev = resolve_device(device)
    lines = []
    for run in run_dirs:
        model, data, cfg = load_run(run, dev, data_root)
        examples = heldout_examples(model, data, n, dev)
        interps = [create_interpreter(name, model, data.space, **hparams.get(name, {})) for name in names]
        if dry_run:  # (a layer an interpreter cannot handle is named above, before this run writes anything)
            lines += ["cached" if _cached(maps_path(run, i), examples[0])[1] >= len(examples[0]) else "to do"
                      for i in interps]
            continue
        shown = {}
        for name in names:
            maps, rec = maps_for(run, model, data, name, hparams.get(name, {}), n, dev, batch_size, progress,
                                 examples)
            shown[name] = maps[:GRID_IMAGES].numpy()
            lines.append(f"{run.name}  {name:<16} {len(maps)} maps  {1000 * rec['seconds_per_image']:.1f} ms/image  "
                         f"{rec['maps_file']}")
        if grid and dist.is_main():
            from .reports.figures import saliency_grid

            pixels = data.space.to_pixels(examples[1][:GRID_IMAGES]).permute(0, 2, 3, 1).cpu().numpy()
            path = Path(run) / "maps" / "grid.png"
            saliency_grid(pixels, shown, path, title=f"{cfg['model']} · {cfg['opt']} · seed {cfg['seed']}")
            lines.append(f"{run.name}  grid {path}")
    if dry_run:
        return [f"{lines.count('to do')} map set(s) to compute, {lines.count('cached')} cached"]
    return lines
