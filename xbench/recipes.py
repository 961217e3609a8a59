"""Training recipes: named presets of train's settings (``xbench list recipes``, ``--recipe NAME``), and the
schedule, augmentation and loss settings they add, all built from timm's own code.

    xbench train --model timm:resnet50 --data imagefolder:/data/imagenet --opt sgd,bort-s --recipe paper-imagenet-cnn

A recipe gives values; every flag the user passes overrides its value; the run's ``config.json`` records the
recipe's name and every resolved setting. ``paper-mnist`` is today's defaults (the paper's Table 1); the ImageNet
recipes are the paper's Tables 6 and 7 (Appendix A.7). Pairs stay strict: twins differ only in the Bort settings,
so a recipe gives one weight decay per optimizer family (the baseline's); the paper's rows that differ (VGG16: SGD
wd 5e-5 and Bort-S λ 1e-3; Bort-L wd 0.002; ViT Bort-A wd 0.005) are a flag away (``--weight-decay``,
``--bort-lambda``); runs with another weight decay then form no pair.

Schedule: timm's ``create_scheduler_v2`` (linear warm-up from ``warmup_lr``, then cosine to ``min_lr`` or constant),
stepped on every update. Augmentation: timm's ``create_transform`` (random-resized crop, flip, RandAugment, colour
jitter, random erasing) and ``AugMixDataset`` for augmentation splits. Mixup/CutMix: ``timm.data.Mixup``. Losses:
``JsdCrossEntropy``, ``SoftTargetCrossEntropy``, ``BinaryCrossEntropy``, ``LabelSmoothingCrossEntropy``.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Callable

import torch

from .errors import XbenchError
from .registry import Registry
from .settings import Setting, check

RECIPES: Registry = Registry("recipe")

# What a recipe controls beyond train's optimizer numbers; non-default values join a run's identity.
RECIPE_SETTINGS = {
    "sched": Setting("none", "learning-rate schedule after warm-up (timm): none (constant) or cosine",
                     choices=("none", "cosine")),
    "warmup_epochs": Setting(0.0, "linear warm-up epochs from warmup_lr to lr (timm's scheduler; 0 = none)",
                             range="[0, inf)"),
    "warmup_lr": Setting(1e-5, "learning rate at the start of warm-up", range="[0, inf)"),
    "min_lr": Setting(0.0, "learning rate at the end of the cosine schedule", range="[0, inf)"),
    "augment": Setting(False, "timm's training transform per image (random-resized crop, flip, and the below)"),
    "aa": Setting("", "RandAugment policy, e.g. rand-m9-mstd0.5 (timm; empty = none)"),
    "color_jitter": Setting(0.0, "colour jitter strength (timm turns it off under RandAugment)", range="[0, inf)"),
    "reprob": Setting(0.0, "random-erasing probability", range="[0, 1]"),
    "aug_splits": Setting(0, "augmentation splits (timm AugMixDataset): clean + augmented views per image",
                          range="[0, inf)"),
    "jsd": Setting(False, "Jensen-Shannon consistency loss over the augmentation splits (timm JsdCrossEntropy)"),
    "mixup": Setting(0.0, "mixup alpha (timm Mixup; 0 = off)", range="[0, inf)"),
    "cutmix": Setting(0.0, "cutmix alpha (timm Mixup; 0 = off)", range="[0, inf)"),
    "smoothing": Setting(0.0, "label smoothing", range="[0, 1)"),
    "bce": Setting(False, "binary cross-entropy instead of softmax cross-entropy (timm BinaryCrossEntropy)"),
    "amp": Setting("none", "mixed precision of forward and loss: none, bf16 or fp16 (weights and Bort's Δ stay fp32)",
                   choices=("none", "bf16", "fp16")),
}
DEFAULTS = {k: s.default for k, s in RECIPE_SETTINGS.items()}


class Recipe:
    """A preset: ``common`` values, per-optimizer values and per-model values (model-name wildcards)."""

    common: dict = {}
    per_opt: dict = {}
    per_model: dict = {}

    def values(self, opt: str, model: str) -> dict:
        out = dict(self.common)
        out.update(self.per_opt.get(opt, {}))
        for pattern, extra in self.per_model.items():
            if fnmatch.fnmatchcase(model, pattern):
                out.update(extra)
        return out


@RECIPES.register("paper-mnist")
class PaperMnist(Recipe):
    """Table 1 (MNIST, CIFAR-10): lr 0.01, no schedule, 40 epochs, batch 256, wd 0.01, λ 0.1 (train's defaults)."""


_CNN_AUG = dict(augment=True, aa="rand-m9-mstd0.5", reprob=0.6, aug_splits=3, jsd=True, smoothing=0.1)
_IMAGENET = dict(epochs=300, sched="cosine", warmup_epochs=5.0)


@RECIPES.register("paper-imagenet-cnn")
class PaperImagenetCNN(Recipe):
    """Tables 6-7, VGG16/ResNet50 × SGD/AdamW: cosine, warm-up 5, batch 1024, RandAugment, erasing 0.6, JSD."""

    common = dict(_IMAGENET, batch_size=1024, weight_decay=2e-5, bort_lambda=1e-4, **_CNN_AUG)
    per_opt = {"sgd": dict(lr=0.05, momentum=0.9), "bort-s": dict(lr=0.05, momentum=0.9),
               "adamw": dict(lr=0.001), "bort-a": dict(lr=0.001)}


@RECIPES.register("paper-imagenet-lamb")
class PaperImagenetLamb(Recipe):
    """Tables 6-7, ResNet50 × LAMB/Bort-L: lr 0.005, batch 2048, BCE loss, mixup 0.1, cutmix 1, 3 aug splits."""

    common = dict(_IMAGENET, batch_size=2048, lr=0.005, weight_decay=0.02, bort_lambda=2e-5, augment=True,
                  aa="rand-m7-mstd0.5", mixup=0.1, cutmix=1.0, aug_splits=3, bce=True)


@RECIPES.register("paper-imagenet-vit")
class PaperImagenetViT(Recipe):
    """Tables 6-7, DeiT-S/Swin-S × AdamW/Bort-A: lr 5e-4, batch 1024, drop path, mixup 0.8, cutmix 1, erasing 0.25."""

    common = dict(_IMAGENET, batch_size=1024, lr=5e-4, weight_decay=0.05, bort_lambda=0.05, augment=True,
                  aa="rand-m9-mstd0.5", mixup=0.8, cutmix=1.0, reprob=0.25, color_jitter=0.3, smoothing=0.1,
                  model_kwargs={"drop_path": 0.1})
    per_model = {"timm:swin*": dict(color_jitter=0.4, model_kwargs={"drop_path": 0.3})}


def recipe_values(name: str, opt: str, model: str) -> dict:
    """The recipe's values for one optimizer and model (train fields and :data:`RECIPE_SETTINGS`)."""
    return RECIPES.get(name)().values(opt, model)


def check_recipe_settings(given: dict) -> dict:
    """Every recipe setting resolved (typed, defaults filled in); one XbenchError line for a bad one."""
    values = check("train", RECIPE_SETTINGS, given)
    if values["jsd"] and values["aug_splits"] < 2:
        raise XbenchError("train: jsd needs aug_splits >= 2 (the clean view and at least one augmented view)")
    if values["aug_splits"] == 1:
        raise XbenchError("train: aug_splits is 0 (off) or at least 2")
    if values["aa"] and not values["aa"].startswith(("rand", "augmix", "original", "v0", "3a")):
        raise XbenchError(f"train: aa={values['aa']!r} is not a timm augmentation policy (e.g. rand-m9-mstd0.5)")
    return values


def build_scheduler(opt: torch.optim.Optimizer, rs: dict, epochs: int, steps_per_epoch: int):
    """timm's scheduler stepped per update (``step_update(n)`` sets the lr of update n), or None for a constant lr."""
    if rs["sched"] == "none" and rs["warmup_epochs"] == 0:
        return None
    from timm.scheduler import create_scheduler_v2

    constant = rs["sched"] == "none"
    sched, _ = create_scheduler_v2(opt, sched="step" if constant else "cosine", num_epochs=epochs,
                                   decay_epochs=10 ** 9, decay_rate=1.0, min_lr=rs["min_lr"],  # step: constant
                                   warmup_lr=rs["warmup_lr"], warmup_epochs=rs["warmup_epochs"],
                                   step_on_epochs=False, updates_per_epoch=steps_per_epoch)
    return sched


def build_criterion(rs: dict, num_classes: int) -> tuple[Callable | None, Callable | None]:
    """(mixup function or None, loss(logits, target) or None = the objective's own cross-entropy), as timm's
    train.py chooses them."""
    from timm.data import Mixup
    from timm.loss import BinaryCrossEntropy, JsdCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    mix = None
    if rs["mixup"] > 0 or rs["cutmix"] > 0:
        mix = Mixup(mixup_alpha=rs["mixup"], cutmix_alpha=rs["cutmix"], label_smoothing=rs["smoothing"],
                    num_classes=num_classes)
    if rs["jsd"]:
        return mix, JsdCrossEntropy(num_splits=rs["aug_splits"], smoothing=rs["smoothing"])
    if mix is not None:
        return mix, BinaryCrossEntropy(smoothing=0.0) if rs["bce"] else SoftTargetCrossEntropy()
    if rs["bce"]:
        return None, BinaryCrossEntropy(smoothing=rs["smoothing"])
    if rs["smoothing"] > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=rs["smoothing"])
    return None, None


