"""Project exceptions.

Each also subclasses the built-in it resembles, so ordinary handlers (``except ValueError``)
still catch them. The CLI maps ``ChurnMLError`` subclasses that mean "bad input or usage" to
exit code 2 and everything else to exit code 1.
"""

from __future__ import annotations

import errno


class ChurnMLError(Exception):
    """Base class of every error churnml raises on purpose."""

    exit_code = 1


class UsageError(ChurnMLError, ValueError):
    """Bad arguments or bad input the user can fix (exit code 2)."""

    exit_code = 2


class SchemaError(UsageError):
    """A table cannot be used as given: missing table or column, wrong types."""


class InsufficientDataError(UsageError):
    """Too little history or too few events for an honest result."""


class ConfigError(UsageError):
    """A configuration file or parameter is invalid."""


class LeakageError(UsageError):
    """A feature gives the label away (an attribute exported after the fact): training stops
    (exit code 2) naming the column and the evidence (``churnml.models.leakage``)."""


class NotFittedError(ChurnMLError, AttributeError):
    """An estimator was used before ``fit``."""


class ModelNotFoundError(ChurnMLError, LookupError):
    """No registered model / champion where one was expected (exit code 2)."""

    exit_code = 2


class RegistryUnavailableError(ChurnMLError, ConnectionError):
    """The model registry cannot be reached or failed to answer (exit code 1).

    Not the same as "no champion" (``ModelNotFoundError``, exit code 2: run ``churnml train``):
    here the registry's answer is unknown, so nothing may be concluded from it; in particular a
    new version never becomes champion because the current one could not be read. An
    environment failure, not the user's input: exit code 1.
    """

    exit_code = 1


class LockedError(ChurnMLError, RuntimeError):
    """Another run holds the lock on an output folder (exit code 2)."""

    exit_code = 2


class DiskFullError(ChurnMLError, OSError):
    """The disk (or quota) filled up while writing a file (exit code 1); the message names the
    file: ``disk full writing <path>``. No temporary file is left behind."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC


def format_examples(values, limit: int = 5) -> str:
    """Render up to ``limit`` example values for an error message: ``['n/a', '12,5', '']``."""
    shown = [v for v in list(values)[:limit]]
    return "[" + ", ".join(_clip_repr(v if not hasattr(v, "item") else v.item())
                           for v in shown) + "]"


def _clip_repr(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message never echoes a whole
    value a caller sent (the HTTP service returns these messages)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
