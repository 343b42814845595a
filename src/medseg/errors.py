"""Errors that name the file and the problem, so a user knows what to fix."""

from __future__ import annotations

from pathlib import Path


class MedsegError(Exception):
    """Base class of medseg's own errors."""


class DataValidationError(MedsegError, ValueError):
    """A data file that cannot be used as it is: wrong keys, shapes, dtypes or label values."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")

    def __reduce__(self):
        # Rebuild from (path, problem) so the error survives process pools (medseg data convert).
        return (type(self), (self.path, self.problem))


class ConfigError(MedsegError, ValueError):
    """A configuration that names an unknown component or holds an invalid value."""
