"""xbench: train paired SGD/Bort models, explain them, score the explanations, report Bort − SGD.

    import xbench
    runs = xbench.train(model="lenet", data="mnist10k", opt="sgd,bort-s", seeds=[0, 1, 2])
    xbench.explain("checkpoints/<run>", interps="cam,sat", n=64)
    xbench.evaluate("checkpoints/*", interps="sat", metrics="deletion,insertion")
    xbench.build_report("reports/")

Names resolve lazily so that ``xbench.reports`` (pandas only) can be used without importing torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "train": "xbench.train", "load_run": "xbench.train",
    "explain": "xbench.explain", "evaluate": "xbench.evaluate", "build_report": "xbench.reports",
    "create_model": "xbench.models", "list_models": "xbench.models",
    "create_dataset": "xbench.data", "list_datasets": "xbench.data",
    "create_optimizer": "xbench.optim", "list_optimizers": "xbench.optim", "Bort": "xbench.optim",
    "create_interpreter": "xbench.interpreters", "list_interpreters": "xbench.interpreters",
    "create_metric": "xbench.metrics", "list_metrics": "xbench.metrics",
    "create_objective": "xbench.objectives", "list_objectives": "xbench.objectives", "DCSplit": "xbench.dc",
    "list_recipes": "xbench.recipes",
    "XbenchError": "xbench.errors",
}


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'xbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
