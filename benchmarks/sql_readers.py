"""Which library reads a big table from PostgreSQL into Arrow fastest: the comparison behind
the choice recorded in docs/data_contract.md ("Reading from a database").

Starts a throw-away PostgreSQL cluster (tests/support/postgres.py), loads the cached simulated
book's ``usage_events`` (50,000 accounts: about 25 million rows) into it with ADBC's bulk COPY,
then reads it back with each candidate in a fresh child process (wall time and the child's peak
RSS), next to ``pyarrow.parquet.read_table`` of the same rows in the same run:

- ``adbc``: adbc-driver-postgresql, ``fetch_arrow_table`` (libpq binary COPY -> Arrow, C++);
- ``connectorx``: ``read_sql(..., return_type="arrow")`` (Rust, binary COPY);
- ``psycopg``: psycopg 3 ``COPY ... TO STDOUT`` rows -> ``pyarrow.Table.from_pydict`` (the
  path SQLAlchemy + psycopg and ibis's PostgreSQL backend take: Python objects per value);
  on ``--python-rows`` rows only (25M rows of Python objects would take minutes and GBs), and
  the figure scaled to the whole table is stated as such;
- ``duckdb_postgres``: DuckDB's postgres scanner (``ATTACH ... (TYPE postgres)``), when the
  extension can be loaded (it is downloaded on first use: not on a machine without internet).

Usage::

    python benchmarks/sql_readers.py                 # the cached 50k book
    python benchmarks/sql_readers.py --accounts 5000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import cached_book, log

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _child(kind: str, url: str, parquet: str, rows: int | None, queue) -> None:
    import resource

    t0 = time.perf_counter()
    limit = f" LIMIT {rows}" if rows else ""
    sql = f'SELECT * FROM "usage_events"{limit}'
    n = 0
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            n = pq.read_table(parquet).num_rows
        elif kind == "adbc":
            import adbc_driver_postgresql.dbapi as pg

            with pg.connect(url) as conn, conn.cursor() as cur:
                cur.execute(sql)
                n = cur.fetch_arrow_table().num_rows
        elif kind == "connectorx":
            import connectorx as cx

            n = cx.read_sql(url, sql, return_type="arrow").num_rows
        elif kind == "psycopg":
            import psycopg
            import pyarrow as pa

            with psycopg.connect(url) as conn, conn.cursor() as cur:
                cur.execute(sql)
                names = [d.name for d in cur.description]
                columns: list[list] = [[] for _ in names]
                while True:
                    batch = cur.fetchmany(100_000)
                    if not batch:
                        break
                    for i, col in enumerate(zip(*batch)):
                        columns[i].extend(col)
                n = pa.Table.from_pydict(dict(zip(names, columns))).num_rows
        elif kind == "duckdb_postgres":
            import duckdb

            con = duckdb.connect()
            con.execute("LOAD postgres")  # no INSTALL: offline machines have it or not
            con.execute(f"ATTACH '{url}' AS pg (TYPE postgres, READ_ONLY)")
            n = con.sql(f"SELECT * FROM pg.public.usage_events{limit}").to_arrow_table().num_rows
        error = None
    except Exception as exc:  # noqa: BLE001 - reported as the candidate's result
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    queue.put({"kind": kind, "rows": n, "seconds": time.perf_counter() - t0,
               "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               "error": error})


def run_child(kind: str, url: str, parquet: Path, rows: int | None) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, url, str(parquet), rows, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "churnml-bench")
    parser.add_argument("--python-rows", type=int, default=2_000_000)
    args = parser.parse_args(argv)

    from support.postgres import postgres_server

    from churnml.data.sql import connect, parse_source
    from churnml.data.sql_write import _arrow_reader, write_table

    folder = cached_book(args.cache, args.accounts, args.months, args.seed)
    parquet = folder / "usage_events.parquet"
    with postgres_server() as pg:
        url = pg.create_database("bench")
        source = parse_source(url)
        t0 = time.perf_counter()
        conn = connect(source, read_only=False)
        rows = write_table(conn, source, "usage_events", _arrow_reader(parquet))
        conn.commit()
        conn.close()
        log(f"loaded {rows:,} usage events into PostgreSQL in {time.perf_counter() - t0:.1f} s")
        pg.psql("VACUUM ANALYZE usage_events", "bench")
        load = os.getloadavg()
        results = []
        for kind, limit in (("parquet", None), ("adbc", None), ("connectorx", None),
                            ("duckdb_postgres", None), ("psycopg", args.python_rows),
                            ("parquet", None), ("adbc", None), ("connectorx", None)):
            r = run_child(kind, url, parquet, limit)
            log(f"{kind}: {r['rows']:,} rows {r['seconds']:.1f} s peak {r['peak_rss'] / 1e9:.2f} GB"
                + (f" ({r['error']})" if r["error"] else ""))
            results.append(r)
        load_after = os.getloadavg()
    best: dict[str, dict] = {}
    for r in results:
        if r["kind"] not in best or (r["error"] is None and r["seconds"] < best[r["kind"]]["seconds"]):
            best[r["kind"]] = r
    ref = best["parquet"]
    print(f"\nusage_events: {rows:,} rows; load average {load[0]:.1f} / {load[1]:.1f} before, "
          f"{load_after[0]:.1f} after; best of the runs per reader\n")
    print("| reader | rows read | seconds | x parquet | rows/s | child peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, r in best.items():
        if r["error"]:
            print(f"| {kind} | - | - | - | - | failed: {r['error']} |")
            continue
        per_row = r["seconds"] / max(r["rows"], 1)
        scaled = per_row * rows
        print(f"| {kind} | {r['rows']:,} | {r['seconds']:.1f}"
              + (f" (x{rows / r['rows']:.1f} rows: ~{scaled:.0f})" if r["rows"] < rows else "")
              + f" | {scaled / ref['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} | "
              f"{r['peak_rss'] / 1e9:.2f} GB |")
    print(json.dumps({"rows": rows, "results": results, "loadavg": [load, load_after]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
