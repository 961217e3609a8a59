"""Paired training: one run per optimizer and seed; twins share seed, initial weights and data order.

    from xbench.train import train
    runs = train(model="lenet", data="mnist10k", opt="sgd,bort-s", seeds=[0, 1, 2], epochs=40)

Defaults are the Bort paper's Table 1 recipe for MNIST/CIFAR: lr 0.01, no schedule, 40 epochs, batch 256, no
augmentation, weight decay 0.01, λ 0.1, momentum 0. Every run lives in ``<out>/<run_id>/`` with ``config.json``,
``model.pt`` (the checkpoint, saved atomically after every epoch) and ``train_log.csv``. Re-running the same command
resumes each run from its last complete epoch; a finished run is skipped. A run whose loss or weights turn
non-finite stops there, keeping its last finite epoch; the other runs go on, and ``train`` then raises
:class:`~xbench.errors.TrainingDiverged` (its ``runs`` holds every summary).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import sys
import time
import warnings
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import torch
from tqdm.auto import tqdm

from . import __version__
from .checkpoints import CHECKPOINT_NAME, load_checkpoint, restore_rng, save_checkpoint
from .data import Dataset, create_dataset
from .errors import TrainingDiverged, XbenchError
from .fileio import atomic_write_json, atomic_write_text, check_writable
from .layers import constrained_weights, mean_orthogonality_error
from .models import create_model
from .objectives import OBJECTIVES, create_objective
from .optim import OPTIMIZERS, create_optimizer
from . import dist
from .recipes import check_recipe_settings, run_settings, split_settings
from .train_config import TrainConfig
from .train_dist import EXEC_SETTINGS, Engine, check_execution, check_world, placement, run_placed

LOG_COLUMNS = ["epoch", "loss", "train_acc", "heldout_acc", "ortho_error", "seconds"]


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise XbenchError(f"unknown device {device!r} (use auto, cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XbenchError("--device cuda was asked for but no CUDA device is available")
    if dev.type == "cuda" and dev.index is None and dist.launched():
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))  # each torchrun rank its own GPU
    return dev


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The shuffled example order of one epoch: a pure function of (seed, epoch), so twins and resumed runs agree."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def dbort_loss(logits: torch.Tensor, lam: float, beta: float) -> torch.Tensor:
    """DBort's auxiliary term −λ_D·(mean(logits²))^β (public code: λ_D = 0.001, β = 0.1)."""
    return -lam * logits.square().mean().pow(beta)


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: Dataset, which: str, device: torch.device, batch_size: int = 512) -> float:
    model.eval()
    split = data.split(which)
    correct = 0
    for x, y in data.batches(which, torch.arange(len(split)), batch_size, device):
        correct += int((model(x).argmax(1) == y).sum())
    return correct / max(1, len(split))


def build(config: TrainConfig, data: Dataset, device: torch.device):
    """Model (seeded initial weights) and optimizer of a run."""
    torch.manual_seed(config.seed)
    model = create_model(config.model, data.shape, data.num_classes, **config.model_kwargs).to(device)
    opt = create_optimizer(config.opt, model, **{k: getattr(config, k) for k in OPTIMIZERS.settings(config.opt)})
    return model, opt