def split_settings(settings: dict[str, Any]) -> tuple[dict, dict]:
    """(train fields, recipe settings) of a flat dict of settings."""
    rs = {k: v for k, v in settings.items() if k in RECIPE_SETTINGS}
    return {k: v for k, v in settings.items() if k not in RECIPE_SETTINGS}, rs


def run_settings(name: str, opt: str, model: str, given: dict, given_recipe: dict) -> dict:
    """TrainConfig keyword arguments of one run: the recipe's values, each overridden by the user's."""
    from .models import MODELS

    train_values, recipe_values_ = split_settings(recipe_values(name, opt, model))
    declared = MODELS.settings(model) if model in MODELS else {}
    model_kwargs = {k: v for k, v in train_values.pop("model_kwargs", {}).items() if k in declared}
    out = {**train_values, **given}
    out["model_kwargs"] = {**model_kwargs, **(given.get("model_kwargs") or {})}
    out["recipe_settings"] = {**recipe_values_, **given_recipe}
    return out


def describe_recipe(name: str) -> list[str]:
    """Lines for ``xbench list recipes -v``: the recipe's values, per optimizer and model pattern."""
    r = RECIPES.get(name)
    lines = [", ".join(f"{k}={v}" for k, v in r.common.items()) or "train's defaults (xbench train --help)"]
    lines += [f"--opt {k}: " + ", ".join(f"{a}={b}" for a, b in v.items()) for k, v in r.per_opt.items()]
    lines += [f"--model {k}: " + ", ".join(f"{a}={b}" for a, b in v.items()) for k, v in r.per_model.items()]
    return lines


def list_recipes(pattern: str = "*") -> list[str]:
    return RECIPES.list(pattern)
