"""The ``churnml_scores`` table as the weeks of ``churnml ui --scores <database URL>``.

``churnml score --out postgresql://...`` (or ``duckdb:...``) writes one row per account and week
into ``churnml_scores`` (:mod:`churnml.jobs.sql_scores`). This source gives the UI's store
(:class:`churnml.ui.store.ScoreStore`) what a folder gives it:

- the weeks: ``SELECT as_of, count(*), sum(health_score), sum(mrr) ... GROUP BY as_of``, kept
  :data:`LISTING_TTL_S` seconds; the count and sums are the week's version, so a week rewritten
  by a rerun is read again (a rewrite that changes neither is not noticed);
- a week's list frame: the scalar columns, the next best action's fields and the alerts'
  count and text computed by the database (DuckDB's ``STRUCT``/``LIST``, PostgreSQL's
  ``jsonb``); the reasons are never read for it;
- one account's full row: a query on the primary key (``as_of``, ``account_id``, the id a bound
  parameter), with PostgreSQL's ``jsonb`` columns decoded into lists and dicts, as a folder's
  ``scores.parquet`` gives them;
- the monitoring and effects files: the weekly job's local work folder for this database
  (:func:`churnml.jobs.sql_scores.work_dir`, under ``CHURNML_HOME``) when it exists on this
  machine.

DuckDB: a connection is opened per read and closed at once, so the file stays writable by the
weekly job between reads (DuckDB allows one writing process). PostgreSQL: one connection in
autocommit mode is kept (no transaction stays open, no login per page). A table that is
missing, or lacks the columns the pages need (another schema version),
is a sentence on a 404 page naming the table and the columns; the database being down is a
503 page. The password is never shown: every message goes through
:meth:`churnml.data.sql.DatabaseSource.scrub`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from churnml.data.sql import DatabaseSource, DatabaseUnavailableError, connect, quote_ident
from churnml.errors import ChurnMLError
from churnml.jobs.sql_scores import SCORES_TABLE, work_dir
from churnml.ui.weeks import (
    ACTION_FIELDS,
    REQUIRED_COLUMNS,
    SourceUnavailable,
    Week,
    finish_list_frame,
    reason_text,
)

#: seconds the list of weeks (and the table's columns) is reused before asking again
LISTING_TTL_S = 10.0


def _is_nested(data_type: str) -> bool:
    t = data_type.strip().upper()
    return t in ("JSONB", "JSON") or t.startswith(("STRUCT", "MAP", "UNION")) or t.endswith("]")


def _literal(as_of: pd.Timestamp) -> str:
    """A week's as_of as a SQL timestamp literal (the value comes from the table itself)."""
    return f"TIMESTAMP '{pd.Timestamp(as_of):%Y-%m-%d %H:%M:%S}'"


