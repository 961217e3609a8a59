"""``xbench run study.toml``: a whole study — train → explain → evaluate → report — from one shareable file.

    [study]                      # optional; out = base folder of everything the study writes
    out = "studies-out/demo"
    [train]                      # or [[train]] tables, one per recipe; keys are the flag names of `xbench train`
    model = "lenet"
    opt = ["sgd", "bort-s"]      # a list is the comma list of the command line, crossed the same way
    seeds = [0, 1, 2]
    model-arg = { width = 0.125 }
    [[evaluate]]                 # `runs` defaults to every run the train tables make
    interp = ["cam", "sat"]
    metric = ["deletion", "insertion"]
    hparam = { rise = { n_masks = 2000 } }
    [report]

The whole file is checked before any work: syntax, sections, keys (with close matches), every value through the
stage's own parser and settings, and `runs` patterns (like `out`, relative to the study's out folder) against the runs the train tables make; a mistake is one line
``file:line: ...`` (exit 2). The stages then run in order, each skipping what is done (finished runs, cached maps,
existing records), so a killed study re-run finishes without redoing work. Every record carries the study file and
its sha256. Under torchrun each stage distributes what it distributes on its own.
"""
from __future__ import annotations

import argparse
import fnmatch
import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import XbenchError
from .study_file import KV_FLAGS, Stage, StudyFile, close_matches, stages_of

def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _argv(study: StudyFile, stage: Stage, options: dict[str, str], flags: set[str], switches: set[str]) -> list[str]:
    """The command line a stage's table stands for (unknown keys and wrong shapes are errors at their line)."""
    argv = [stage.kind]
    for key, value in stage.keys.items():
        if f"--{key}" not in flags:
            raise study.error(stage, key, f"unknown key {key!r} for [{stage.kind}]"
                                          f"{close_matches(key, sorted(f[2:] for f in flags))} (see `xbench {stage.kind} --help`)")
        if f"--{key}" in switches:
            if not isinstance(value, bool):
                raise study.error(stage, key, f"{key} is a switch: true or false, not {value!r}")
            argv += [f"--{key}"] if value else []
        elif key in (*KV_FLAGS, "hparam"):
            if not isinstance(value, dict):
                raise study.error(stage, key, f"{key} takes a table, e.g. {key} = {{ name = value }}")
            for k, v in value.items():
                pairs = v.items() if key == "hparam" and isinstance(v, dict) else [("", v)]
                argv += [a for f, x in pairs for a in (f"--{key}", f"{k}{'.' + f if f else ''}={_text(x)}")]
        elif isinstance(value, dict):
            raise study.error(stage, key, f"{key} takes a value or a list, not a table")
        else:
            argv += [f"--{key}", _text(value)]
    for key, value in options.items():
        if f"--{key}" in switches:
            argv += [f"--{key}"] if value else []
        elif value is not None and f"--{key}" in flags and key not in stage.keys:
            argv += [f"--{key}", value]
    return argv


def _flags(kind: str) -> tuple[argparse.ArgumentParser, set[str], set[str]]:
    """The stage command's own parser, its long flags and its switches (flags that take no value)."""
    from .cli import _parser

    sub = next(a for a in _parser(kind)._actions if isinstance(a, argparse._SubParsersAction)).choices[kind]
    flags = {o for a in sub._actions for o in a.option_strings if o.startswith("--")}
    switches = {o for a in sub._actions if a.nargs == 0 for o in a.option_strings if o.startswith("--")}
    return sub, flags, switches


def _culprit(stage: Stage, message: str) -> str:
    """The key a stage's error message is about: the flag argparse names, a setting inside a table, a key's own
    name, or a value the message quotes; else "" (the table's header)."""
    flag = re.search(r"argument (--[\w-]+)", message)
    if flag and flag.group(1)[2:] in stage.keys:
        return flag.group(1)[2:]
    words = set(re.findall(r"[\w.-]+", message))
    tables = {k: v for k, v in stage.keys.items() if isinstance(v, dict)}
    for key, table in tables.items():
        inner = {*table, *(k for v in table.values() if isinstance(v, dict) for k in v)}
        if inner & words:
            return key
    for key, value in stage.keys.items():
        values = value if isinstance(value, list) else [value]
        if {key, key.replace("-", "_")} & words or any(f"'{_text(v)}'" in message for v in values):
            return key
    return ""


@dataclass
class Study:
    file: StudyFile
    stages: list[Stage]
    out: Path
    runs: list[Path]  # every run folder the train tables make (a `runs` pattern may name any of them)

    @property
    def tag(self) -> dict:
        return {"file": str(self.file.path), "name": self.file.data.get("study", {}).get("name", self.file.path.stem),
                "sha256": self.file.sha256}


