"""The week's scores into a database: ``churnml score --out postgresql://...`` (or ``duckdb:``).

Table ``churnml_scores``: one row per (account_id, as_of) (primary key), the columns of the one
output schema (:func:`churnml.scoring.schema.declared_columns`, never re-declared here: this
module only maps its column *types* to SQL types per database). PostgreSQL has no nested
types for the reasons, alerts and next best action: they are ``jsonb`` (the same records as in
``scores.parquet``, converted by DuckDB's ``to_json``, vectorised); DuckDB keeps them as
``STRUCT`` / ``LIST``. The table's comment records the schema version (``churnml output schema
version N``), as does every row's ``schema_version``; a table of another schema version (other
columns) is refused with a clear error, never written into.

One transaction per week: delete the rows of that ``as_of``, insert the week's rows, refresh the
view, commit. A rerun replaces the week; a run killed before the commit leaves the previous
state (PostgreSQL and DuckDB roll an unfinished transaction back).

View ``churnml_queue``: this week's actions to work (the latest ``as_of``; ``queue_status =
'queued'`` and not held out), per owner in queue order, with the play, the severity, the time
to respond, the expected value and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from churnml.data.sql import (
    DatabaseSource,
    connect,
    driver_error,
    quote_ident,
    require_driver,
    rollback_quietly,
)
from churnml.errors import ChurnMLError, UsageError
from churnml.scoring.schema import SCHEMA_VERSION, declared_columns

SCORES_TABLE = "churnml_scores"
QUEUE_VIEW = "churnml_queue"
_STAGING = "churnml_scores_incoming"

#: SQL type of each output column type (churnml.scoring.schema.ColumnType), per database.
_PG_TYPES = {"string": "text", "float64": "double precision", "int32": "integer",
             "bool": "boolean", "timestamp": "timestamp", "strings": "jsonb",
             "reasons": "jsonb", "action": "jsonb"}
_NESTED = ("strings", "reasons", "action")


def table_comment() -> str:
    return f"churnml output schema version {SCHEMA_VERSION}"


def _columns(dimensions: Sequence[str]) -> list[tuple[str, str]]:
    """(name, output column type) of every output column, in the schema's order."""
    return [(name, col.type) for name, col, _ in declared_columns(dimensions)]


def create_scores_sql_postgres(dimensions: Sequence[str]) -> str:
    cols = ", ".join(f"{quote_ident(n)} {_PG_TYPES[t]}" for n, t in _columns(dimensions))
    return (f"CREATE TABLE IF NOT EXISTS {SCORES_TABLE} ({cols}, "
            f"PRIMARY KEY (account_id, as_of))")


def queue_view_sql(kind: str) -> str:
    """``churnml_queue``: the latest week's queued (not held-out) actions per owner."""
    if kind == "postgresql":
        field = lambda f: f"next_best_action->>'{f}'"  # noqa: E731
    else:
        field = lambda f: f"next_best_action.{f}"  # noqa: E731
    return (
        f"CREATE OR REPLACE VIEW {QUEUE_VIEW} AS SELECT {field('owner')} AS owner, "
        f"row_number() OVER (PARTITION BY {field('owner')} ORDER BY queue_rank, account_id) "
        f"AS position, account_id, as_of, {field('playbook')} AS playbook, "
        f"{field('action')} AS action, {field('severity')} AS severity, "
        f"{field('respond_within')} AS respond_within, expected_value, queue_reason, queue_rank "
        f"FROM {SCORES_TABLE} WHERE as_of = (SELECT max(as_of) FROM {SCORES_TABLE}) "
        f"AND queue_status = 'queued' AND holdout IS NOT TRUE")


def _existing_columns(conn: Any, kind: str) -> list[str] | None:
    """The columns of an existing churnml_scores, in order; None when there is none."""
    sql = ("SELECT column_name FROM information_schema.columns WHERE table_name = "
           f"'{SCORES_TABLE}'" + (" AND table_schema = current_schema()"
                                  if kind == "postgresql" else "")
           + " ORDER BY ordinal_position")
    cur = conn.cursor()
    try:
        cur.execute(sql)
        names = [r[0] for r in cur.fetchall()]
    finally:
        cur.close()
    return names or None


def _json_columns(table: Any, dimensions: Sequence[str]) -> Any:
    """The nested columns as JSON text (DuckDB's vectorised ``to_json``), the others as they are."""
    duckdb = require_driver("duckdb")

    nested = {n for n, t in _columns(dimensions) if t in _NESTED}
    con = duckdb.connect()
    try:
        con.register("scores", table)
        select = ", ".join(f"to_json({quote_ident(n)})::VARCHAR AS {quote_ident(n)}"
                           if n in nested else quote_ident(n) for n in table.column_names)
        return con.sql(f"SELECT {select} FROM scores").to_arrow_table()
    finally:
        con.close()


