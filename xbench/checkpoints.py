"""Checkpoints: atomic saves every epoch, safe loads (``weights_only=True``), resume.

A checkpoint is one file, ``<run>/model.pt``: a dict with ``format``, ``epoch`` (completed epochs), ``model``,
``optimizer``, ``rng`` (torch CPU and CUDA generator states), ``config`` (JSON text) and ``log`` (the per-epoch
rows of train_log.csv, so the log can never disagree with the weights).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import XbenchError
from .fileio import atomic_write

FORMAT = "xbench-checkpoint-v1"
CHECKPOINT_NAME = "model.pt"


def save_checkpoint(path: str | Path, *, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    config: dict, log: list[dict], scaler: torch.amp.GradScaler | None = None) -> None:
    """Write the full training state atomically (temp file + rename); fp16's loss scale travels with it."""
    state = {
        "format": FORMAT,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "config": json.dumps(config, sort_keys=True),
        "log": log,
        "scaler": scaler.state_dict() if scaler is not None else {},
    }
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint; every failure is one clear :class:`XbenchError` line."""
    path = Path(path)
    if not path.is_file():
        raise XbenchError(f"no checkpoint at {str(path)!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # foreign pickles trigger protocol warnings before failing
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # the unpickler raises many types on foreign or torn files; all mean the same here
        raise XbenchError(f"{str(path)!r} is truncated or not an xbench checkpoint "
                          f"({type(err).__name__})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise XbenchError(f"{str(path)!r} is not an xbench checkpoint")
    state["config"] = json.loads(state["config"])
    return state


def restore_rng(state: dict) -> None:
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())  # a checkpoint loaded with map_location="cuda" moved these too
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([r.cpu() for r in rng["cuda"]])


def find_checkpoint(run: str | Path) -> Path:
    """Accept a run folder or a checkpoint file."""
    run = Path(run)
    return run / CHECKPOINT_NAME if run.is_dir() else run
