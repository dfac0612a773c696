"""The output folder's layout and its lock: partition names, file names, ``OutputLock``.

Shared by the weekly job (``churnml.jobs.weekly``), the Spark engine, the completion markers
(``churnml.jobs.completion``) and the partition readers (``churnml.jobs.partitions``); it
imports none of them.
"""

from __future__ import annotations

import re
from pathlib import Path

from churnml.errors import LockedError

LOCK_NAME = ".churnml-score.lock"
SCORES_NAME = "scores.parquet"
REPORT_NAME = "report.html"
DEFAULT_HISTORY_WEEKS = 13
_PARTITION = re.compile(r"^as_of=(\d{4}-\d{2}-\d{2})$")


#: written by schema version 1 (the compared features, now read from the book a week before)
LEGACY_ALERT_INPUTS_NAME = "alert_inputs.parquet"


class OutputLock:
    """Exclusive lock on an output folder (``OUT/.churnml-score.lock``, via filelock).

    Entering raises :class:`LockedError` at once when another run holds it."""

    def __init__(self, out_dir: str | Path) -> None:
        from filelock import FileLock

        self.path = Path(out_dir) / LOCK_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path), timeout=0)

    def __enter__(self) -> "OutputLock":
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise LockedError(
                f"another churnml score run is writing to {self.path.parent} (lock {self.path} "
                "is held); wait for it to finish. If no run is active, the lock is released "
                "automatically when its process exits."
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()