def _state_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _write_log(run_dir: Path, log: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(log)
    atomic_write_text(run_dir / "train_log.csv", buf.getvalue())


def train_run(config: TrainConfig, data: Dataset, out: str | Path = "checkpoints", device: torch.device | str = "cpu",
              progress: bool | None = None, execution: dict | None = None, data_parallel: bool = False) -> dict:
    """Train (or resume, or skip if finished) one run; returns its summary. ``execution``: xbench/train_dist.py's
    settings; ``data_parallel``: every torchrun rank trains this run together (DDP)."""
    device = torch.device(device)
    config.recipe_settings = check_recipe_settings(config.recipe_settings)
    run_dir = Path(out) / config.run_id
    ckpt_path = run_dir / CHECKPOINT_NAME
    model, opt = build(config, data, device)
    objective = create_objective(config.method, data.space, **config.method_kwargs)
    meta = {"run_id": config.run_id, "pair_id": config.pair_id, **asdict(config), "data_info": data.info(),
            "init_sha256": _state_digest(model), "feature_layer": getattr(model, "feature_layer", ""),
            "xbench_version": __version__, "torch_version": torch.__version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    start, log, state = 0, [], {}
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        restore_rng(state)
        start, log = state["epoch"], state["log"]
        meta = {**state["config"], "epochs": config.epochs}
    engine = Engine(config, data, model, device, execution or check_execution({}), data_parallel)
    if engine.scaler is not None and state.get("scaler"):  # fp16: resume at the loss scale it had reached
        engine.scaler.load_state_dict(state["scaler"])
    if engine.writes:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", meta)

    steps = engine.steps_per_epoch()
    engine.schedule(opt, config.epochs, steps)
    diverged_at = None
    for epoch in range(start, config.epochs):
        t0 = time.perf_counter()
        sums, n = _train_epoch(config, engine, objective, model, opt, epoch, steps, progress)
        loss_mean, train_acc, finite = engine.epoch_totals(model, sums, n)  # one sync (and one all-reduce)
        if not finite:
            # Keep the checkpoint of the last finite epoch; training on would only write NaN weights.
            diverged_at = epoch + 1
            break
        log.append({"epoch": epoch + 1, "loss": loss_mean, "train_acc": train_acc,
                    "heldout_acc": engine.heldout_accuracy(model, accuracy),
                    "ortho_error": mean_orthogonality_error(model), "seconds": time.perf_counter() - t0})
        if engine.writes:
            save_checkpoint(ckpt_path, epoch=epoch + 1, model=model, optimizer=opt, config=meta, log=log,
                            scaler=engine.scaler)
            _write_log(run_dir, log)
        engine.saved()
    if start >= config.epochs and log and engine.writes:
        _write_log(run_dir, log)
    last = log[-1] if log else {}
    return {"run_id": config.run_id, "pair_id": config.pair_id, "opt": config.opt, "method": config.method,
            "seed": config.seed, "l1": config.l1,
            "epochs": len(log), "heldout_acc": last.get("heldout_acc", float("nan")),
            "ortho_error": last.get("ortho_error", float("nan")), "run_dir": str(run_dir),
            "resumed_from": start, "diverged_at": diverged_at}


def _train_epoch(config: TrainConfig, engine: Engine, objective, model, opt, epoch: int, steps: int,
                 progress: bool | None):
    """One epoch of steps; (summed loss and correct predictions on the device, examples seen): no sync per step."""
    model.train()
    sums, n = engine.new_sums(), 0
    bar = tqdm(total=steps, desc=f"{config.run_id} epoch {epoch + 1}/{config.epochs}", leave=False,
               disable=(None if progress is None else not progress) or not engine.writes, file=sys.stderr)
    for i, (x, y, n_global) in enumerate(engine.batches(epoch)):
        with engine.autocast():
            loss, logits = engine.loss(objective, x, y)  # the batch's loss, in one place (logits it trained on)
            if config.dbort is not None:
                loss = loss + dbort_loss(logits, *config.dbort)
            if config.l1:
                loss = loss + config.l1 * sum(w.abs().sum() for _, w in constrained_weights(model))
        engine.step(opt, loss, epoch * steps + i, y, n_global)
        engine.accumulate(sums, loss, logits, y)
        n += n_global
        bar.update()
    bar.close()
    return sums, n


def _as_list(value: str | int | Iterable) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)):
        return [value]
    return list(value)


def plan(model: str = "lenet", data: str = "mnist10k", opt: str | Iterable[str] = "sgd,bort-s",
         seeds: str | int | Iterable[int] = (0,), method: str | Iterable[str] = "erm", recipe: str = "paper-mnist",
         **settings: Any) -> list[TrainConfig]:
    """The runs :func:`train` would train (method × optimizer × seed), every setting checked; nothing is read or
    written. ``settings`` are TrainConfig fields and recipe settings (xbench/recipes.py), each overriding the
    ``recipe``'s value (execution settings, xbench/train_dist.py, are ignored here); ``method_kwargs`` go to every
    method that declares them."""
    given, given_recipe = split_settings({k: v for k, v in settings.items() if k not in EXEC_SETTINGS})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(given) - known
    if unknown:
        raise XbenchError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    opts = OPTIMIZERS.resolve(opt)
    try:
        seed_list = [int(s) for s in _as_list(seeds)]
    except ValueError:
        raise XbenchError(f"seeds must be integers, not {seeds!r}") from None
    if not seed_list:
        raise XbenchError("no seeds given")
    per_method = method_settings(OBJECTIVES.resolve(method), given.pop("method_kwargs", None) or {})
    l1s = _as_list(given.pop("l1", 0.0)) or [0.0]  # a list of penalties crosses like the optimizers
    configs = [TrainConfig(model=model, data=data, opt=o, seed=s, method=m, method_kwargs=kw, l1=lam, recipe=recipe,
                           **run_settings(recipe, o, model, given, given_recipe))
               for s in seed_list for m, kw in per_method.items() for lam in l1s for o in opts]
    for c in configs:
        c.validate()
    return configs


