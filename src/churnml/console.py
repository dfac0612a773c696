"""Terminal output shared by the commands: one Rich console on stderr and a progress helper.

User text (paths, ``--as-of`` values, cell values, notes) is never parsed as Rich markup:
wrap it in :func:`literal` before putting it in a markup string (``console.print(f"...
{literal(path)}")``, table titles and cells), or print a :class:`rich.text.Text`. Progress
descriptions are escaped here, so callers pass plain text.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def literal(value: object) -> str:
    """``str(value)`` escaped for a Rich markup string: printed exactly as it is."""
    return escape(str(value))


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
        task = bar.add_task(literal(description), total=total)
        yield Step(bar, task)


class Step:
    def __init__(self, bar: Progress, task) -> None:
        self._bar, self._task = bar, task

    def advance(self, n: float = 1) -> None:
        self._bar.advance(self._task, n)

    def note(self, description: str) -> None:
        self._bar.update(self._task, description=literal(description))
