"""Errors that reach the user as one line and exit code 2."""

from __future__ import annotations

from pathlib import Path


class GensarError(Exception):
    """Base class: the CLI prints ``str(err)`` on one line and exits with code 2."""


class InputError(GensarError):
    """Bad input data, located by file, line and/or field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "")
        if field is not None:
            where = f"{where}: field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(GensarError):
    """A bad configuration value or an unknown key."""


class OutputError(GensarError):
    """An output cannot be written: not ours to replace, over an input, a full disk, read-only."""


class LockedError(OutputError):
    """Another live process writes the same output."""