class SqlSource:
    """``churnml_scores`` in a DuckDB file or a PostgreSQL database (see the module doc)."""

    def __init__(self, target: DatabaseSource) -> None:
        self.target = target
        self.description = f"{SCORES_TABLE} in {target}"
        from churnml.config import home_path

        side = work_dir(target, base=home_path())  # never creates the data home
        self.side_dir: Path | None = side if side.is_dir() else None
        self._lock = threading.Lock()
        self._conn: Any = None  # PostgreSQL: the kept connection (see _run)
        self._conn_lock = threading.Lock()
        self._autocommit = False
        # (listing time, the next best action's fields): DuckDB asks once per listing
        self._fields: tuple[float | None, list[str]] | None = None
        # (time, weeks, {column: data type} or None, problem or None)
        self._listing: tuple[float, list[Week], dict[str, str] | None, str | None] | None = None

    # --- connections ----------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            return connect(self.target)
        except ChurnMLError as exc:  # messages from churnml.data.sql hold no password
            raise SourceUnavailable(self.target.scrub(exc)) from None
        except Exception as exc:  # noqa: BLE001
            raise SourceUnavailable(self.target.scrub(reason_text(exc))) from None

    def _query(self, conn: Any, sql: str, params: tuple = ()) -> Any:
        """The result of ``sql`` (``?`` placeholders) as an Arrow table."""
        if self.target.kind == "duckdb":
            return conn.sql(sql, params=list(params) or None).to_arrow_table()
        for i in range(len(params)):
            sql = sql.replace("?", f"${i + 1}", 1)
        cur = conn.cursor()
        try:
            cur.execute(sql, parameters=params or None)
            return cur.fetch_arrow_table()
        finally:
            cur.close()

    def _run(self, sql: str, params: tuple = ()) -> Any:
        """One query; errors scrubbed of the password. A lost connection is
        :class:`SourceUnavailable`; any other error is raised for the caller (the store records
        the week as unreadable). DuckDB: a connection of its own, closed at once (the file
        stays writable by the weekly job). PostgreSQL: one connection in autocommit mode, kept
        (no transaction stays open; no login per page), one query at a time, dropped and made
        again after any error."""
        from churnml.data.sql import is_connection_lost

        if self.target.kind == "duckdb":
            conn = self._connect()
            try:
                return self._query(conn, sql, params)
            except Exception as exc:  # noqa: BLE001 - scrubbed, then mapped
                raise RuntimeError(self.target.scrub(reason_text(exc))) from None
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
        with self._conn_lock:
            if self._conn is None:
                conn = self._connect()
                try:
                    conn.adbc_connection.set_autocommit(True)
                    self._autocommit = True
                except Exception:  # noqa: BLE001 - then each read ends with a rollback
                    self._autocommit = False
                self._conn = conn
            conn = self._conn
            try:
                result = self._query(conn, sql, params)
                if not self._autocommit:
                    conn.rollback()
                return result
            except Exception as exc:  # noqa: BLE001 - scrubbed, then mapped
                self._conn = None
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - a broken connection cannot close cleanly
                    pass
                if is_connection_lost(exc):
                    raise SourceUnavailable(f"{self.target}: the database went away: "
                                            f"{self.target.scrub(reason_text(exc))}") from None
                raise RuntimeError(self.target.scrub(reason_text(exc))) from None

    # --- the weeks ------------------------------------------------------------------------
    def _columns(self) -> dict[str, str] | None:
        where = f"table_name = '{SCORES_TABLE}'"
        where += (" AND table_schema = current_schema()" if self.target.kind == "postgresql"
                  else " AND table_schema = 'main'")
        table = self._run("SELECT column_name, data_type FROM information_schema.columns "
                          f"WHERE {where} ORDER BY ordinal_position")
        names = table.column(0).to_pylist()
        return dict(zip(names, table.column(1).to_pylist())) or None

    def _list(self) -> tuple[list[Week], dict[str, str] | None, str | None]:
        with self._lock:
            hit = self._listing
        if hit is not None and time.monotonic() - hit[0] < LISTING_TTL_S:
            return hit[1], hit[2], hit[3]
        weeks: list[Week] = []
        problem = None
        try:
            columns = self._columns()
        except SourceUnavailable:
            raise
        except RuntimeError as exc:  # e.g. no permission to read the catalog: said on the page
            columns, problem = None, f"cannot list the columns of {SCORES_TABLE}: {exc}"
        if problem is not None:
            pass
        elif columns is None:
            problem = (f"no table {SCORES_TABLE} in {self.target}: churnml score --out "
                       f"{self.target} writes it")
        elif "as_of" not in columns or "account_id" not in columns:
            problem = (f"{SCORES_TABLE} in {self.target} has no as_of or account_id column: "
                       "not a table written by churnml score")
        else:
            sums = ", ".join(f"sum({quote_ident(c)})" for c in ("health_score", "mrr")
                             if c in columns and not _is_nested(columns[c]))
            try:
                rows = self._run(f"SELECT as_of, count(*){', ' + sums if sums else ''} "
                                 f"FROM {SCORES_TABLE} GROUP BY as_of ORDER BY as_of").to_pylist()
            except SourceUnavailable:
                raise
            except RuntimeError as exc:  # e.g. no permission to read the table
                rows, problem = [], f"cannot read {SCORES_TABLE} in {self.target}: {exc}"
            for row in rows:
                values = list(row.values())
                as_of = pd.Timestamp(values[0])
                version = hash(tuple(round(float(v), 6) if v is not None else None
                                     for v in values[1:])) & ((1 << 62) - 1)
                weeks.append(Week(as_of, f"{SCORES_TABLE}@{as_of:%Y-%m-%d}", version,
                                  name=f"{SCORES_TABLE} as_of={as_of:%Y-%m-%d} in "
                                       f"{self.target}"))
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing and problem is None:
                problem = (f"{SCORES_TABLE} in {self.target} has no column(s) "
                           f"{', '.join(missing)}: written by another output schema version "
                           "(the table's comment names it)")
        if problem is not None:
            weeks = []  # the table as a whole cannot be shown: the pages say why
        with self._lock:
            self._listing = (time.monotonic(), weeks, columns, problem)
        return weeks, columns, problem

    def weeks(self) -> list[Week]:
        return self._list()[0]

    def skipped(self) -> list[str]:
        return []  # a week is in the table once its transaction committed, whole

    def problem(self) -> str | None:
        weeks, _columns, problem = self._list()
        if problem is not None or weeks:
            return problem
        return f"no week in {SCORES_TABLE} of {self.target} yet (churnml score --out writes one)"

    # --- reading --------------------------------------------------------------------------
    def list_frame(self, week: Week) -> pd.DataFrame:
        import pyarrow as pa

        _weeks, columns, problem = self._list()
        if columns is None or problem is not None:
            raise RuntimeError(problem or f"no table {SCORES_TABLE}")
        scalar = [c for c, t in columns.items() if not _is_nested(t)]
        select = [quote_ident(c) for c in scalar]
        if "next_best_action" in columns:
            fields = self._action_fields(week, columns["next_best_action"])
            for f in fields:
                select.append(f"next_best_action->>'{f}' AS \"action_{f}\""
                              if self.target.kind == "postgresql" else
                              f"next_best_action.{f} AS \"action_{f}\"")
        if "alerts" in columns:
            if self.target.kind == "postgresql":
                select.append("coalesce(jsonb_array_length(alerts), 0)::integer AS alerts_count")
                select.append("coalesce((SELECT string_agg(e, ', ' ORDER BY o) FROM "
                              "jsonb_array_elements_text(alerts) WITH ORDINALITY AS a(e, o)), '') "
                              "AS alerts_text")
            else:
                select.append("coalesce(len(alerts), 0)::INTEGER AS alerts_count")
                select.append("coalesce(array_to_string(alerts, ', '), '') AS alerts_text")
        table = self._run(f"SELECT {', '.join(select)} FROM {SCORES_TABLE} "
                          f"WHERE as_of = {_literal(week.as_of)}")
        # the parquet file's types: timestamps in ns (DuckDB and PostgreSQL give us)
        for i, field in enumerate(table.schema):
            if pa.types.is_timestamp(field.type) and field.type.unit != "ns":
                table = table.set_column(i, field.name,
                                         table.column(i).cast(pa.timestamp("ns", field.type.tz)))
        return finish_list_frame(table)

    def _action_fields(self, week: Week, data_type: str) -> list[str]:
        """The next best action's fields of :data:`ACTION_FIELDS` the table has (DuckDB: from
        the column's type, asked once per listing of the weeks; PostgreSQL: from the keys of
        one of the week's actions)."""
        with self._lock:
            listed_at = None if self._listing is None else self._listing[0]
            hit = self._fields
        if hit is not None and hit[0] == listed_at:
            return hit[1]
        fields = self._ask_action_fields(week)
        if self.target.kind == "duckdb":
            with self._lock:
                self._fields = (listed_at, fields)
        return fields

    def _ask_action_fields(self, week: Week) -> list[str]:
        if self.target.kind == "duckdb":
            struct = self._run(f"SELECT next_best_action FROM {SCORES_TABLE} LIMIT 0").schema[0].type
            names = {struct.field(i).name for i in range(struct.num_fields)}
            return [f for f in ACTION_FIELDS if f in names]
        keys = self._run(
            f"SELECT DISTINCT k FROM (SELECT next_best_action FROM {SCORES_TABLE} WHERE as_of = "
            f"{_literal(week.as_of)} AND jsonb_typeof(next_best_action) = 'object' LIMIT 1) s, "
            "jsonb_object_keys(s.next_best_action) AS k").column(0).to_pylist()
        return [f for f in ACTION_FIELDS if f in set(keys)]

    def account_row(self, week: Week, account_id: str) -> dict[str, Any] | None:
        _weeks, columns, problem = self._list()
        if columns is None or problem is not None:
            raise RuntimeError(problem or f"no table {SCORES_TABLE}")
        if "\x00" in account_id:  # no such id (and PostgreSQL refuses NUL in text)
            return None
        json_cols = [c for c, t in columns.items() if t.strip().lower() in ("jsonb", "json")]
        select = ", ".join(f"{quote_ident(c)}::text AS {quote_ident(c)}" if c in json_cols
                           else quote_ident(c) for c in columns)
        table = self._run(f"SELECT {select} FROM {SCORES_TABLE} WHERE as_of = "
                          f"{_literal(week.as_of)} AND account_id = ?", (account_id,))
        if table.num_rows == 0:
            return None
        row = table.slice(0, 1).to_pylist()[0]
        for c in json_cols:
            if row.get(c) is not None:
                row[c] = json.loads(row[c])
        return row


def check_database(target: DatabaseSource) -> None:
    """Refuse to start on a DuckDB file that is not there (exit 2) or a PostgreSQL database
    that refuses the login (exit 2) or cannot be reached (exit 1); messages without the
    password. A missing table starts (the pages say so)."""
    conn = connect(target)
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass


__all__ = ["SqlSource", "check_database", "LISTING_TTL_S", "DatabaseUnavailableError"]
