"""Loading a book of business from a folder (``<table>.parquet`` or ``<table>.csv`` per table,
or a ``<table>.parquet/`` folder of parquet files, as Spark and chunked exports write) or a
database (a URL: ``churnml.data.sql``).

``load_book`` finds the tables at the folder's root, reads them, and validates them with
:func:`churnml.data.validation.validate_frames` (rules in ``docs/data_contract.md``).

CSV files are read with every column as text, and only empty cells count as nulls (``n/a``,
``NA`` or ``null`` are text, so ``n/a`` in a numeric column is reported, never silently
dropped). Text is then parsed per column type. Parquet columns keep their stored types.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from churnml.data.dates import DEFAULT_FUTURE_MARGIN_DAYS, NAT, bulk_end
from churnml.data.tables import TABLES, Book
from churnml.data.validation import (
    REJECT_REASONS,
    REJECTS_COLUMNS,
    ValidationReport,
    parse_timestamps,
    validate_frames,
)
from churnml.errors import SchemaError, format_examples

__all__ = [
    "REJECTS_COLUMNS", "REJECT_REASONS", "ValidationReport", "default_rejects_path",
    "find_table_files", "folder_data_end", "load_book", "read_table", "validate_frames",
]

TABLE_SUFFIXES = (".parquet", ".csv")
REJECTS_FILE_NAME = "_rejects.csv"


def default_rejects_path(data_dir) -> Path:
    """Where ``churnml validate`` writes rejected rows by default: ``<data>/_rejects.csv``
    (a name starting with ``_`` is never read as a table); for a database,
    ``<database name>_rejects.csv`` in the working folder."""
    from churnml.data.sql import is_database_url, parse_source

    if is_database_url(data_dir):
        return Path(f"{parse_source(data_dir).name}{REJECTS_FILE_NAME}")
    return Path(data_dir) / REJECTS_FILE_NAME


def find_table_files(data_dir: str | Path) -> tuple[dict[str, Path], list[str]]:
    """The table files at the folder's root: ``({table: path}, warnings)``.

    A table is a ``<table>.parquet`` or ``<table>.csv`` file, or a ``<table>.parquet`` folder
    of parquet files (one table in parts, read as one; its files whose names start with ``_``
    or ``.``, such as Spark's ``_SUCCESS``, are skipped). Names starting with ``_`` or ``.``
    are skipped silently (the simulator's ``_truth/``, a rejects file); any other file or
    folder is ignored with a warning. Both formats present for one table is a
    :class:`SchemaError`.
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise SchemaError(f"data folder {data_dir} does not exist")
    if not data_dir.is_dir():
        raise SchemaError(f"data folder {data_dir} is not a folder")
    found: dict[str, list[Path]] = {}
    ignored: list[str] = []
    for path in sorted(data_dir.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.stem in TABLES and (
                (path.is_file() and path.suffix.lower() in TABLE_SUFFIXES)
                or (path.is_dir() and path.suffix.lower() == ".parquet")):
            found.setdefault(path.stem, []).append(path)
        else:
            ignored.append(path.name + ("/" if path.is_dir() else ""))
    doubled = {t: p for t, p in found.items() if len(p) > 1}
    if doubled:
        raise SchemaError("\n".join(
            f"{t}: found both {' and '.join(x.name for x in p)} in {data_dir}; keep one"
            for t, p in doubled.items()))
    warnings = []
    if ignored:
        warnings.append(f"ignored {len(ignored)} file(s) that are not tables of the data "
                        f"contract: {', '.join(ignored[:10])}{' ...' if len(ignored) > 10 else ''}")
    return {t: p[0] for t, p in found.items()}, warnings


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one table file (or ``<table>.parquet`` folder of parquet files) as it is stored
    (CSV: all text, only empty cells null).

    Raises :class:`SchemaError` naming the file when it cannot be read at all.
    """
    path = Path(path)
    table = path.stem
    try:
        if path.suffix.lower() == ".parquet":
            # columns handed over one by one (Arrow frees each as pandas takes it): the
            # file's rows are held once, not twice, at the peak of the read
            # (engine "pyarrow" is what "auto" picks: pyarrow is a dependency of churnml)
            return pd.read_parquet(path, engine="pyarrow",
                                   to_pandas_kwargs={"self_destruct": True, "split_blocks": True})
        frame = pd.read_csv(path, dtype="str", keep_default_na=False, na_values=[""],
                            engine="pyarrow")
    except pd.errors.EmptyDataError:
        raise SchemaError(f"{table}: {path.name} is empty (not even a header line)") from None
    except Exception as exc:  # pyarrow/parser errors: say which file, not a traceback
        raise SchemaError(f"{table}: cannot read {path.name}: {exc}") from exc
    _refuse_repeated_header(path, table)
    return frame


def _refuse_repeated_header(path: Path, table: str) -> None:
    """A CSV header naming a column twice is an error (pandas would rename the second copy
    ``name.1`` and keep it as an extra column, silently)."""
    import csv

    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    counts: dict[str, int] = {}
    for name in header:
        counts[name] = counts.get(name, 0) + 1
    repeated = [name for name, n in counts.items() if n > 1]
    if repeated:
        raise SchemaError(f"{table}: column names appear more than once: "
                          f"{format_examples(sorted(repeated))} (header of {path.name})")


class _FilesAsFrames(Mapping):
    """``{table: DataFrame}`` that reads each file when its table is asked for and keeps
    nothing: validation takes one table at a time, so only that table's raw rows are in
    memory (not every table's at once, next to the accepted rows)."""

    def __init__(self, files: dict[str, Path]):
        self._files = files

    def __getitem__(self, table: str) -> pd.DataFrame:
        return read_table(self._files[table])

    def __contains__(self, table: object) -> bool:
        return table in self._files  # Mapping's default would read the file

    def __iter__(self):
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)


def load_book(data_dir, rejects_path: str | Path | None = None,
              future_margin_days: float | None = DEFAULT_FUTURE_MARGIN_DAYS,
              ) -> tuple[Book, ValidationReport]:
    """Read and validate the book of business in ``data_dir``.

    Returns the :class:`Book` of accepted rows (normalised dtypes: ``account_id`` string,
    timestamps naive ``datetime64[ns]`` meaning UTC, numbers float64, NPS score int64; rows
    sorted by account and time) and the :class:`ValidationReport`. Writes the rejects CSV
    (``table,row,column,value,reason``) to ``rejects_path`` when given (also when empty, so no
    stale file remains). Raises :class:`SchemaError` when the input cannot be used.
    ``future_margin_days``: see :func:`~churnml.data.validation.validate_frames`.

    ``data_dir`` may be a database URL or :class:`~churnml.data.sql.DatabaseSource`: the tables
    are then read from the database (``churnml.data.sql``) and validated by the same code.
    """
    from churnml.data.sql import is_database_url

    if is_database_url(data_dir):
        return _load_sql_book(data_dir, rejects_path, future_margin_days)
    data_dir = Path(data_dir)
    files, warnings = find_table_files(data_dir)
    frames = _FilesAsFrames(files)
    if any(spec.required and name not in files for name, spec in TABLES.items()):
        # an unreadable file is reported before a missing table: read them all first
        for path in files.values():
            read_table(path)
    book, report = validate_frames(frames, source=str(data_dir), warnings=warnings,
                                   future_margin_days=future_margin_days)
    book.meta["files"] = {t: str(p) for t, p in files.items()}
    if rejects_path is not None:
        report.write_rejects(rejects_path)
    return book, report


def _load_sql_book(url, rejects_path, future_margin_days) -> tuple[Book, ValidationReport]:
    from churnml.data.sql import parse_source, read_tables

    source = parse_source(url)
    session, frames = read_tables(source)  # type: ignore[arg-type]
    try:
        book, report = validate_frames(frames, source=str(source),
                                       future_margin_days=future_margin_days)
    finally:
        session.close()  # every connection of the read
    book.meta["database"] = str(source)
    if rejects_path is not None:
        report.write_rejects(rejects_path)
    return book, report


def folder_data_end(data_dir: str | Path) -> pd.Timestamp:
    """The data's end of a book folder from its revenue history alone (reads only
    ``mrr_changes.effective_date``: cheap, for a warning before a long job); NaT when it
    cannot be read (the job itself then reports the problem)."""
    try:
        from churnml.data.sql import is_database_url

        if is_database_url(data_dir):
            return NAT  # the job reads the book anyway; no second round trip for a warning
        files, _ = find_table_files(data_dir)
        path = files.get("mrr_changes")
        if path is None:
            return NAT
        if path.suffix.lower() == ".parquet":
            column = pd.read_parquet(path, columns=["effective_date"])["effective_date"]
        else:
            column = pd.read_csv(path, usecols=["effective_date"], dtype="str",
                                 keep_default_na=False, na_values=[""])["effective_date"]
        values, _ = parse_timestamps(column)
    except Exception:  # noqa: BLE001 - a warning helper never stops the job
        return NAT
    end = bulk_end([values])
    return end.normalize() if pd.notna(end) else NAT
