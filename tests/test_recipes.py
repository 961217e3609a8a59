"""Recipes: listing and printing, values with flag-by-flag overrides recorded whole, timm's warm-up + cosine schedule
against its closed form, each ImageNet recipe's timm augmentation/mixup/loss on a small model, bf16 on CPU."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from xbench.cli import main
from xbench.errors import XbenchError
from xbench.recipes import RECIPE_SETTINGS, build_scheduler, check_recipe_settings, list_recipes
from xbench.train import TrainConfig, train


def test_the_four_recipes_are_listed_and_printed(capsys):
    assert list_recipes() == ["paper-imagenet-cnn", "paper-imagenet-lamb", "paper-imagenet-vit", "paper-mnist"]
    assert main(["list", "recipes", "-v"]) == 0
    out = capsys.readouterr().out
    assert "aa=rand-m9-mstd0.5" in out and "--opt sgd: lr=0.05, momentum=0.9" in out and "jsd=True" in out


def test_recipe_values_flags_override_and_config_records_everything(tmp_path):
    runs = train(model="lenet", data="fake:1x16x16", opt="sgd,bort-s", seeds=[0], out=tmp_path, progress=False,
                 recipe="paper-imagenet-cnn", epochs=1, batch_size=128, aug_splits=0, jsd=False, augment=False,
                 warmup_epochs=0.5)
    cfg = [json.loads((Path(r["run_dir"]) / "config.json").read_text()) for r in runs]
    assert cfg[0]["recipe"] == "paper-imagenet-cnn" and set(cfg[0]["recipe_settings"]) == set(RECIPE_SETTINGS)
    rs = cfg[0]["recipe_settings"]
    assert (cfg[0]["lr"], cfg[0]["momentum"], cfg[0]["weight_decay"]) == (0.05, 0.9, 2e-5)  # the recipe's
    assert (cfg[0]["epochs"], cfg[0]["batch_size"], rs["warmup_epochs"], rs["aug_splits"]) == (1, 128, 0.5, 0)  # flags
    assert rs["sched"] == "cosine" and rs["reprob"] == 0.6 and rs["aa"] == "rand-m9-mstd0.5" and not rs["augment"]
    assert cfg[1]["bort_lambda"] == 1e-4 and runs[0]["pair_id"] == runs[1]["pair_id"]


def test_default_recipe_keeps_run_ids_and_a_warmup_changes_them():
    plain = TrainConfig()
    plain.validate()
    assert plain.run_id == "lenet-mnist10k-sgd-s0-bbee8527"  # runs trained before recipes existed still resume
    warm = TrainConfig(recipe_settings={"warmup_epochs": 2})
    warm.validate()
    assert warm.run_id != plain.run_id and warm.recipe_settings["warmup_epochs"] == 2.0


@pytest.mark.parametrize("sched", ["cosine", "none"])
def test_schedule_is_linear_warmup_then_cosine_or_constant(sched):
    lr, warm_lr, min_lr, epochs, steps, warm = 0.1, 0.001, 0.002, 4, 5, 1.5
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    rs = check_recipe_settings({"sched": sched, "warmup_epochs": warm, "warmup_lr": warm_lr, "min_lr": min_lr})
    scheduler = build_scheduler(opt, rs, epochs, steps)
    total, warm_t = epochs * steps, warm * steps
    for t in range(total):
        scheduler.step_update(t)
        if t < warm_t:
            want = warm_lr + t * (lr - warm_lr) / warm_t
        elif sched == "cosine":
            want = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t / total))
        else:
            want = lr
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-9), t
    assert build_scheduler(opt, check_recipe_settings({}), epochs, steps) is None  # paper-mnist: constant lr


def test_warmup_trains_a_small_model_and_resumes_bit_identically(tmp_path):
    kw = dict(model="lenet", data="fake", opt="bort-s", seeds=[0], progress=False, batch_size=128, warmup_epochs=1)
    full = train(epochs=2, out=tmp_path / "a", **kw)
    train(epochs=1, out=tmp_path / "b", **kw)
    resumed = train(epochs=2, out=tmp_path / "b", **kw)
    assert resumed[0]["resumed_from"] == 1 and resumed[0]["run_id"] == full[0]["run_id"]
    a, b = (torch.load(Path(r["run_dir"]) / "model.pt", weights_only=True)["model"] for r in (full[0], resumed[0]))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("recipe,opt", [("paper-imagenet-cnn", "sgd"), ("paper-imagenet-lamb", "bort-l"),
                                        ("paper-imagenet-vit", "bort-a")])
def test_each_imagenet_recipe_trains_with_timms_augmentation_and_loss(tmp_path, recipe, opt):
    runs = train(model="lenet", data="fake:3x16x16", opt=opt, seeds=[0], out=tmp_path, progress=False,
                 recipe=recipe, epochs=1, batch_size=128, warmup_epochs=0.5)
    log = (Path(runs[0]["run_dir"]) / "train_log.csv").read_text().splitlines()
    loss = float(log[1].split(",")[1])
    assert math.isfinite(loss) and loss > 0 and runs[0]["diverged_at"] is None


def test_bf16_on_cpu_keeps_fp32_weights_and_trains(tmp_path):
    kw = dict(model="lenet", data="fake", opt="bort-s", seeds=[0], epochs=1, progress=False, batch_size=128)
    half = train(out=tmp_path / "bf16", amp="bf16", **kw)
    full = train(out=tmp_path / "fp32", **kw)
    assert half[0]["run_id"] != full[0]["run_id"]  # precision is part of what a run is
    a, b = (torch.load(Path(r["run_dir"]) / "model.pt", weights_only=True)["model"] for r in (half[0], full[0]))
    assert all(v.dtype == torch.float32 for v in a.values())
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 0.05 and any(not torch.equal(a[k], b[k]) for k in a)


def test_channels_last_matches_the_default_layout(tmp_path):
    kw = dict(model="lenet", data="fake", opt="bort-s", seeds=[0], epochs=1, progress=False, batch_size=128)
    cl = train(out=tmp_path / "cl", channels_last=True, **kw)
    ref = train(out=tmp_path / "ref", **kw)
    a, b = (torch.load(Path(r["run_dir"]) / "model.pt", weights_only=True)["model"] for r in (cl[0], ref[0]))
    assert cl[0]["run_id"] == ref[0]["run_id"] and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("args,match", [
    (["--recipe", "paper-imagenet-cn"], "unknown recipe 'paper-imagenet-cn'; did you mean paper-imagenet-cnn"),
    (["--amp", "fp8"], "amp='fp8'"),
    (["--jsd", "true"], "jsd needs aug_splits"),
    (["--warmup-epochs", "-1"], "warmup_epochs='-1' is out of range"),
    (["--parallel", "model"], "parallel='model'"),
])
def test_bad_recipe_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, match):
    out = tmp_path / "out"
    assert main(["train", "--data", "fake", "--epochs", "1", "--quiet", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a grad scaler and torch.compile: the CUDA path")
def test_fp16_grad_scaler_and_compile_on_cuda(tmp_path):
    kw = dict(model="lenet", data="fake", opt="bort-s", seeds=[0], epochs=2, progress=False, batch_size=128)
    fp16 = train(out=tmp_path / "fp16", amp="fp16", compile=True, **kw)
    ref = train(out=tmp_path / "ref", **kw)
    a, b = (torch.load(Path(r["run_dir"]) / "model.pt", weights_only=True)["model"] for r in (fp16[0], ref[0]))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in a.values())
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 0.05


def test_switches_work_bare_and_with_a_value(tmp_path):
    args = ["train", "--data", "fake", "--opt", "sgd", "--epochs", "1", "--quiet", "--batch-size", "256"]
    assert main([*args, "--channels-last", "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--channels-last", "false", "--augment", "false", "--out", str(tmp_path / "b")]) == 0
    config = json.loads(next((tmp_path / "a").glob("*/config.json")).read_text())
    assert config["recipe"] == "paper-mnist" and config["recipe_settings"]["augment"] is False
