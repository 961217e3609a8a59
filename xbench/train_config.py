"""What defines a training run: ``TrainConfig`` (its settings, identity, run and pair ids, validation) and
``TRAIN_SETTINGS``, from which the CLI's train flags and their help are generated."""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .data import DATASETS
from .errors import XbenchError
from .models import MODELS
from .objectives import OBJECTIVES
from .optim import OPTIMIZERS, SETTINGS as OPT_SETTINGS, is_bort
from .recipes import DEFAULTS as RECIPE_DEFAULTS, check_recipe_settings
from .settings import Setting, check

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
