"""One registry class for every family: models, optimizers, datasets, interpreters, metrics.

    MODELS = Registry("model")

    @MODELS.register("lenet")
    class LeNet(...): ...

    MODELS.create("lenet", num_classes=10)
    MODELS.list("acnn*")            # wildcards (fnmatch), sorted
    MODELS.resolve("cam,sat")       # comma lists, wildcards and "all" -> names

Metadata live on the registered object itself (class attributes), never in a second hand-kept list. Settings are
declared once per entry as ``settings = {name: Setting(...)}`` (a class attribute, or ``register(name,
settings=...)`` for a factory function) and checked in :meth:`Registry.create`, so the command line, the Python API
and study files get the same one-line error for a bad value (``settings.py``). A name of the form
``prefix:argument`` (``tv:resnet18``, ``imagefolder:/data/imagenet``) selects the entry ``prefix`` and passes
``argument`` as the first positional argument; such entries register with ``takes_arg=True``.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from typing import Any, Callable, Generic, Iterable, TypeVar

from .errors import UnknownNameError, XbenchError
from .settings import Setting, check, describe

T = TypeVar("T")

# Every family by the name `xbench list` uses, and where its registry lives (imported on demand).
FAMILIES = {"models": "xbench.models:MODELS", "optimizers": "xbench.optim:OPTIMIZERS",
            "datasets": "xbench.data:DATASETS", "interpreters": "xbench.interpreters:INTERPRETERS",
            "metrics": "xbench.metrics:METRICS", "objectives": "xbench.objectives:OBJECTIVES",
            "recipes": "xbench.recipes:RECIPES"}


def family(name: str) -> "Registry":
    """The registry of a family named in :data:`FAMILIES` (``"interpreters"`` → ``INTERPRETERS``)."""
    import importlib

    if name not in FAMILIES:
        raise UnknownNameError(f"unknown family {name!r} (known: {', '.join(FAMILIES)})")
    module, attr = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """A named family of factories (classes or functions)."""

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, T] = {}
        self._takes_arg: set[str] = set()

    def register(self, name: str, *, takes_arg: bool = False,
                 settings: dict[str, Setting] | None = None) -> Callable[[T], T]:
        """Decorator: register a class or factory function under ``name`` (``settings`` for functions)."""
        if name in self._entries:
            raise ValueError(f"{self.family} {name!r} is registered twice")

        def deco(obj: T) -> T:
            self._entries[name] = obj
            if takes_arg:
                self._takes_arg.add(name)
            try:
                obj.registry_name = name  # type: ignore[attr-defined]
                if settings is not None:
                    obj.settings = settings  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return deco

    def _split(self, name: str) -> tuple[str, str | None]:
        head, sep, arg = name.partition(":")
        if sep and head in self._takes_arg:
            return head, arg
        return name, None

    def get(self, name: str) -> T:
        """The registered object for ``name`` (``prefix:arg`` names give the prefix's entry)."""
        key, _ = self._split(name)
        if key in self._entries:
            return self._entries[key]
        choices = list(self._entries) + [f"{k}:<arg>" for k in self._takes_arg]
        close = difflib.get_close_matches(key, choices, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown {self.family} {name!r}{hint} (known: {', '.join(sorted(choices))})")

    def takes_arg(self, name: str) -> bool:
        """Whether ``name`` is a ``prefix:argument`` entry (``tv:resnet18``)."""
        return self._split(name)[0] in self._takes_arg

    def settings(self, name: str) -> dict[str, Setting]:
        """The declared settings of ``name`` (empty when it has none)."""
        return dict(getattr(self.get(name), "settings", None) or {})

    def check(self, name: str, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` settings of ``name`` parsed and checked, defaults filled in (before any work is started)."""
        key, _ = self._split(name)
        return check(f"{self.family} {key}", self.settings(name), {k: v for k, v in given.items() if v is not None})

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Instantiate ``name`` with every declared setting checked and resolved (defaults filled in).

        Keyword arguments that are None are dropped so the defaults apply. Keywords the factory names in its
        signature and does not declare as settings (``in_channels``, ``root``) are context and pass unchecked;
        every other keyword must be a declared setting.
        """
        obj = self.get(name)
        key, arg = self._split(name)
        if arg is not None:
            args = (arg, *args)
        elif key in self._takes_arg and not args and _first_param_required(obj):
            raise XbenchError(f"{self.family} {key!r} needs an argument: {key}:<value>")
        schema = self.settings(name)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        named = _named_params(obj)
        context = {k: v for k, v in kwargs.items() if k not in schema and k in named}
        values = check(f"{self.family} {key}", schema, {k: v for k, v in kwargs.items() if k not in context})
        return obj(*args, **context, **values)  # type: ignore[operator]

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a wildcard pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def resolve(self, spec: str | Iterable[str]) -> list[str]:
        """Expand ``"a,b*"``, ``"all"`` or a list into registered names (order kept, no repeats)."""
        parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
        out: list[str] = []
        for part in parts:
            if not part:
                continue
            if part == "all":
                found = self.list()
            elif any(c in part for c in "*?["):
                found = self.list(part)
                if not found:
                    raise UnknownNameError(f"no {self.family} matches {part!r} (known: {', '.join(self.list())})")
            else:
                self.get(part)
                found = [part]
            out.extend(n for n in found if n not in out)
        if not out:
            raise XbenchError(f"no {self.family} given")
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._split(name)[0] in self._entries

    def __iter__(self):
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self) -> list[tuple[str, str]]:
        """(name, first docstring line) for every entry, for ``xbench list``."""
        rows = []
        for name in self.list():
            doc = (getattr(self._entries[name], "__doc__", None) or "").strip().splitlines()
            shown = f"{name}:<arg>" if name in self._takes_arg else name
            rows.append((shown, doc[0] if doc else ""))
        return rows

    def describe_settings(self, name: str) -> list[tuple[str, str, str, str, str]]:
        """(setting, type, default, allowed, description) rows of one entry, for ``xbench list -v``."""
        return describe(self.settings(name))


def _named_params(obj: Any) -> set[str]:
    """Keyword names a factory accepts explicitly (not through ``**kwargs``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in inspect.signature(obj).parameters.values() if p.kind in kinds}


def _first_param_required(obj: Any) -> bool:
    params = list(inspect.signature(obj).parameters.values())
    return bool(params) and params[0].default is inspect.Parameter.empty
