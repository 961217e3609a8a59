"""The one exception type for mistakes a user can make (names, values, files).

The CLI turns an :class:`XbenchError` into one line on stderr and exit code 2; everything else is a bug and keeps
its traceback.
"""
from __future__ import annotations


class XbenchError(Exception):
    """A user-facing error: bad name, bad value, missing or corrupt file."""


class UnknownNameError(XbenchError, KeyError):
    """A registry lookup failed; the message names the close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TrainingDiverged(XbenchError):
    """Some runs hit a non-finite loss or weights; every other run finished. ``runs`` holds all run summaries."""

    def __init__(self, message: str, runs: list[dict]):
        super().__init__(message)
        self.runs = runs
