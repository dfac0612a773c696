"""Writing a book folder into a database: ``churnml convert to-sql --data DIR --url URL``.

Each table file is streamed as Arrow batches (parquet as stored; CSV all text) into a table of
the contract's name (or the name ``CHURNML_SQL_CONFIG`` maps it to), replacing a table of that
name; the whole book in one transaction. PostgreSQL: ADBC bulk ingest (binary COPY); DuckDB:
``CREATE TABLE ... AS`` over the Arrow stream. Used by the tests, the benchmarks and the docs to
put the simulated book into a database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from churnml.data.sql import (
    DatabaseSource,
    SqlConfig,
    connect,
    driver_error,
    load_sql_config,
    quote_ident,
    rollback_quietly,
)
from churnml.errors import ChurnMLError, UsageError

__all__ = ["write_book_folder", "write_table"]


def _arrow_reader(path: Path, batch_rows: int = 500_000) -> Any:
    """A table file as a stream of Arrow batches (parquet as stored; CSV all text, only empty
    cells null, as :func:`churnml.data.io.read_table` reads it)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if path.is_dir():  # a <table>.parquet folder of parquet files
        import pyarrow.dataset as ds

        dataset = ds.dataset(path, format="parquet")
        return pa.RecordBatchReader.from_batches(dataset.schema,
                                                 dataset.to_batches(batch_size=batch_rows))
    if path.suffix.lower() == ".parquet":
        pf = pq.ParquetFile(path)
        return pa.RecordBatchReader.from_batches(pf.schema_arrow, pf.iter_batches(batch_rows))
    with open(path, newline="", encoding="utf-8-sig") as fh:
        import csv

        header = next(csv.reader(fh), [])
    convert = pcsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                  strings_can_be_null=True, null_values=[""])
    return pcsv.open_csv(path, convert_options=convert)


def write_table(conn: Any, source: DatabaseSource, name: str, reader: Any) -> int:
    """Create (or replace) table ``name`` from an Arrow record batch reader; returns rows.
    Not committed: the caller commits (one transaction for a whole book)."""
    if source.kind == "duckdb":
        conn.register("churnml_incoming", reader)
        try:
            conn.execute(f"CREATE OR REPLACE TABLE {quote_ident(name)} AS "
                         "SELECT * FROM churnml_incoming")
        finally:
            conn.unregister("churnml_incoming")
        return int(conn.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchall()[0][0])
    cur = conn.cursor()
    try:
        schema, _, table = name.rpartition(".")
        cur.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")
        return int(cur.adbc_ingest(table, reader, mode="create", db_schema_name=schema or None))
    finally:
        cur.close()


def write_book_folder(folder: str | Path, target: DatabaseSource,
                      config: SqlConfig | None = None) -> dict[str, int]:
    """Load every table file of a book folder into ``target`` (tables named by ``config``,
    default the contract's names), replacing tables of those names, in one transaction;
    returns rows per table. Files are streamed in batches: memory stays bounded."""
    from churnml.data.io import find_table_files

    config = config or load_sql_config()
    files, _ = find_table_files(folder)
    if not files:
        raise UsageError(f"{folder}: no <table>.parquet|.csv files to load")
    conn = connect(target, read_only=False)
    rows: dict[str, int] = {}
    try:
        if target.kind == "duckdb":
            conn.begin()
        for table, path in files.items():
            try:
                rows[table] = write_table(conn, target, config.tables[table], _arrow_reader(path))
            except ChurnMLError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise UsageError(f"{table}: cannot write {path.name} to {target}: "
                                 f"{driver_error(target, exc)}") from None
        conn.commit()
    except BaseException:
        rollback_quietly(conn)
        raise
    finally:
        conn.close()
    return rows
