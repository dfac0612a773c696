"""Where ``churnml ui`` finds its weeks: the *week source* interface and the output folder.

A week source (:class:`WeekSource`) answers which weeks there are (each with a version that
changes when the week is rewritten), a week's list frame, one account's full row of a week, and
which folder holds the monitoring and effects files. :class:`FolderSource` reads the complete
partitions of an output folder; :class:`churnml.ui.sql_source.SqlSource` the ``churnml_scores``
table. :class:`churnml.ui.store.ScoreStore` adds the caches and the unreadable weeks; the pages
know only the store. See :mod:`churnml.ui.store` for what a list frame holds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from churnml.jobs.layout import SCORES_NAME
from churnml.jobs.partitions import incomplete_partitions, list_partitions

#: the next best action's fields shown in lists (``action_<field>`` in the list frame)
ACTION_FIELDS = ("playbook", "action", "owner", "severity", "respond_within", "reason")
#: weeks whose full table (reasons and all) is kept in memory for the account page
FULL_TABLES_KEPT = 2
#: list-frame columns every page needs: a week without them is unreadable (left out, named)
REQUIRED_COLUMNS = ("account_id", "health_score", "health_tier", "mrr")
#: characters of a reader's error message shown in the banner
REASON_CHARS = 300


class UnreadableWeek(RuntimeError):
    """A week's data could not be read; the store has recorded it (it is left out from now on
    and named on every page), so the page is built again without it."""


class SourceUnavailable(RuntimeError):
    """The source itself cannot be reached (a database that is down or refuses the login): a
    503 page with the message (credentials already hidden)."""


@dataclass(frozen=True)
class Week:
    as_of: pd.Timestamp
    path: Path | str  # the scores.parquet file, or the table's week (a cache key)
    mtime_ns: int  # the week's version: modification time, or a fingerprint of the rows
    name: str = ""  # what the pages call it (the file; the table and database); no password

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", str(self.path))


class WeekSource(Protocol):
    """Where the weeks come from (see the module docstring). Every method may raise
    :class:`SourceUnavailable`; ``list_frame`` and ``account_row`` may raise anything else for
    a week that cannot be read (the store records it as unreadable)."""

    #: what the pages say they read (no credentials)
    description: str
    #: the folder holding ``monitoring/`` and ``effects/``, or None
    side_dir: Path | None

    def weeks(self) -> list[Week]: ...

    def skipped(self) -> list[str]: ...

    def problem(self) -> str | None:
        """Why the source has no week to show (None when it has some)."""
        ...

    def list_frame(self, week: Week) -> pd.DataFrame: ...

    def account_row(self, week: Week, account_id: str) -> dict[str, Any] | None: ...


def _list_frame(path: Path) -> pd.DataFrame:
    """A week's list frame (see the module docstring), sorted by account_id."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    scalar = [f.name for f in schema
              if not (pa.types.is_struct(f.type) or pa.types.is_list(f.type)
                      or pa.types.is_large_list(f.type))]
    nested = [n for n in ("next_best_action", "alerts") if n in schema.names]
    table = pq.read_table(path, columns=scalar + nested)
    out = table.select(scalar)
    if "next_best_action" in nested:
        action = table.column("next_best_action").combine_chunks()
        for name in ACTION_FIELDS:
            if action.type.get_field_index(name) >= 0:
                out = out.append_column(f"action_{name}", action.field(name))
    if "alerts" in nested:
        alerts = table.column("alerts")
        out = out.append_column("alerts_count",
                                pc.fill_null(pc.list_value_length(alerts), 0))
        out = out.append_column("alerts_text",
                                pc.fill_null(pc.binary_join(alerts, ", "), ""))
    return finish_list_frame(out)


def finish_list_frame(out) -> pd.DataFrame:
    """An Arrow list table (scalar columns, ``action_<field>``, ``alerts_count``,
    ``alerts_text``) as the pages' frame: sorted by account_id (bytewise, whatever order the
    source gave), low-cardinality text as categories."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = out.take(pc.sort_indices(out, [("account_id", "ascending")]))
    columns: dict[str, Any] = {}
    limit = max(64, out.num_rows // 100)
    for name in out.column_names:
        col = out.column(name).combine_chunks()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            if name != "account_id" and pc.count_distinct(col).as_py() <= limit:
                # low-cardinality text (tiers, owners, segments, versions) as categories in
                # sorted order: filters and group-bys on them are integer work
                values = col.dictionary_encode().to_pandas()
                columns[name] = values.cat.reorder_categories(
                    sorted(values.cat.categories))
            else:
                # plain object arrays (pandas 3 would make Arrow-backed strings, whose
                # to_numpy and take copy on every access)
                columns[name] = col.to_numpy(zero_copy_only=False)
        else:
            columns[name] = col.to_pandas()
    return pd.DataFrame(columns)


def reason_text(exc: BaseException) -> str:
    """An exception as one short line for a page (``Type: message``)."""
    text = " ".join(str(exc).split())
    if len(text) > REASON_CHARS:
        text = text[:REASON_CHARS] + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FolderSource:
    """The output folder of ``churnml score``: its complete partitions (``as_of=.../
    scores.parquet`` with a valid ``_SUCCESS``), versioned by modification time."""

    def __init__(self, scores_dir: str | Path) -> None:
        self.scores_dir = Path(scores_dir)
        self.description = str(self.scores_dir)
        self.side_dir: Path | None = self.scores_dir
        self._lock = threading.Lock()
        # full tables (every column) of the most recently opened weeks, for the account page
        self._full: dict[Path, tuple[int, Any, np.ndarray, np.ndarray]] = {}

    def weeks(self) -> list[Week]:
        """Complete partitions, oldest first."""
        out = []
        for as_of, part in list_partitions(self.scores_dir):
            path = part / SCORES_NAME
            try:
                out.append(Week(as_of, path, path.stat().st_mtime_ns))
            except FileNotFoundError:  # replaced between listing and stat: skip this time
                continue
        return out

    def skipped(self) -> list[str]:
        return [f"{p.name} ({why})" for _d, p, why in incomplete_partitions(self.scores_dir)]

    def problem(self) -> str | None:
        if self.weeks():
            return None
        return (f"no complete weekly partition (as_of=YYYY-MM-DD/{SCORES_NAME} with a "
                f"_SUCCESS marker) in {self.scores_dir}")

    def list_frame(self, week: Week) -> pd.DataFrame:
        return _list_frame(Path(week.path))

    def account_row(self, week: Week, account_id: str) -> dict[str, Any] | None:
        import pyarrow.parquet as pq

        path = Path(week.path)
        with self._lock:
            hit = self._full.get(path)
        if hit is None or hit[0] != week.mtime_ns:
            table = pq.read_table(path)
            ids = table.column("account_id").to_numpy(zero_copy_only=False).astype(str)
            order = np.argsort(ids, kind="stable")
            hit = (week.mtime_ns, table, ids[order], order)
            with self._lock:
                self._full.pop(path, None)
                self._full[path] = hit
                while len(self._full) > FULL_TABLES_KEPT:  # oldest opened first
                    self._full.pop(next(iter(self._full)))
        _mtime, table, sorted_ids, order = hit
        i = int(np.searchsorted(sorted_ids, account_id))
        if i >= len(sorted_ids) or sorted_ids[i] != account_id:
            return None
        return table.slice(int(order[i]), 1).to_pylist()[0]


__all__ = ["ACTION_FIELDS", "REQUIRED_COLUMNS", "FolderSource", "SourceUnavailable",
           "UnreadableWeek", "Week", "WeekSource", "finish_list_frame", "reason_text"]
