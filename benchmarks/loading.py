"""Benchmark of ``churnml.data.io.load_book``, next to plain pyarrow reads of the same files.

On a book folder (``--data DIR``, or a simulated book of ``--accounts`` accounts, cached under
``--cache`` and shared with the other benchmarks):

a. **floor**: ``pyarrow.parquet.read_table(path).to_pandas()`` of every parquet file (CSV
   files: ``pyarrow.csv.read_csv``), in a child process so its memory does not count against
   the load, per table and in total, with that child's peak RSS;
b. **load_book**: the whole call (read, parse, validate, sort, rejects), with its wall time,
   the process's peak RSS (sampled every 20 ms) and its growth over the call; per table, the
   seconds spent reading the file (a timing wrapper around ``churnml.data.io.read_table``)
   and validating it (from the end of its read to the start of the next table's read).

With ``--postgres``: the same book also in a throw-away PostgreSQL cluster
(tests/support/postgres.py, in a folder under ``$TMPDIR``, on 127.0.0.1, stopped and removed at
the end; loaded with ``churnml.data.sql.write_book_folder``, timed), and ``load_book`` from the
folder and from the database side by side, each in a fresh child process (wall time and the
child's peak RSS), alternated for ``--repeat`` rounds; ``--pg-connections 2,1`` also reads the
database on one connection in every round (``CHURNML_SQL_READ_CONNECTIONS``). Goals (issue 13):
the database read at most 3x the folder's time, its peak at most the folder's + 20%.

Usage::

    python benchmarks/loading.py --accounts 50000        # the cached 50k book
    python benchmarks/loading.py --accounts 5000 --repeat 3
    python benchmarks/loading.py --accounts 50000 --postgres --repeat 3 --pg-connections 2,1

Prints a markdown table for benchmarks/README.md and a JSON line with every figure. Timings on
a shared 2-core machine are noisy: the load average is printed with them, and with
``--repeat`` the best load and the best floor are kept (interleaved, so both see the same load).
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

from _common import Measure, cached_book, log  # benchmarks/ is on sys.path when run as a script


def _floor(folder: str, queue) -> None:
    """Child process: plain pyarrow reads to pandas, per table seconds and the child's peak."""
    import resource

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from churnml.data.io import find_table_files

    files, _ = find_table_files(folder)
    seconds = {}
    t_all = time.perf_counter()
    for table, path in files.items():
        t0 = time.perf_counter()
        if path.suffix == ".parquet":
            frame = pq.read_table(path).to_pandas()
        else:
            frame = pcsv.read_csv(path).to_pandas()
        seconds[table] = time.perf_counter() - t0
        del frame
    total = time.perf_counter() - t_all
    queue.put({"seconds": seconds, "total": total,
               "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})


def floor(folder: Path) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_floor, args=(str(folder), queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def timed_load(folder: Path) -> dict:
    """``load_book`` once, with per-table read and validation seconds.

    ``load_book`` reads a table's file just before validating it, so a table's validation
    time is the time from the end of its read to the start of the next read (for the last
    table, to the end of ``load_book``, rejects file included). Only the read is wrapped:
    a wrapper around the validation would hold each raw frame for the whole validation
    (its arguments), which ``load_book`` frees half-way, and inflate the peak memory."""
    import churnml.data.io as io

    reads: list[tuple[str, float, float]] = []
    real_read = io.read_table

    def read_table(path, *a, **k):
        t0 = time.perf_counter()
        frame = real_read(path, *a, **k)
        reads.append((Path(path).stem, t0, time.perf_counter()))
        return frame

    io.read_table = read_table
    try:
        with tempfile.TemporaryDirectory() as tmp, Measure() as m:
            book, report = io.load_book(folder, rejects_path=Path(tmp) / "_rejects.csv")
            t_end = time.perf_counter()
    finally:
        io.read_table = real_read
    read_s = {t: end - start for t, start, end in reads}
    validate_s = {t: (reads[i + 1][1] if i + 1 < len(reads) else t_end) - end
                  for i, (t, _, end) in enumerate(reads)}
    counts = {t: dict(c) for t, c in report.counts.items()}
    dtypes = {t: {c: str(d) for c, d in df.dtypes.items()} for t, df in book.tables.items()}
    del book, report
    return {"total": m.seconds, "peak_rss": m.peak, "rss_growth": m.growth, "read": read_s,
            "validate": validate_s, "counts": counts, "dtypes": dtypes}


def _child_load(where: str, queue) -> None:
    """Child process: ``load_book`` of a folder or a database URL; seconds and peak RSS."""
    import resource

    from churnml.data.io import load_book

    t0 = time.perf_counter()
    book, report = load_book(where)
    seconds = time.perf_counter() - t0
    queue.put({"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               "counts": {t: dict(c) for t, c in report.counts.items()},
               "rows": {t: len(f) for t, f in book.tables.items()}})


def child_load(where: str, env: dict[str, str] | None = None) -> dict:
    """``load_book`` in a fresh (spawned) child with ``env`` added to its environment."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        proc = ctx.Process(target=_child_load, args=(where, queue))
        proc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    result = queue.get()
    proc.join()
    return result


def postgres_side_by_side(folder: Path, repeat: int, pg_connections: list[int],
                          pg_url: str | None = None) -> int:
    """``load_book`` from the folder and from PostgreSQL, interleaved, in child processes.

    One round: the folder, then PostgreSQL read with each of ``pg_connections`` connections
    (``CHURNML_SQL_READ_CONNECTIONS``); ``repeat`` rounds. The goal is judged on the product's
    default (the first of ``pg_connections``), best run against best run and, as a check on
    the noise, as the median of the ratios within a round. ``pg_url``: a database that already
    holds this book (read only), instead of a throw-away cluster loaded here."""
    import contextlib
    import statistics

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.postgres import postgres_server

    from churnml.data.sql import READ_CONNECTIONS_ENV, parse_source
    from churnml.data.sql_write import write_book_folder

    kinds = [("parquet", str(folder), None)]
    kinds += [(f"postgresql, {n} connection{'s' if n > 1 else ''}", None, n) for n in pg_connections]
    with (contextlib.nullcontext() if pg_url else postgres_server()) as pg:
        if pg is None:
            url, load_s = pg_url, float("nan")
            rows = {t: n for t, n in _folder_rows(folder).items()}
            log(f"reading the book from the given database {parse_source(url)}")
        else:
            url = pg.create_database("book")
            t0 = time.perf_counter()
            rows = write_book_folder(folder, parse_source(url))
            load_s = time.perf_counter() - t0
            log(f"loaded {sum(rows.values()):,} rows into PostgreSQL in {load_s:.1f} s "
                f"(cluster under {pg.data_dir.parent})")
            pg.psql("VACUUM ANALYZE", "book")
        load_before = os.getloadavg()
        runs: dict[str, list[dict]] = {kind: [] for kind, _, _ in kinds}
        for i in range(repeat):
            for kind, where, n in kinds:
                env = None if n is None else {READ_CONNECTIONS_ENV: str(n)}
                load_at_start = os.getloadavg()[0]
                r = child_load(where or url, env)
                r["load_at_start"] = load_at_start
                runs[kind].append(r)
                log(f"round {i + 1}, {kind}: {r['seconds']:.1f} s, peak RSS "
                    f"{r['peak_rss'] / 1e9:.2f} GB (load average {load_at_start:.1f} at its start)")
        load_after = os.getloadavg()
    pg_kind = kinds[1][0]
    for kind, _, _ in kinds[1:]:
        assert runs[kind][0]["counts"] == runs["parquet"][0]["counts"], kind
        assert runs[kind][0]["rows"] == runs["parquet"][0]["rows"], kind
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    peak = {k: min(r["peak_rss"] for r in v) for k, v in runs.items()}
    ratio = best[pg_kind]["seconds"] / best["parquet"]["seconds"]
    mem = peak[pg_kind] / peak["parquet"]
    per_round = [p["seconds"] / f["seconds"] for p, f in zip(runs[pg_kind], runs["parquet"])]
    mem_round = [p["peak_rss"] / f["peak_rss"] for p, f in zip(runs[pg_kind], runs["parquet"])]
    print(f"\n{folder} ({sum(rows.values()):,} rows; usage_events {rows.get('usage_events', 0):,}); "
          f"load average (1 / 5 min) {load_before[0]:.1f} / {load_before[1]:.1f} before, "
          f"{load_after[0]:.1f} / {load_after[1]:.1f} after; {repeat} rounds, alternated\n")
    print("| load_book from | seconds (each round) | peak RSS (each round) | load average at each start |")
    print("|---|---|---|---|")
    for kind, rs in runs.items():
        print(f"| {kind} | " + ", ".join(f"{r['seconds']:.1f}" for r in rs) + " | "
              + ", ".join(f"{r['peak_rss'] / 1e9:.2f} GB" for r in rs) + " | "
              + ", ".join(f"{r['load_at_start']:.1f}" for r in rs) + " |")
    print(f"\n{pg_kind} / parquet, best against best: time {ratio:.2f}x "
          f"(goal <= 3x: {'met' if ratio <= 3 else 'MISSED'}), lowest peak against lowest peak "
          f"{mem:.2f}x (goal <= 1.2x: {'met' if mem <= 1.2 else 'MISSED'})")
    print(f"within each round: time {', '.join(f'{r:.2f}x' for r in per_round)} "
          f"(median {statistics.median(per_round):.2f}x), peak "
          f"{', '.join(f'{r:.2f}x' for r in mem_round)} (median {statistics.median(mem_round):.2f}x)")
    print("loading the folder into PostgreSQL (churnml convert to-sql's code): "
          + (f"{load_s:.1f} s" if pg_url is None else "not done here (--pg-url)"))
    print(json.dumps({"data": str(folder), "runs": runs, "to_sql_seconds": load_s,
                      "database": str(parse_source(url)),
                      "loadavg": [load_before, load_after]}))
    return 0


def _folder_rows(folder: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    from churnml.data.io import find_table_files

    files, _ = find_table_files(folder)
    return {t: pq.ParquetFile(p).metadata.num_rows for t, p in files.items() if p.suffix == ".parquet"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a book folder (default: simulate one)")
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "churnml-bench")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-floor", action="store_true", help="skip the pyarrow floor")
    parser.add_argument("--postgres", action="store_true",
                        help="load_book from the folder and from PostgreSQL, side by side")
    parser.add_argument("--pg-connections", default="2",
                        help="with --postgres: comma-separated CHURNML_SQL_READ_CONNECTIONS "
                             "values, each read in every round (the first is judged; default 2, "
                             "the product's default; e.g. 2,1 also shows one connection)")
    parser.add_argument("--pg-url", help="with --postgres: a database that already holds this "
                                          "book (read only; default: a throw-away cluster, loaded)")
    args = parser.parse_args(argv)

    folder = args.data or cached_book(args.cache, args.accounts, args.months, args.seed)
    if args.postgres:
        return postgres_side_by_side(folder, args.repeat,
                                     [int(n) for n in args.pg_connections.split(",")],
                                     args.pg_url)
    load_before = os.getloadavg()[0]
    loads, floors = [], []
    for i in range(args.repeat):
        if not args.no_floor:
            floors.append(floor(folder))
            log(f"floor {i + 1}: {floors[-1]['total']:.1f} s")
        loads.append(timed_load(folder))
        log(f"load_book {i + 1}: {loads[-1]['total']:.1f} s, "
            f"peak RSS {loads[-1]['peak_rss'] / 1e9:.2f} GB")
    best = min(loads, key=lambda r: r["total"])
    best_floor = min(floors, key=lambda r: r["total"]) if floors else None
    load_after = os.getloadavg()[0]

    print(f"\n{folder}; load average {load_before:.1f} before, {load_after:.1f} after; "
          f"best of {args.repeat}\n")
    print("| table | rows read | rejected | read file (s) | validate (s) | floor: pyarrow to_pandas (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for table, c in best["counts"].items():
        fl = f"{best_floor['seconds'][table]:.2f}" if best_floor else ""
        print(f"| {table} | {c['read']:,} | {c['rejected']:,} | {best['read'].get(table, 0):.2f} | "
              f"{best['validate'].get(table, 0):.2f} | {fl} |")
    fl = f"{best_floor['total']:.1f} s" if best_floor else ""
    print(f"| **total** (wall) | {sum(c['read'] for c in best['counts'].values()):,} | "
          f"{sum(c['rejected'] for c in best['counts'].values()):,} | | **{best['total']:.1f} s** | "
          f"{fl} |")
    fl_peak = f"; floor child peak RSS {best_floor['peak_rss'] / 1e9:.2f} GB" if best_floor else ""
    print(f"\nload_book peak RSS {best['peak_rss'] / 1e9:.2f} GB (growth "
          f"{best['rss_growth'] / 1e9:.2f} GB){fl_peak}")
    print(json.dumps({"data": str(folder), "load": best, "floor": best_floor,
                      "loadavg": [load_before, load_after]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
