"""Reading a study file: its tables as stages, in file order, and where each key sits, so that every mistake can be
reported as ``file:line: ...`` (tomllib gives no positions: the text is scanned alongside)."""
from __future__ import annotations

import argparse
import difflib
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, published for older Pythons
    import tomli as tomllib

from .errors import XbenchError

STAGES = ("train", "explain", "evaluate", "report")
STUDY_KEYS = ("name", "out", "description")
KV_FLAGS = ("model-arg", "method-arg")  # tables become repeated KEY=VALUE flags; `hparam` nests one level more


@dataclass
class Stage:
    kind: str
    index: int  # the nth table of this kind in the file
    keys: dict[str, Any]
    args: argparse.Namespace | None = None
    runs: list[Path] | None = None  # explain/evaluate without `runs`: the runs of the train tables above it

    @property
    def label(self) -> str:
        return self.kind if self.index == 0 else f"{self.kind}[{self.index}]"


class StudyFile:
    """A study file's text, its tables and where each key sits (tomllib gives no positions: the text is scanned)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            raw = self.path.read_bytes()
        except OSError as err:
            raise XbenchError(f"cannot read study {str(path)!r}: {err.strerror}") from None
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.text = raw.decode("utf-8", errors="replace")
        try:
            self.data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as err:
            line = re.search(r"line (\d+)", str(err))
            raise XbenchError(f"{self.path}:{line.group(1) if line else 1}: invalid TOML: "
                              f"{str(err).split(' (at')[0]}") from None
        self.lines: dict[tuple[str, int], dict[str, int]] = {}
        seen: dict[str, int] = {}
        current = ("", 0)
        for number, line in enumerate(self.text.splitlines(), 1):
            header = re.match(r"\s*(\[\[?)\s*([\w.-]+)\s*\]", line)
            if header:
                root = header.group(2).split(".")[0]
                if "." not in header.group(2):
                    seen[root] = seen.get(root, -1) + 1
                current = (root, max(0, seen.get(root, 0)))
                self.lines.setdefault(current, {"": number})
            key = re.match(r"\s*\"?([\w-]+)\"?\s*=", line)
            if key and not header:
                self.lines.setdefault(current, {"": 1}).setdefault(key.group(1), number)

    def where(self, kind: str, index: int = 0, key: str = "") -> str:
        spot = self.lines.get((kind, index), {})
        return f"{self.path}:{spot.get(key, spot.get('', 1))}"

    def error(self, stage: Stage | None, key: str, message: str) -> XbenchError:
        where = self.where(stage.kind, stage.index, key) if stage else self.where("", 0, key)
        return XbenchError(f"{where}: {message}")


def close_matches(word: str, choices) -> str:
    near = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def stages_of(study: StudyFile) -> list[Stage]:
    out = []
    for name, body in study.data.items():
        if name == "study":
            continue
        if name not in STAGES:
            raise XbenchError(f"{study.where(name)}: unknown section [{name}]{close_matches(name, ('study', *STAGES))}")
        tables = body if isinstance(body, list) else [body]
        out += [Stage(name, i, dict(t)) for i, t in enumerate(tables)]
    for key in study.data.get("study", {}):
        if key not in STUDY_KEYS:
            raise XbenchError(f"{study.where('study', 0, key)}: unknown key {key!r} in [study]{close_matches(key, STUDY_KEYS)}")
    # stages run in the order the file gives them (a study can train, evaluate, then train a second recipe)
    return sorted(out, key=lambda s: study.lines.get((s.kind, s.index), {}).get("", 0))