def epochs_done(config: TrainConfig, out: str | Path) -> int:
    """Complete epochs of a run on disk (its log is rewritten atomically with every checkpoint); 0 if none."""
    log = Path(out) / config.run_id / "train_log.csv"
    return max(0, len(log.read_text().splitlines()) - 1) if log.is_file() else 0


def train(model: str = "lenet", data: str = "mnist10k", opt: str | Iterable[str] = "sgd,bort-s",
          seeds: str | int | Iterable[int] = (0,), out: str | Path = "checkpoints", device: str = "auto",
          data_root: str | None = None, download: bool = False, progress: bool | None = None,
          method: str | Iterable[str] = "erm", recipe: str = "paper-mnist", **settings: Any) -> list[dict]:
    """Train every method × optimizer × seed (:func:`plan`); runs of one method and seed form a pair. Under
    torchrun the runs are placed by ``parallel`` (runs dealt to ranks, or DDP; xbench/train_dist.py)."""
    execution = check_execution({k: settings.pop(k) for k in list(settings) if k in EXEC_SETTINGS})
    configs = plan(model, data, opt, seeds, method, recipe=recipe, **settings)
    backend = execution["dist_backend"]
    if backend == "auto" and device == "cpu":  # CPU tensors need gloo, even on a machine with GPUs
        backend = "gloo"
    dist.init(backend)  # a no-op without torchrun

    def setup():  # every user error before any folder, on every rank (dist.agree)
        check_writable(out)
        dev = resolve_device(device)
        dataset = create_dataset(data, root=data_root, download=download, **configs[0].data_kwargs)
        build(configs[0], dataset, torch.device("cpu"))  # model errors (bad width, wrong channels) before any folder
        mode = placement(execution["parallel"], len(configs), dist.world_size())
        for c in configs:
            check_world(mode, c.batch_size, len(dataset.train), dist.world_size(), c.method)
        return dev, dataset, mode

    dev, dataset, mode = dist.agree(setup)
    runs = run_placed(configs, mode, lambda c, dp: train_run(c, dataset, out, dev, progress, execution, dp))
    diverged = [r for r in runs if r["diverged_at"]]
    if diverged:
        names = ", ".join(f"{r['run_id']} at epoch {r['diverged_at']}" for r in diverged)
        raise TrainingDiverged(f"{len(diverged)} run(s) diverged (non-finite loss or weights): {names}; each keeps "
                               f"its last finite epoch; try a lower --lr or --bort-lambda", runs)
    return runs


def method_settings(methods: list[str], given: dict) -> dict[str, dict]:
    """Each method's share of the given settings (the ones it declares); a setting no method declares is an error."""
    unused = [k for k in given if not any(k in OBJECTIVES.settings(m) for m in methods)]
    if unused:
        raise XbenchError(f"train: {', '.join(unused)} is not a setting of {', '.join(methods)} (see `xbench list "
                          f"objectives -v`)")
    return {m: {k: v for k, v in given.items() if k in OBJECTIVES.settings(m)} for m in methods}


def load_run(run: str | Path, device: str | torch.device = "cpu", data_root: str | None = None):
    """(model in eval mode on device, dataset, config) of a trained run folder."""
    from .checkpoints import find_checkpoint

    state = load_checkpoint(find_checkpoint(run), map_location=device)
    cfg = state["config"]
    dataset = create_dataset(cfg["data"], root=data_root, **cfg.get("data_kwargs", {}))
    model = create_model(cfg["model"], dataset.shape, dataset.num_classes, **cfg.get("model_kwargs", {}))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    last = state["log"][-1] if state["log"] else {}
    cfg = {**cfg, "epochs_done": state["epoch"], "heldout_acc": last.get("heldout_acc"),
           "ortho_error": last.get("ortho_error")}
    if state["epoch"] < cfg["epochs"]:  # killed, still training, or diverged: results would describe another model
        warnings.warn(f"{cfg['run_id']} has {state['epoch']} of its {cfg['epochs']} epochs; run `xbench train` "
                      f"with the same settings to finish it", stacklevel=2)
    return model, dataset, cfg
