"""The ``xbench`` command: argparse subcommands that call the library functions, nothing else.

User mistakes end in one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
import warnings
from typing import Sequence

from . import dist
from .errors import TrainingDiverged, XbenchError
from .cli_flags import COMMANDS
from .registry import family


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        raise XbenchError(f"{message} (see `{self.prog} --help`)")


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    p = _Parser(prog="xbench", description="Explainability benchmarking for PyTorch: paired SGD/Bort training, "
                                           "interpreters, metrics, leaderboards.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (text, flags) in COMMANDS.items():
        q = sub.add_parser(name, help=text)
        if name == command:
            flags(q)
    return p


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
