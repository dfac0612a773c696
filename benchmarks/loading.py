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

Usage::

    python benchmarks/loading.py --accounts 50000        # the cached 50k book
    python benchmarks/loading.py --accounts 5000 --repeat 3

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
    args = parser.parse_args(argv)

    folder = args.data or cached_book(args.cache, args.accounts, args.months, args.seed)
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
