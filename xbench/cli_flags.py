"""The flags of each ``xbench`` subcommand (built only when that command runs: some import torch). Defaults, ranges
and help come from the library's declared Settings and function signatures, so they are written once."""
from __future__ import annotations

import argparse
import inspect

from .registry import FAMILIES


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


def _common(p: argparse.ArgumentParser, data: bool = False, out: str | bool = "checkpoints") -> None:
    g = p.add_argument_group("where and how")
    if out:
        g.add_argument("--out", default=out, help=f"output folder (default: {out})")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")
    if data:
        g.add_argument("--data-root", default=None, help="folder of torchvision datasets (default: ./data)")
        g.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
