"""Typed settings: each registry entry declares its settings once, and every value is checked on the way in.

    @INTERPRETERS.register("rise")
    class RISE(Interpreter):
        settings = {"n_masks": Setting(4000, "number of random masks", range="[1, inf)"),
                    "p": Setting(0.5, "keep-probability of a grid cell", range="(0, 1)"),
                    "batch_size": Setting(4096, "masked images per forward pass", range="[1, inf)", memory=True)}

A :class:`Setting` has a default, a one-line description, a type (the default's, unless given), an allowed range
(interval notation) or set of choices, and says whether ``None`` is allowed (``optional``: "resolved later", such
as the model's own feature layer) and whether it only trades memory for speed (``memory``: left out of cache and
resume keys, so another memory budget reuses the cache). :func:`check` turns user values (text from the command
line or a study file, or Python values) into typed, range-checked ones or raises one :class:`XbenchError` line
naming the entry, the setting, the bad value and what is allowed.

Why the standard library (dataclasses) and not a validation library such as pydantic: the settings are flat
scalars with ranges; a few dozen lines cover them exactly, with the error wording a one-line CLI needs, and keep
the shared floor free of a dependency whose major versions change its API.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import XbenchError

_TYPE_NAMES = {int: "int", float: "float", str: "text", bool: "true/false"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_INTERVAL = re.compile(r"^\s*([\[(])\s*(-?inf|[-+0-9.eE]+)\s*,\s*(-?inf|[-+0-9.eE]+)\s*([\])])\s*$")


@dataclass(frozen=True)
class Setting:
    """One declared setting of a registry entry (or of a command such as ``train``)."""

    default: Any
    help: str
    type: type | None = None  # int, float, str or bool; None: the default's type
    range: str = ""  # interval for numbers, e.g. "[1, inf)", "(0, 1]"; empty: any finite value
    choices: tuple = ()  # allowed values; for numbers: extra literals beside the range (e.g. "ada")
    optional: bool = False  # None is allowed (and means: resolved later, e.g. the model's feature layer)
    memory: bool = False  # only trades memory for speed; never part of a cache or resume key

    def __post_init__(self):
        kind = self.kind
        if kind not in _TYPE_NAMES:
            raise TypeError(f"setting type must be int, float, str or bool, not {kind!r}")
        if self.range:
            self.bounds  # parse once at declaration, so a typo fails at import
        if self.default is not None:
            self.parse(self.default)
        elif not self.optional:
            raise TypeError("a setting whose default is None must be optional")

    @property
    def kind(self) -> type:
        return self.type or type(self.default)

    @property
    def bounds(self) -> tuple[float, float, bool, bool]:
        """(low, high, low closed, high closed)."""
        m = _INTERVAL.match(self.range)
        if not m:
            raise ValueError(f"range {self.range!r} is not an interval such as [0, 1) or (0, inf)")
        return float(m[2]), float(m[3]), m[1] == "[", m[4] == "]"

    def allowed(self) -> str:
        """What is allowed, in words: "int in [1, inf)", "one of zero, blur", "float in (0, inf) or ada"."""
        if self.kind is str and self.choices:
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            text = _TYPE_NAMES[self.kind] + (f" in {self.range}" if self.range else "")
            if self.choices:
                text += " or " + ", ".join(map(str, self.choices))
        return text + (" (or none)" if self.optional else "")

    def parse(self, value: Any) -> Any:
        """The typed value, or ValueError saying why not (the caller adds entry and setting names)."""
        if value is None or (self.optional and isinstance(value, str) and value.lower() in ("none", "null")):
            if self.optional:
                return None
            raise ValueError("missing")
        for choice in self.choices:  # a listed literal, given as itself or as text
            if not isinstance(value, bool) and (value == choice or str(value) == str(choice)):
                return choice
        kind = self.kind
        if kind is str:
            if self.choices:
                raise ValueError("not one of the choices")
            if not isinstance(value, str):
                raise ValueError("not text")
            return value
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
                return value.lower() in _TRUE
            raise ValueError("not true or false")
        number = _number(value, kind)
        if self.range:
            low, high, low_closed, high_closed = self.bounds
            if number < low or number > high or (number == low and not low_closed) or (
                    number == high and not high_closed):
                raise ValueError("out of range")
        return number


def _number(value: Any, kind: type) -> int | float:
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip()) if kind is float or not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            raise ValueError("not a number") from None
    if not isinstance(value, (int, float)):
        try:  # numpy and 0-d torch scalars
            value = value.item()
        except (AttributeError, ValueError):
            raise ValueError("not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not finite")
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError("not a whole number")
            value = int(value)
        return int(value)
    return float(value)


def check(owner: str, schema: Mapping[str, Setting], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared setting resolved: defaults, overridden by ``given`` values parsed and range-checked.

    Raises one :class:`XbenchError` line for an unknown name (with close matches) or a bad value.
    """
    unknown = [k for k in given if k not in schema]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(schema), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = ", ".join(sorted(schema)) or "none"
        raise XbenchError(f"{owner}: unknown setting {name!r}{hint} (known: {known})")
    out = {k: s.default for k, s in schema.items()}
    for name, value in given.items():
        setting = schema[name]
        try:
            out[name] = setting.parse(value)
        except ValueError as err:
            raise XbenchError(f"{owner}: {name}={_show(value)} is {err}; allowed: {setting.allowed()}") from None
    return out


def keyed(schema: Mapping[str, Setting], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that identify a result: everything but the memory-only settings."""
    return {k: v for k, v in values.items() if not (k in schema and schema[k].memory)}


def describe(schema: Mapping[str, Setting]) -> list[tuple[str, str, str, str, str]]:
    """(name, type, default, allowed, description) rows for ``xbench list -v``."""
    rows = []
    for name, s in schema.items():
        note = " [memory only: not part of cache keys]" if s.memory else ""
        rows.append((name, _TYPE_NAMES[s.kind], _show(s.default), s.allowed(), s.help + note))
    return rows


def _show(value: Any) -> str:
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)
