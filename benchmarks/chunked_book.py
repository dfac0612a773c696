"""A simulated book too large to hold in memory, written in account chunks.

``churnml.data.simulator.simulate`` holds the whole book in memory (about 4.6 GB at 50,000
accounts, so about 90 GB at 1,000,000). This script simulates ``--accounts`` accounts as
independent chunks of ``--chunk`` accounts, each with its own seed (``seed * 1000 + k``) and
its ids prefixed ``c<k>-`` (every ``*_id`` text column, so account, user, invoice and
respondent ids stay unique across chunks), and appends each chunk as one more part file of
each table: ``OUT/<table>.parquet/part-<k>.parquet``, the folder-of-parquet form of a table
that ``load_book`` and the Spark engine read as one table (docs/data_contract.md). Memory is
one chunk's, whatever the book's size; the chunks' accounts share the simulator's
distributions and calendar but not its random draws, so the book is a concatenation of
smaller simulated books (no ``_truth``: not an oracle book).

Usage::

    python benchmarks/chunked_book.py --accounts 100000 --chunk 10000 --out /tmp/book-100k
    python benchmarks/chunked_book.py --accounts 30000 --out /tmp/book-30k --validate
    # the same book on 2 cores: two processes, each writing every other chunk
    python benchmarks/chunked_book.py --accounts 1000000 --out /tmp/book-1m --part 0/2 &
    python benchmarks/chunked_book.py --accounts 1000000 --out /tmp/book-1m --part 1/2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import Measure, log  # benchmarks/ is on sys.path


def _prefixed(frame, prefix: str):
    """``frame`` with ``prefix`` in front of every text ``*_id`` value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, field in enumerate(table.schema):
        if field.name.endswith("_id") and (pa.types.is_string(field.type)
                                           or pa.types.is_large_string(field.type)):
            column = pc.binary_join_element_wise(pa.scalar(prefix, field.type),
                                                 table.column(i), pa.scalar("", field.type))
            table = table.set_column(i, field, column)
    return table


def write_chunked_book(out: Path, accounts: int, chunk: int, months: int, seed: int,
                       part: tuple[int, int] = (0, 1)) -> dict:
    """Simulate the chunks ``k`` with ``k % part[1] == part[0]`` (all of them by default)."""
    import pyarrow.parquet as pq

    from churnml.data.simulator import simulate

    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    chunks = -(-accounts // chunk)
    for k in range(part[0], chunks, part[1]):
        n = min(chunk, accounts - k * chunk)
        t0 = time.perf_counter()
        sim = simulate(n_accounts=n, months=months, seed=seed * 1000 + k)
        for name, frame in sim.tables.items():
            folder = out / f"{name}.parquet"
            folder.mkdir(exist_ok=True)
            table = _prefixed(frame, f"c{k:03d}-")
            part = folder / f"part-{k:05d}.parquet"
            tmp = folder / f".part-{k:05d}.parquet.tmp"  # hidden until renamed into place
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, part)
            counts[name] = counts.get(name, 0) + table.num_rows
        del sim
        log(f"chunk {k + 1}/{chunks}: {n:,} accounts in {time.perf_counter() - t0:.1f} s")
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, required=True)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--validate", action="store_true",
                        help="then load_book the folder (whole book in memory: small books)")
    parser.add_argument("--part", default="0/1", metavar="I/N",
                        help="simulate only the chunks k with k %% N == I, so N processes can "
                             "write one book side by side (the same files as one process)")
    args = parser.parse_args(argv)
    try:
        index, of = (int(x) for x in args.part.split("/"))
        if not 0 <= index < of:
            raise ValueError
    except ValueError:
        parser.error(f"--part must be I/N with 0 <= I < N, not {args.part!r}")
    if of == 1 and (args.out / "accounts.parquet").exists():
        parser.error(f"{args.out} already holds a book")
    figures: dict = {"accounts": args.accounts, "chunk": args.chunk, "part": args.part,
                     "load_average": [round(x, 2) for x in os.getloadavg()]}
    with Measure() as m:
        figures["rows"] = write_chunked_book(args.out, args.accounts, args.chunk, args.months,
                                             args.seed, part=(index, of))
    figures["simulate_s"] = round(m.seconds, 1)
    figures["simulate_peak_gb"] = round(m.peak / 2**30, 2)
    if args.validate:
        from churnml.data.io import load_book

        with Measure() as m:
            book, report = load_book(args.out)
        figures["validate"] = {"seconds": round(m.seconds, 1), "peak_gb": round(m.peak / 2**30, 2),
                               "accounts": len(book.accounts),
                               "rejected": report.total_rejected}
    figures["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
