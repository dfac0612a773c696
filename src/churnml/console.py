"""Terminal output shared by the commands: one Rich console on stderr and a progress helper."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator["Step"]:
    """A progress bar (spinner when ``total`` is None); yields a ``Step`` with ``advance``/``note``."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}" if total else ""),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield Step(bar, task)


class Step:
    def __init__(self, bar: Progress, task) -> None:
        self._bar, self._task = bar, task

    def advance(self, n: float = 1) -> None:
        self._bar.advance(self._task, n)

    def note(self, description: str) -> None:
        self._bar.update(self._task, description=description)
