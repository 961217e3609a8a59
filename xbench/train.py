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
import json
import math
import os
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import torch
from tqdm.auto import tqdm

from . import __version__
from .checkpoints import CHECKPOINT_NAME, load_checkpoint, restore_rng, save_checkpoint
from .data import DATASETS, Dataset, create_dataset
from .errors import TrainingDiverged, XbenchError
from .fileio import atomic_write_json, atomic_write_text, check_writable
from .layers import constrained_weights, mean_orthogonality_error
from .models import MODELS, create_model
from .objectives import OBJECTIVES, create_objective
from .optim import OPTIMIZERS, SETTINGS as OPT_SETTINGS, create_optimizer, is_bort
from . import dist
from .recipes import DEFAULTS as RECIPE_DEFAULTS, check_recipe_settings, run_settings, split_settings
from .settings import Setting, check
from .train_dist import EXEC_SETTINGS, Engine, check_execution, check_world, placement, run_placed

LOG_COLUMNS = ["epoch", "loss", "train_acc", "heldout_acc", "ortho_error", "seconds"]
OPTIMIZER_FIELDS = ("opt", "bort_lambda", "bort_mode", "bort_amplitude")  # what may differ inside a pair


def _setting(setting: Setting):
    """A TrainConfig field declared by its Setting (the CLI's flags and their help are built from these)."""
    return field(default=setting.default, metadata={"setting": setting})


@dataclass
class TrainConfig:
    """Everything that defines a run. ``epochs`` is not part of its identity, so a run can be extended."""

    model: str = "lenet"
    data: str = "mnist10k"
    opt: str = "sgd"
    seed: int = _setting(Setting(0, "seed of the initial weights and the data order", range="[0, inf)"))
    epochs: int = _setting(Setting(40, "epochs (not part of a run's identity: a run can be extended)",
                                   range="[1, inf)"))
    lr: float = _setting(OPT_SETTINGS["lr"])
    batch_size: int = _setting(Setting(256, "training batch size", range="[1, inf)"))
    weight_decay: float = _setting(OPT_SETTINGS["weight_decay"])
    momentum: float = _setting(OPT_SETTINGS["momentum"])
    bort_lambda: float = _setting(OPT_SETTINGS["bort_lambda"])
    bort_mode: str = _setting(OPT_SETTINGS["bort_mode"])
    bort_amplitude: float | str = _setting(OPT_SETTINGS["bort_amplitude"])
    l1: float = _setting(Setting(0.0, "λ of the l1 penalty λ·Σ_l ‖W_l‖₁ over the constrained (Conv/Linear) weights, "
                                      "added to the loss (seed 004's constraint (b): 1e-5); comma list crosses like "
                                      "--opt", range="[0, inf)"))
    dbort: list[float] | None = None  # [λ_D, β]; None = off
    model_kwargs: dict = field(default_factory=dict)
    method: str = "erm"  # the training objective (xbench/objectives), crossed with the optimizers like a seed
    method_kwargs: dict = field(default_factory=dict)  # its settings, all resolved by validate()
    recipe: str = "paper-mnist"  # the preset the settings started from (recorded; the values are what count)
    recipe_settings: dict = field(default_factory=dict)  # schedule, augmentation, loss, amp (xbench/recipes.py)
    data_kwargs: dict = field(default_factory=dict)  # dataset settings (imagefolder size=..., fake n_train=...)

    def _fields(self) -> dict:
        d = asdict(self)
        if self.method == "erm":  # plain runs keep the run and pair ids they had before --method existed
            d.pop("method"), d.pop("method_kwargs")
        if not self.l1:  # likewise runs without the l1 penalty
            d.pop("l1")
        d.pop("recipe")  # and before recipes: only recipe settings that differ from the defaults join the id
        if not d["data_kwargs"]:
            d.pop("data_kwargs")
        changed = {k: v for k, v in d.pop("recipe_settings").items() if RECIPE_DEFAULTS.get(k, object()) != v}
        if changed:
            d["recipe_settings"] = changed
        return d

    def identity(self) -> dict:
        d = self._fields()
        d.pop("epochs")
        if not is_bort(self.opt):  # Bort settings do not change a plain run
            for k in OPTIMIZER_FIELDS[1:]:
                d.pop(k)
        return d

    @property
    def run_id(self) -> str:
        method = "" if self.method == "erm" else f"{self.method}-"
        l1 = f"-l1_{self.l1:g}" if self.l1 else ""
        name = f"{self.model}-{self.data}-{method}{self.opt}{l1}-s{self.seed}"
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}-{_digest(self.identity())}"

    @property
    def pair_id(self) -> str:
        """Twins (same everything but the optimizer fields) share this id."""
        d = self._fields()
        for k in ("epochs", *OPTIMIZER_FIELDS):
            d.pop(k)
        return _digest(d)

    def validate(self) -> None:
        """Parse and check every setting (text from the CLI or a study becomes typed); XbenchError before any file."""
        MODELS.get(self.model)
        DATASETS.get(self.data)
        OPTIMIZERS.get(self.opt)
        self.method_kwargs = OBJECTIVES.check(self.method, self.method_kwargs)  # typed, defaults filled in
        self.recipe_settings = check_recipe_settings(self.recipe_settings)
        for name, value in check("train", TRAIN_SETTINGS, {k: getattr(self, k) for k in TRAIN_SETTINGS}).items():
            setattr(self, name, value)
        data_given = DATASETS.check(self.data, self.data_kwargs)
        self.data_kwargs = {k: data_given[k] for k in self.data_kwargs}  # typed; only what was given (stable ids)
        given = check(f"model {self.model}", MODELS.settings(self.model), self.model_kwargs)
        self.model_kwargs = {k: given[k] for k in self.model_kwargs}  # typed, so CLI and API runs share an id
        if self.dbort is not None:
            lam_beta = [_finite(v) for v in self.dbort]
            if len(lam_beta) != 2 or lam_beta[0] < 0:
                raise XbenchError(f"dbort takes λ_D[,β] with λ_D >= 0 and both finite, not {self.dbort!r}")
            self.dbort = lam_beta


TRAIN_SETTINGS = {f.name: f.metadata["setting"] for f in fields(TrainConfig) if "setting" in f.metadata}


def _finite(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise XbenchError(f"train: dbort values must be finite numbers, not {text!r}")
    return value


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


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
    start, log = 0, []
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        restore_rng(state)
        start, log = state["epoch"], state["log"]
        meta = {**state["config"], "epochs": config.epochs}
    engine = Engine(config, data, model, device, execution or check_execution({}), data_parallel)
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
            save_checkpoint(ckpt_path, epoch=epoch + 1, model=model, optimizer=opt, config=meta, log=log)
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
