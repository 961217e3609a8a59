"""The ``xbench`` command: argparse subcommands that call the library functions, nothing else.

User mistakes end in one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import fnmatch
import importlib
import sys
import warnings
from typing import Sequence

from .errors import TrainingDiverged, XbenchError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        raise XbenchError(f"{message} (see `{self.prog} --help`)")


def _kv(text: str) -> tuple[str, object]:
    """``key=value`` with the value parsed as int, float, bool or kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, not {text!r}")
    for cast in (int, float):
        try:
            return key.replace("-", "_"), cast(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return key.replace("-", "_"), value.lower() == "true"
    return key.replace("-", "_"), value


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {text!r}") from None


def _amplitude(text: str) -> float | str:
    return text if text == "ada" else float(text)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xbench", description="Explainability benchmarking for PyTorch: paired SGD/Bort training, "
                                           "interpreters, metrics, leaderboards.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train paired runs (one per optimizer and seed)")
    g = t.add_argument_group("what to train")
    g.add_argument("--model", default="lenet", help="model name (default: lenet); see `xbench list models`")
    g.add_argument("--data", default="mnist10k", help="dataset name (default: mnist10k)")
    g.add_argument("--opt", default="sgd,bort-s", help="optimizers, comma separated (default: sgd,bort-s)")
    g.add_argument("--seeds", default="0", help="seeds, comma separated (default: 0)")
    g.add_argument("--width", type=float, default=None, help="channel width multiplier (acnn models)")
    g.add_argument("--model-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="extra model argument, e.g. shape=3x500 for mlp (repeatable)")
    g = t.add_argument_group("recipe (defaults: the Bort paper's Table 1)")
    g.add_argument("--epochs", type=int, default=40, help="epochs (default: 40)")
    g.add_argument("--lr", type=float, default=0.01, help="learning rate (default: 0.01)")
    g.add_argument("--batch-size", type=int, default=256, help="batch size (default: 256)")
    g.add_argument("--weight-decay", type=float, default=0.01, help="weight decay on Conv/Linear weights (default: 0.01)")
    g.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default: 0)")
    g.add_argument("--bort-lambda", "--lambda", type=float, default=0.1, help="Bort λ (default: 0.1)")
    g.add_argument("--bort-mode", default="l2", choices=["l2", "l1"], help="Bort penalty (default: l2)")
    g.add_argument("--bort-amplitude", type=_amplitude, default=1.0, help="Bort amplitude a, or 'ada' (default: 1)")
    g.add_argument("--dbort", type=_floats, default=None, metavar="LAMBDA_D[,BETA]",
                   help="DBort auxiliary loss −λ_D·mean(logits²)^β (β defaults to 0.1)")
    _common(t, data=True)

    e = sub.add_parser("explain", help="saliency maps for held-out images of trained runs (cached)")
    e.add_argument("--run", "--runs", dest="runs", required=True, help="run folder(s); wildcards allowed")
    e.add_argument("--interp", default="all", help="interpreters, comma separated or 'all' (default: all)")
    e.add_argument("--n", type=int, default=64, help="number of held-out images (default: 64)")
    e.add_argument("--hparam", type=_kv, action="append", default=[], metavar="INTERP.KEY=VALUE",
                   help="interpreter setting, e.g. rise.n_masks=2000 (repeatable)")
    e.add_argument("--batch-size", type=int, default=32, help="images per interpreter call (default: 32)")
    _common(e, data=True, out=False)

    v = sub.add_parser("evaluate", help="score maps and models; append records to results.jsonl")
    v.add_argument("--runs", required=True, help="run folders, wildcards allowed (e.g. 'checkpoints/*')")
    v.add_argument("--interp", default=None, help="interpreters for map metrics ('all' for every one)")
    v.add_argument("--metric", default=None, help="metrics, comma separated (default: every metric that applies)")
    v.add_argument("--n", type=int, default=100, help="number of held-out images (default: 100)")
    v.add_argument("--hparam", type=_kv, action="append", default=[], metavar="NAME.KEY=VALUE",
                   help="interpreter or metric setting, e.g. deletion.step=20 (repeatable)")
    v.add_argument("--force", action="store_true", help="recompute records that already exist")
    v.add_argument("--batch-size", type=int, default=32, help="images per batch (default: 32)")
    _common(v, data=True, out="reports")

    r = sub.add_parser("report", help="leaderboard.csv/html, pairs.csv and figures from results.jsonl")
    r.add_argument("--results", default=None, help="results file (default: <out>/results.jsonl)")
    r.add_argument("--out", default="reports", help="report folder (default: reports)")
    r.add_argument("--no-figures", action="store_true", help="tables only")
    r.add_argument("--quiet", action="store_true", help="do not print the leaderboard")

    ls = sub.add_parser("list", help="list registered names")
    ls.add_argument("family", choices=["models", "optimizers", "datasets", "interpreters", "metrics"])
    ls.add_argument("pattern", nargs="?", default="*", help="wildcard filter (default: *)")
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


