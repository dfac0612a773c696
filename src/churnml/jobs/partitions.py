"""Partitions of the weekly output folder: listing (complete ones only), earlier weeks for the
alerts, atomic parquet writes and the completion marker. Shared by the local weekly job and
the Spark engine (``churnml.jobs.weekly``, ``churnml.jobs.spark``), which therefore do not
import each other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from churnml.features.windows import to_as_of
from churnml.fsutil import atomic_write, remove_temporaries
from churnml.fsutil import write_bytes_atomic as _write_bytes_atomic
from churnml.jobs.completion import begin_partition, partition_problem, write_marker  # noqa: F401
from churnml.jobs.layout import (  # noqa: F401  (re-exported)
    _PARTITION,
    DEFAULT_HISTORY_WEEKS,
    LOCK_NAME,
    REPORT_NAME,
    SCORES_NAME,
    OutputLock,
)
from churnml.scoring.schema import SCHEMA_VERSION


def partition_dir(out_dir: str | Path, as_of) -> Path:
    """``OUT/as_of=YYYY-MM-DD``."""
    return Path(out_dir) / f"as_of={to_as_of(as_of):%Y-%m-%d}"


def _scan_partitions(out_dir: str | Path) -> list[tuple[pd.Timestamp, Path, str | None]]:
    """Every ``as_of=`` partition of an output folder, oldest first, with why it is incomplete
    (None when complete: a valid ``_SUCCESS`` marker listing ``scores.parquet``)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = []
    for child in out_dir.iterdir():
        m = _PARTITION.match(child.name)
        if m and child.is_dir():
            found.append((to_as_of(m.group(1)), child,
                          partition_problem(child, required=(SCORES_NAME,))))
    return sorted(found, key=lambda t: t[0])


def list_partitions(out_dir: str | Path) -> list[tuple[pd.Timestamp, Path]]:
    """Complete partitions (with a valid ``_SUCCESS`` marker) of an output folder, oldest first."""
    return [(d, p) for d, p, problem in _scan_partitions(out_dir) if problem is None]


def incomplete_partitions(out_dir: str | Path, before=None) -> list[tuple[pd.Timestamp, Path, str]]:
    """Partitions every reader skips (no valid marker: a killed or failed run), oldest first,
    with the reason; only those with as_of < ``before`` when given."""
    before = None if before is None else to_as_of(before)
    return [(d, p, problem) for d, p, problem in _scan_partitions(out_dir)
            if problem is not None and (before is None or d < before)]


def describe_skipped(skipped: list[tuple[pd.Timestamp, Path, str]]) -> list[str]:
    """``["as_of=2026-11-09 (no _SUCCESS marker ...)", ...]`` for a warning line."""
    return [f"{p.name} ({problem})" for _d, p, problem in skipped]


def load_earlier_weeks(out_dir: str | Path, as_of, history_weeks: int = DEFAULT_HISTORY_WEEKS,
                       ) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """``(previous, history)`` for the score-based alerts of week ``as_of``.

    ``previous``: the latest earlier partition's rows (``account_id, as_of, health_score,
    health_tier``); ``history``: the same columns of every earlier partition with as_of in
    ``[as_of - history_weeks weeks, as_of)``. Both None in the first week.
    """
    as_of = to_as_of(as_of)
    earlier = [(d, p) for d, p in list_partitions(out_dir) if d < as_of]
    if not earlier:
        return None, None
    cols = ["account_id", "as_of", "health_score", "health_tier"]
    last_date, last_dir = earlier[-1]
    previous = pd.read_parquet(last_dir / SCORES_NAME, columns=cols)
    start = as_of - pd.Timedelta(weeks=history_weeks)
    frames = [pd.read_parquet(p / SCORES_NAME, columns=cols) for d, p in earlier if d >= start]
    history = pd.concat(frames, ignore_index=True) if frames else None
    return previous, history


def rows_of_accounts(frame: pd.DataFrame | None, ids) -> pd.DataFrame | None:
    """The rows of ``frame`` (earlier weeks' scores) of the accounts ``ids``, in order; the
    local engine's chunks and the Spark engine's shards pass the same rows to ``score_frame``."""
    if frame is None:
        return None
    return frame[frame["account_id"].astype(str).isin(ids)].reset_index(drop=True)


def remove_stale_temporaries(partition: Path) -> list[Path]:
    """Delete ``*.tmp-*`` files a killed run left in a partition (call under the lock)."""
    return remove_temporaries(partition)


def to_arrow(frame: pd.DataFrame, schema):
    import pyarrow as pa

    arrays = [pa.array(frame[f.name].tolist() if f.type.num_fields or
                       pa.types.is_list(f.type) else frame[f.name], type=f.type, from_pandas=True)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet_atomic(path: Path, tables: Iterator, schema) -> int:
    """Write ``tables`` (arrow tables) as row groups of ``path`` atomically
    (:func:`churnml.fsutil.atomic_write`); returns rows."""
    import pyarrow.parquet as pq

    rows = 0
    with atomic_write(path, "wb") as handle:
        with pq.ParquetWriter(handle, schema, compression="zstd") as writer:
            for table in tables:
                writer.write_table(table)
                rows += table.num_rows
    return rows


def write_bytes_atomic(path: Path, data: bytes) -> None:
    _write_bytes_atomic(path, data)


@dataclass
class WeeklyResult:
    as_of: pd.Timestamp
    partition: Path
    scores_path: Path
    rows: int
    previous_as_of: pd.Timestamp | None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # earlier partitions skipped as incomplete ("as_of=... (reason)"), and why this week's
    # partition was incomplete before the run replaced it (None: new or complete)
    skipped_partitions: list[str] = field(default_factory=list)
    replaced_incomplete: str | None = None


def mark_complete(partition: Path, as_of, rows: int, files: list[str]) -> Path:
    """Write the partition's ``_SUCCESS`` marker (last, after every file in ``files``)."""
    return write_marker(partition, files, as_of=f"{to_as_of(as_of):%Y-%m-%d}", rows=rows,
                        schema_version=SCHEMA_VERSION)
