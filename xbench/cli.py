"""The ``xbench`` command: argparse subcommands that call the library functions, nothing else.

User mistakes end in one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import fnmatch
import inspect
import sys
import warnings
from typing import Sequence

from . import dist
from .errors import TrainingDiverged, XbenchError
from .registry import FAMILIES, family


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        raise XbenchError(f"{message} (see `{self.prog} --help`)")


def _kv(text: str) -> tuple[str, str]:
    """``key=value``; the value stays text and is parsed by the declared type of the setting it names."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, not {text!r}")
    return key.replace("-", "_"), value


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {text!r}") from None


def _default(func, name: str):
    """A library function's own default: the one place it is declared."""
    return inspect.signature(func).parameters[name].default


def _setting_flag(g, name: str, setting, *aliases: str) -> None:
    """A flag whose default, range and help come from a declared Setting; the value is checked by the library."""
    g.add_argument(f"--{name.replace('_', '-')}", *aliases, dest=name, default=None, metavar=name.upper(),
                   help=f"{setting.help} (default: {setting.default}; {setting.allowed()})")


def _train_flags(t: argparse.ArgumentParser) -> None:
    from .train import train
    from .train_config import TRAIN_SETTINGS

    g = t.add_argument_group("what to train")
    g.add_argument("--model", default=_default(train, "model"), help="model name; see `xbench list models` (default: %(default)s)")
    g.add_argument("--data", default=_default(train, "data"), help="dataset name; see `xbench list datasets` (default: %(default)s)")
    g.add_argument("--opt", default=_default(train, "opt"), help="optimizers, comma separated (default: %(default)s)")
    g.add_argument("--seeds", default="0", help="seeds, comma separated (default: 0)")
    g.add_argument("--method", default=_default(train, "method"),
                   help="training objectives, comma separated, crossed with --opt; see `xbench list objectives -v` "
                        "(default: %(default)s)")
    g.add_argument("--adv-eps", default=None, help="adversarial radius ε in pixel space (same as --method-arg eps=)")
    g.add_argument("--adv-steps", default=None, help="attack steps: 1 = one-step, more = iterative (--method-arg "
                                                     "steps=)")
    g.add_argument("--method-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="objective setting, e.g. group=7 for adv-group (repeatable; goes to every method declaring it)")
    g.add_argument("--data-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="dataset setting, e.g. size=64 for imagefolder (repeatable; `xbench list datasets -v`)")
    g.add_argument("--width", default=None, help="channel width multiplier (acnn models; same as --model-arg width=)")
    g.add_argument("--model-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="model setting, e.g. shape=3x500 for mlp (repeatable; `xbench list models -v`)")
    g = t.add_argument_group("recipe (defaults: the Bort paper's Table 1)")
    for name, setting in TRAIN_SETTINGS.items():
        if name != "seed":
            _setting_flag(g, name, setting, *(["--lambda"] if name == "bort_lambda" else []))
    g.add_argument("--dbort", type=_floats, default=None, metavar="LAMBDA_D[,BETA]",
                   help="DBort auxiliary loss −λ_D·mean(logits²)^β (β defaults to 0.1)")
    _scale_flags(t)
    _common(t, data=True)


def _scale_flags(t: argparse.ArgumentParser) -> None:
    """Recipes, schedule/augmentation/loss/precision (xbench/recipes.py) and placement/speed (xbench/train_dist.py)."""
    from .recipes import RECIPE_SETTINGS
    from .train_dist import EXEC_SETTINGS

    g = t.add_argument_group("recipe presets, schedule, augmentation and loss (timm)")
    g.add_argument("--recipe", default="paper-mnist",
                   help="named preset of these settings; each flag overrides it (`xbench list recipes -v`; default: "
                        "%(default)s)")
    for name, setting in RECIPE_SETTINGS.items():
        _switch(g, name, setting)
    g = t.add_argument_group("placement under torchrun, and speed")
    for name, setting in EXEC_SETTINGS.items():
        _switch(g, name, setting)


def _switch(g, name: str, setting) -> None:
    """A setting flag; a true/false one also works bare (``--channels-last`` = ``--channels-last true``)."""
    if setting.kind is not bool:
        return _setting_flag(g, name, setting)
    g.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, nargs="?", const="true",
                   metavar="true|false", help=f"{setting.help} (default: {setting.default})")


def _explain_flags(e: argparse.ArgumentParser) -> None:
    from .explain import explain

    e.add_argument("--run", "--runs", dest="runs", required=True, help="run folder(s); wildcards allowed")
    e.add_argument("--interp", default=_default(explain, "interps"), help="interpreters, comma separated or 'all' (default: %(default)s)")
    e.add_argument("--n", "--n-examples", dest="n", type=int, default=_default(explain, "n"), help="number of held-out images (default: %(default)s)")
    e.add_argument("--hparam", type=_kv, action="append", default=[], metavar="INTERP.KEY=VALUE",
                   help="interpreter setting, e.g. rise.n_masks=2000 (repeatable; `xbench list interpreters -v`)")
    e.add_argument("--batch-size", type=int, default=_default(explain, "batch_size"),
                   help="images per interpreter call (default: %(default)s; memory only: maps do not depend on it)")
    _common(e, data=True, out=False)


def _evaluate_flags(v: argparse.ArgumentParser) -> None:
    from .evaluate import evaluate

    v.add_argument("--runs", required=True, help="run folders, wildcards allowed (e.g. 'checkpoints/*')")
    v.add_argument("--interp", default=None, help="interpreters for map metrics ('all' for every one)")
    v.add_argument("--metric", default=None, help="metrics, comma separated (default: every metric that applies)")
    v.add_argument("--n", "--n-examples", dest="n", type=int, default=_default(evaluate, "n"), help="number of held-out images (default: %(default)s)")
    v.add_argument("--hparam", type=_kv, action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="interpreter or metric setting, e.g. deletion.step=20 (repeatable; `xbench list metrics -v`)")
    v.add_argument("--force", action="store_true", help="recompute records that already exist")
    v.add_argument("--batch-size", type=int, default=_default(evaluate, "batch_size"),
                   help="images per batch (default: %(default)s; memory only: scores do not depend on it)")
    _common(v, data=True, out=_default(evaluate, "out"))


def _import_flags(i: argparse.ArgumentParser) -> None:
    i.add_argument("--model", required=True, help="tv:<name> or an xbench model (`xbench list models`)")
    i.add_argument("--weights", required=True, help="state_dict or checkpoint file (loaded with weights_only=True), "
                                                    "or 'pretrained' (the library's default weights)")
    i.add_argument("--data", required=True, help="dataset whose held-out split the run is scored on, e.g. "
                                                 "imagefolder:/data/val")
    i.add_argument("--model-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE", help="model setting")
    _common(i, data=True)


def _report_flags(r: argparse.ArgumentParser) -> None:
    r.add_argument("--results", default=None, help="results file (default: <out>/results.jsonl)")
    r.add_argument("--out", default="reports", help="report folder (default: reports)")
    r.add_argument("--no-figures", action="store_true", help="tables only")
    r.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the ranking intervals, at "
                                                             "least 100 (default: %(default)s)")
    r.add_argument("--clip", type=float, default=0.0, help="quantile clipped at each end of every interpreter's "
                                                         "scores before their mean, in [0, 0.5) (default: 0)")
    r.add_argument("--quiet", action="store_true", help="do not print the leaderboard")


def _list_flags(ls: argparse.ArgumentParser) -> None:
    ls.add_argument("family", choices=list(FAMILIES))
    ls.add_argument("pattern", nargs="?", default="*", help="wildcard filter (default: *)")
    ls.add_argument("-v", "--verbose", action="store_true", help="each entry's settings: type, default, range, help")


def _run_flags(r: argparse.ArgumentParser) -> None:
    r.add_argument("study", help="study file (TOML; see studies/ and `xbench run --help`)")
    r.add_argument("--dry-run", action="store_true", help="print the plan and the jobs left; run nothing")
    r.add_argument("--out", default=None, help="base folder of the study's outputs (default: the file's [study] "
                                               "out, else studies-out/<file name>)")
    _common(r, data=True, out=False)


COMMANDS = {  # name: (help, flags); a command's flags are built only when it runs (they may import torch)
    "train": ("train paired runs (one per optimizer and seed)", _train_flags),
    "explain": ("saliency maps for held-out images of trained runs (cached)", _explain_flags),
    "evaluate": ("score maps and models; append records to results.jsonl", _evaluate_flags),
    "import": ("turn weights trained elsewhere into a run folder (held-out accuracy measured)", _import_flags),
    "report": ("leaderboard.csv/html, pairs.csv and figures from results.jsonl", _report_flags),
    "run": ("a whole study from one TOML file: train → explain → evaluate → report, resumable", _run_flags),
    "list": ("list registered names (-v: with their settings)", _list_flags),
}


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog="xbench", description="Explainability benchmarking for PyTorch: paired SGD/Bort training, "
                                           "interpreters, metrics, leaderboards.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (text, flags) in COMMANDS.items():
        q = sub.add_parser(name, help=text)
        if name == command:
            flags(q)
    return p


def _common(p: argparse.ArgumentParser, data: bool = False, out: str | bool = "checkpoints") -> None:
    g = p.add_argument_group("where and how")
    if out:
        g.add_argument("--out", default=out, help=f"output folder (default: {out})")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")
    if data:
        g.add_argument("--data-root", default=None, help="folder of torchvision datasets (default: ./data)")
        g.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def train_kwargs(a: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`xbench.train.train` that parsed ``train`` flags stand for."""
    from .recipes import RECIPE_SETTINGS
    from .train_config import TRAIN_SETTINGS
    from .train_dist import EXEC_SETTINGS

    model_kwargs = dict(a.model_arg)
    if a.width is not None:
        model_kwargs["width"] = a.width
    dbort = None
    if a.dbort is not None:
        dbort = [a.dbort[0], a.dbort[1] if len(a.dbort) > 1 else 0.1]
    recipe = {k: getattr(a, k) for k in [*TRAIN_SETTINGS, *RECIPE_SETTINGS, *EXEC_SETTINGS]
              if k != "seed" and getattr(a, k) is not None}
    method_kwargs = dict(a.method_arg)
    for key, value in (("eps", a.adv_eps), ("steps", a.adv_steps)):
        if value is not None:
            method_kwargs[key] = value
    return dict(model=a.model, data=a.data, opt=a.opt, seeds=a.seeds, out=a.out, device=a.device,
                data_root=a.data_root, download=a.download, progress=False if a.quiet else None, dbort=dbort,
                model_kwargs=model_kwargs, method=a.method, method_kwargs=method_kwargs, recipe=a.recipe,
                data_kwargs=dict(a.data_arg), **recipe)


def _cmd_train(a: argparse.Namespace) -> None:
    from .train import train

    try:
        runs = train(**train_kwargs(a))
    except TrainingDiverged as err:
        if dist.is_main():
            _print_runs(err.runs)  # the runs that finished are worth seeing; then the one-line error
        raise
    if dist.is_main():  # under torchrun every rank returns every summary; one prints them
        _print_runs(runs)


def _print_runs(runs: list[dict]) -> None:
    print(f"{'run':<48} {'epochs':>6} {'held-out acc':>12} {'ortho err':>10}")
    for r in runs:
        note = f"  diverged in epoch {r['diverged_at']}" if r.get("diverged_at") else ""
        print(f"{r['run_id']:<48} {r['epochs']:>6} {100 * r['heldout_acc']:>11.2f}% {r['ortho_error']:>10.4f}{note}")
    by_opt: dict[str, list[float]] = {}
    for r in runs:
        if r.get("diverged_at"):
            continue
        arm = r["opt"] if r.get("method", "erm") == "erm" else f"{r['method']} · {r['opt']}"
        arm += f" · l1 {r['l1']:g}" if r.get("l1") else ""
        by_opt.setdefault(arm, []).append(100 * r["heldout_acc"])
    for opt, accs in by_opt.items():
        mean = sum(accs) / len(accs)
        std = (sum((x - mean) ** 2 for x in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
        print(f"{opt}: held-out accuracy {mean:.2f} ± {std:.2f} % over {len(accs)} seed(s)")


def _cmd_list(a: argparse.Namespace) -> None:
    reg = family(a.family)
    rows = [(n, d) for n, d in reg.describe() if fnmatch.fnmatchcase(n.split(":")[0], a.pattern)]
    width = max((len(n) for n, _ in rows), default=0)
    for name, doc in rows:
        print(f"{name:<{width}}  {doc}")
        if a.verbose and a.family == "recipes":
            from .recipes import describe_recipe

            for line in describe_recipe(name):
                print(f"    {line}")
        elif a.verbose:
            for setting, kind, default, allowed, text in reg.describe_settings(name.split(":")[0]):
                print(f"    {setting:<20} {kind:<10} default {default:<14} {allowed}")
                print(f"    {'':<20} {text}")


def _hparams(pairs: list[tuple[str, object]]) -> dict[str, dict]:
    """``rise.n_masks=2000`` → {"rise": {"n_masks": 2000}}."""
    out: dict[str, dict] = {}
    for key, value in pairs:
        name, sep, field = key.partition(".")
        if not sep:
            raise XbenchError(f"--hparam wants NAME.KEY=VALUE, not {key}={value}")
        out.setdefault(name, {})[field] = value
    return out


def explain_kwargs(a: argparse.Namespace) -> dict:
    return dict(runs=a.runs, interps=a.interp, n=a.n, hparams=_hparams(a.hparam), device=a.device,
                batch_size=a.batch_size, data_root=a.data_root, progress=False if a.quiet else None)


def evaluate_kwargs(a: argparse.Namespace) -> dict:
    return dict(runs=a.runs, interps=a.interp, metrics=a.metric, n=a.n, hparams=_hparams(a.hparam), out=a.out,
                device=a.device, batch_size=a.batch_size, force=a.force, data_root=a.data_root,
                progress=False if a.quiet else None)


def report_kwargs(a: argparse.Namespace) -> dict:
    return dict(out=a.out, results=a.results, figures=not a.no_figures, bootstrap=a.bootstrap,
                clip=a.clip)


def _cmd_explain(a: argparse.Namespace) -> None:
    from .explain import explain

    for line in explain(**explain_kwargs(a)):
        if dist.is_main():  # under torchrun rank 0 speaks for the job
            print(line)


def _cmd_evaluate(a: argparse.Namespace) -> None:
    from .evaluate import evaluate

    summary = evaluate(**evaluate_kwargs(a))
    if dist.is_main():  # under torchrun rank 0 speaks for the job
        print(summary)


def _cmd_import(a: argparse.Namespace) -> None:
    from .importer import import_model

    r = import_model(a.model, a.weights, a.data, out=a.out, device=a.device, data_root=a.data_root,
                     model_kwargs=dict(a.model_arg))
    print(f"{r['run_id']}  held-out acc {100 * r['heldout_acc']:.2f}% on {r['n_heldout']} images  "
          f"({r['layout']})  {r['run_dir']}")


def _cmd_report(a: argparse.Namespace) -> None:
    from .reports import build_report

    result = build_report(**report_kwargs(a))
    if not a.quiet:
        print(result.text)
    print(f"wrote {', '.join(result.files)}")


def _cmd_run(a: argparse.Namespace) -> None:
    from .run import dry_run, load_study, run_study

    study = load_study(a.study, a.out, device=a.device, **{"data-root": a.data_root, "quiet": a.quiet,
                                                                   "download": a.download})
    if a.dry_run:
        print("\n".join(dry_run(study)))
    else:
        run_study(study)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings from the command line read like its errors: one line, no source excerpt."""
    print(f"xbench: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # dist.command: under torchrun a user error on any rank ends every rank with exit code 2 and one line
        with warnings.catch_warnings(), dist.command():  # restores the warning display when the command returns
            warnings.showwarning = _one_line_warning
            argv = list(sys.argv[1:] if argv is None else argv)
            args = _parser(argv[0] if argv else None).parse_args(argv)
            {"train": _cmd_train, "list": _cmd_list, "explain": _cmd_explain, "evaluate": _cmd_evaluate,
             "report": _cmd_report, "run": _cmd_run, "import": _cmd_import}[args.command](args)
    except XbenchError as err:
        if dist.should_print(err):
            print(f"xbench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xbench: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