def load_study(path: str | Path, out: str | None = None, **options: Any) -> Study:
    """Read and check a whole study file (nothing is run or written); ``options`` are `xbench run`'s own flags."""
    from . import cli
    from .evaluate import plan_jobs
    from .train import plan, resolve_device

    resolve_device(options.get("device") or "auto")  # a device that cannot be had fails before any stage runs
    study = StudyFile(path)
    stages = stages_of(study)
    base = Path(out or study.data.get("study", {}).get("out") or Path("studies-out") / study.path.stem)
    runs: list[Path] = []
    reports = str(base / "reports")
    for stage in stages:
        parser, flags, switches = _flags(stage.kind)
        defaults = {"train": str(base / "checkpoints"), "evaluate": reports, "report": reports}
        given = {**options, "out": defaults.get(stage.kind)}
        if stage.kind == "report":  # --quiet silences progress bars; the report still prints its tables
            given.pop("quiet", None)
        argv = _argv(study, stage, given, flags, switches)
        if stage.kind in ("explain", "evaluate") and "runs" not in stage.keys:
            argv += ["--runs", "(the study's runs)"]
        try:
            stage.args = parser.parse_args(argv[1:])
            for key in ("out", "runs"):  # a study's own paths are relative to its out folder
                if key in stage.keys:
                    setattr(stage.args, key, str(base / getattr(stage.args, key)))
            if stage.kind == "train":
                runs += [Path(stage.args.out) / c.run_id for c in plan(**_recipe(cli.train_kwargs(stage.args)))]
            elif stage.kind in ("explain", "evaluate"):
                stage.runs = None if "runs" in stage.keys else list(runs)
                kw = getattr(cli, f"{stage.kind}_kwargs")(stage.args)
                plan_jobs(kw["interps"], kw.get("metrics"), kw["n"], kw["hparams"])
        except XbenchError as err:
            raise study.error(stage, _culprit(stage, str(err)), str(err)) from None
        if stage.kind == "evaluate":
            reports = stage.args.out
    for stage in stages:
        if stage.kind in ("explain", "evaluate") and "runs" in stage.keys:
            pattern = stage.args.runs
            if not any(fnmatch.fnmatch(str(r), pattern) for r in runs) and not glob.glob(pattern):
                raise study.error(stage, "runs", f"runs {pattern!r} names no run the train tables make (they make "
                                                 f"{', '.join(str(r) for r in runs[:3]) or 'none'}"
                                                 f"{', …' if len(runs) > 3 else ''})")
    return Study(study, stages, base, runs)


def _recipe(train_kwargs: dict) -> dict:
    """What :func:`xbench.train.plan` takes of train's arguments (where and how to run are not part of a run)."""
    return {k: v for k, v in train_kwargs.items() if k not in ("out", "device", "data_root", "download", "progress")}


def _stage_kwargs(study: Study, stage: Stage) -> dict:
    from . import cli

    kw = getattr(cli, f"{stage.kind}_kwargs")(stage.args)
    if stage.kind in ("explain", "evaluate"):  # the study's runs (those a `runs` pattern names), trained or not
        pattern = kw["runs"] if "runs" in stage.keys else "*"
        named = [str(r) for r in (study.runs if stage.runs is None else stage.runs) if fnmatch.fnmatch(str(r), pattern)]
        kw["runs"] = named + sorted(p for p in glob.glob(pattern) if Path(p).is_dir() and p not in named
                                    ) if "runs" in stage.keys else named
    return kw


def _evaluate_jobs(interps: list, maps: list, model: list, hparams: dict | None) -> int:
    """Jobs per run, comma lists in settings crossed (one job per value)."""
    from .metrics import METRICS
    from .variants import cross

    count = {m: len(cross(METRICS, m, (hparams or {}).get(m, {}))) for m in maps + model}
    return len(interps) * sum(count[m] for m in maps) + sum(count[m] for m in model)


def dry_run(study: Study) -> list[str]:
    """The plan, stage by stage, with what is done and what is left; nothing is computed or written."""
    from .evaluate import evaluate, plan_jobs
    from .explain import explain
    from .checkpoints import CHECKPOINT_NAME
    from .train import epochs_done, plan

    lines = [f"study {study.tag['name']} ({study.file.path}, sha256 {study.file.sha256[:12]}), out {study.out}"]
    for stage in study.stages:
        kw = _stage_kwargs(study, stage)
        if stage.kind == "train":
            configs = plan(**_recipe(kw))
            left = [c.run_id for c in configs if epochs_done(c, kw["out"]) < c.epochs]
            lines.append(f"[{stage.label}] {len(configs)} run(s) in {kw['out']}: {len(left)} to train, "
                         f"{len(configs) - len(left)} done")
            lines += [f"    to train: {r}" for r in left]
            continue
        if stage.kind == "report":
            lines.append(f"[{stage.label}] leaderboard, pairs and figures in {kw['out']}")
            continue
        trained = [r for r in kw["runs"] if Path(r, CHECKPOINT_NAME).is_file()]
        pending = len(kw["runs"]) - len(trained)
        done = "none yet (no run is trained)"
        if trained:
            done = (explain if stage.kind == "explain" else evaluate)(**{**kw, "runs": trained, "progress": False},
                                                                      dry_run=True)
            done = done[0] if isinstance(done, list) else done
        interps, maps, model = plan_jobs(kw["interps"], kw.get("metrics"), kw["n"], kw["hparams"])
        per_run = len(interps) if stage.kind == "explain" else _evaluate_jobs(interps, maps, model, kw["hparams"])
        note = f"; {pending} run(s) not trained yet: {pending * per_run} more" if pending else ""
        lines.append(f"[{stage.label}] {per_run} job(s) per run: {done}{note}")
    return lines


def run_study(study: Study) -> None:
    """Run the stages in order; each skips what is already done (under torchrun, rank 0 alone prints)."""
    from . import cli, dist
    from .evaluate import evaluate
    from .explain import explain
    from .reports import build_report
    from .train import train

    say = print if dist.is_main() else (lambda *a, **k: None)
    for stage in study.stages:
        kw = _stage_kwargs(study, stage)
        say(f"xbench run: [{stage.label}]", flush=True)
        if stage.kind == "train":
            runs = train(**kw)
            if dist.is_main():
                cli._print_runs(runs)
        elif stage.kind == "explain":
            say("\n".join(explain(**kw)))
        elif stage.kind == "evaluate":
            say(evaluate(**kw, study=study.tag))
        elif dist.is_main():  # the report reads files only: one rank builds it
            result = build_report(**kw)
            if not stage.args.quiet:
                print(result.text)
            print(f"wrote {', '.join(result.files)}")
