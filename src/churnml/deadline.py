"""Work that stops when nobody waits for it any more.

A :class:`Deadline` is a point in time plus a "cancelled" flag. Long loops call
:func:`checkpoint` between steps (``build_features`` once per feature, the service between
validating, building and scoring): it raises :class:`DeadlineExceeded` once the deadline has
passed or the deadline was cancelled (the HTTP request timed out or the client went away), so
a worker thread gives up within one step instead of computing an answer nobody will read.

Outside :func:`active` (the CLI, the weekly job) :func:`checkpoint` is a context-variable read
and does nothing.
"""

from __future__ import annotations

import contextvars
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from churnml.errors import ChurnMLError


class DeadlineExceeded(ChurnMLError, TimeoutError):
    """The work's deadline passed or it was cancelled before it finished."""


class Deadline:
    """``seconds`` from now (``None``: no time limit, only cancellation)."""

    def __init__(self, seconds: float | None = None) -> None:
        self.expires = None if seconds is None else time.monotonic() + max(0.0, seconds)
        self._cancelled = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the work at its next checkpoint (safe from any thread)."""
        self.reason = reason
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def remaining(self) -> float | None:
        return None if self.expires is None else self.expires - time.monotonic()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise DeadlineExceeded(f"stopped: {self.reason or 'cancelled'}")
        if self.expires is not None and time.monotonic() >= self.expires:
            raise DeadlineExceeded("stopped: the deadline passed")


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "churnml_deadline", default=None)


@contextmanager
def active(deadline: Deadline) -> Iterator[Deadline]:
    """Make ``deadline`` the one :func:`checkpoint` checks, in this thread / context."""
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


def checkpoint() -> None:
    """Raise :class:`DeadlineExceeded` when the active deadline passed or was cancelled."""
    deadline = _CURRENT.get()
    if deadline is not None:
        deadline.check()