def publish_scores(target: DatabaseSource, table: Any, as_of, dimensions: Sequence[str], *,
                   before_commit: Callable[[], None] | None = None) -> int:
    """Replace the rows of ``as_of`` in ``churnml_scores`` with ``table`` (the week's Arrow
    table, in the output schema) in one transaction; returns the rows written.

    ``before_commit``: called after the rows are inserted and before the commit (tests use
    it to kill the process mid-transaction)."""
    import pandas as pd

    expected = [n for n, _ in _columns(dimensions)]
    if table.column_names != expected:
        raise ValueError(f"the scores table's columns differ from the output schema: "
                         f"{table.column_names} vs {expected}")
    when = pd.Timestamp(as_of).to_pydatetime()
    conn = connect(target, read_only=False)
    try:
        existing = _existing_columns(conn, target.kind)
        if existing is not None and existing != expected:
            raise UsageError(
                f"{SCORES_TABLE} in {target} has other columns than this version's output "
                f"schema (version {SCHEMA_VERSION}; missing {sorted(set(expected) - set(existing))}, "
                f"extra {sorted(set(existing) - set(expected))}): a table written by another "
                f"schema version; rename or drop it (the table's comment names its version)")
        if target.kind == "duckdb":
            rows = _publish_duckdb(conn, table, when, existing is None)
        else:
            rows = _publish_postgres(conn, table, when, dimensions, existing is None)
        if before_commit is not None:
            before_commit()
        conn.commit()
        return rows
    except ChurnMLError:
        rollback_quietly(conn)
        raise
    except Exception as exc:  # noqa: BLE001 - the driver's error, named and scrubbed
        rollback_quietly(conn)
        raise UsageError(f"cannot write the scores of {when:%Y-%m-%d} to {target}: "
                         f"{driver_error(target, exc)}") from None
    finally:
        conn.close()


def _publish_duckdb(conn: Any, table: Any, when, create: bool) -> int:
    conn.begin()
    conn.register(_STAGING, table)
    try:
        if create:
            # the columns and nested types straight from the output schema's Arrow schema
            conn.execute(f"CREATE TABLE {SCORES_TABLE} AS SELECT * FROM {_STAGING} LIMIT 0")
            conn.execute(f"ALTER TABLE {SCORES_TABLE} ADD PRIMARY KEY (account_id, as_of)")
            conn.execute(f"COMMENT ON TABLE {SCORES_TABLE} IS '{table_comment()}'")
        conn.execute(f"DELETE FROM {SCORES_TABLE} WHERE as_of = ?", [when])
        conn.execute(f"INSERT INTO {SCORES_TABLE} SELECT * FROM {_STAGING}")
        conn.execute(queue_view_sql("duckdb"))
    finally:
        conn.unregister(_STAGING)
    return int(table.num_rows)


def _publish_postgres(conn: Any, table: Any, when, dimensions: Sequence[str], create: bool) -> int:
    types = dict(_columns(dimensions))
    staged = _json_columns(table, dimensions)
    cur = conn.cursor()
    try:
        if create:
            cur.execute(create_scores_sql_postgres(dimensions))
            cur.execute(f"COMMENT ON TABLE {SCORES_TABLE} IS '{table_comment()}'")
        cur.execute(f"DELETE FROM {SCORES_TABLE} WHERE as_of = $1", parameters=(when,))
        cur.adbc_ingest(_STAGING, staged, mode="create", temporary=True)
        select = ", ".join(f"{quote_ident(n)}::jsonb" if types[n] in _NESTED else quote_ident(n)
                           for n in staged.column_names)
        cur.execute(f"INSERT INTO {SCORES_TABLE} SELECT {select} FROM {_STAGING}")
        cur.execute(f"DROP TABLE {_STAGING}")
        cur.execute(queue_view_sql("postgresql"))
    finally:
        cur.close()
    return int(table.num_rows)


def read_scores(target: DatabaseSource, as_of=None) -> Any:
    """``churnml_scores`` (one week with ``as_of``) as an Arrow table, ordered by account."""
    from churnml.data.sql import read_arrow

    import pandas as pd

    where = "" if as_of is None else f" WHERE as_of = '{pd.Timestamp(as_of):%Y-%m-%d}'"
    conn = connect(target)
    try:
        return read_arrow(conn, target,
                          f"SELECT * FROM {SCORES_TABLE}{where} ORDER BY as_of, account_id")
    finally:
        conn.close()


def work_dir(target: DatabaseSource, base=None):
    """The local folder the weekly job keeps for a database output (its partitions, report and
    lock: last week's scores for the alerts, the monitoring state): under ``CHURNML_HOME``,
    ``sql-out/<database>-<hash of the URL without password>``. ``base``: the data home to use
    instead (a reader passes :func:`churnml.config.home_path`, which creates nothing)."""
    import hashlib

    from churnml.config import home

    digest = hashlib.sha256(target.display.encode()).hexdigest()[:10]
    return (home() if base is None else base) / "sql-out" / f"{target.name}-{digest}"


def publish_partition(target: DatabaseSource, scores_path, as_of, dimensions: Sequence[str],
                      before_commit: Callable[[], None] | None = None) -> int:
    """A completed partition's ``scores.parquet`` into ``churnml_scores`` (one transaction)."""
    import pyarrow.parquet as pq

    return publish_scores(target, pq.read_table(scores_path), as_of, dimensions,
                          before_commit=before_commit)