def _cmd_train(a: argparse.Namespace) -> None:
    from .train import train

    model_kwargs = dict(a.model_arg)
    if a.width is not None:
        model_kwargs["width"] = a.width
    dbort = None
    if a.dbort is not None:
        dbort = [a.dbort[0], a.dbort[1] if len(a.dbort) > 1 else 0.1]
    try:
        runs = train(model=a.model, data=a.data, opt=a.opt, seeds=a.seeds, out=a.out, device=a.device,
                     data_root=a.data_root, download=a.download, progress=False if a.quiet else None,
                     epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, weight_decay=a.weight_decay,
                     momentum=a.momentum, bort_lambda=a.bort_lambda, bort_mode=a.bort_mode,
                     bort_amplitude=a.bort_amplitude, dbort=dbort, model_kwargs=model_kwargs)
    except TrainingDiverged as err:
        _print_runs(err.runs)  # the runs that finished are worth seeing; then the one-line error
        raise
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
        by_opt.setdefault(r["opt"], []).append(100 * r["heldout_acc"])
    for opt, accs in by_opt.items():
        mean = sum(accs) / len(accs)
        std = (sum((x - mean) ** 2 for x in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
        print(f"{opt}: held-out accuracy {mean:.2f} ± {std:.2f} % over {len(accs)} seed(s)")


def _cmd_list(a: argparse.Namespace) -> None:
    module, registry = {"models": ("xbench.models", "MODELS"), "optimizers": ("xbench.optim", "OPTIMIZERS"),
                        "datasets": ("xbench.data", "DATASETS"),
                        "interpreters": ("xbench.interpreters", "INTERPRETERS"),
                        "metrics": ("xbench.metrics", "METRICS")}[a.family]
    reg = getattr(importlib.import_module(module), registry)
    rows = [(n, d) for n, d in reg.describe() if fnmatch.fnmatchcase(n.split(":")[0], a.pattern)]
    width = max((len(n) for n, _ in rows), default=0)
    for name, doc in rows:
        print(f"{name:<{width}}  {doc}")


def _hparams(pairs: list[tuple[str, object]]) -> dict[str, dict]:
    """``rise.n_masks=2000`` → {"rise": {"n_masks": 2000}}."""
    out: dict[str, dict] = {}
    for key, value in pairs:
        name, sep, field = key.partition(".")
        if not sep:
            raise XbenchError(f"--hparam wants NAME.KEY=VALUE, not {key}={value}")
        out.setdefault(name, {})[field] = value
    return out


def _cmd_explain(a: argparse.Namespace) -> None:
    from .explain import explain

    for line in explain(a.runs, interps=a.interp, n=a.n, hparams=_hparams(a.hparam), device=a.device,
                        batch_size=a.batch_size, data_root=a.data_root, progress=False if a.quiet else None):
        print(line)


def _cmd_evaluate(a: argparse.Namespace) -> None:
    from .evaluate import evaluate

    summary = evaluate(a.runs, interps=a.interp, metrics=a.metric, n=a.n, hparams=_hparams(a.hparam), out=a.out,
                       device=a.device, batch_size=a.batch_size, force=a.force, data_root=a.data_root,
                       progress=False if a.quiet else None)
    print(summary)


def _cmd_report(a: argparse.Namespace) -> None:
    from .reports import build_report

    result = build_report(a.out, results=a.results, figures=not a.no_figures)
    if not a.quiet:
        print(result.text)
    print(f"wrote {', '.join(result.files)}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings from the command line read like its errors: one line, no source excerpt."""
    print(f"xbench: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with warnings.catch_warnings():  # restores the library's warning display when the command returns
            warnings.showwarning = _one_line_warning
            args = _parser().parse_args(argv)
            {"train": _cmd_train, "list": _cmd_list, "explain": _cmd_explain, "evaluate": _cmd_evaluate,
             "report": _cmd_report}[args.command](args)
    except XbenchError as err:
        print(f"xbench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xbench: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
