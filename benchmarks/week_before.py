"""Benchmark of the week-before step of the weekly job (``churnml.scoring.compare.week_before``)
with and without the health score's input features (issue 11: the health score a week before
decides whether a low score is new), on the same book in the same run.

The weekly job builds, per account chunk, the compared features at ``as_of - 7 days``. Since
issue 11 the compared features include every feature the health score reads. This script
reads a book chunk by chunk (the job's chunks of 10,000 accounts) and, per chunk, alternates the two feature sets
(``before``: the alert and playbook signal features only, as before the change; ``after``:
with the health features too; the order swaps every chunk), then times the new
``health_week_before`` (the health score on the week-before rows) on the ``after`` frames.
Prints seconds per arm summed over chunks, the peak RSS and the load average.

Usage::

    python benchmarks/week_before.py --book /tmp/churnml-bench/book-50000x24m-seed42-sim4a1cfe07
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def chunk_books(folder: Path, chunk_size: int):
    """The book of ``folder`` as the weekly job's account chunks (sorted account ids, chunks
    of ``chunk_size``), each read on its own (parquet filters) and validated as the Spark
    engine validates a shard: the whole 50,000-account book needs about 2.8 GB loaded at
    once, a chunk about a fifth of it."""
    import pyarrow.parquet as pq

    from churnml.data.io import validate_frames

    ids = sorted(pq.read_table(folder / "accounts.parquet", columns=["account_id"])
                 .column("account_id").cast("string").to_pylist())
    tables = sorted(p.stem for p in folder.glob("*.parquet"))
    for start in range(0, len(ids), chunk_size):
        part = ids[start:start + chunk_size]
        frames = {}
        for name in tables:
            path = folder / f"{name}.parquet"
            kind = pq.read_schema(path).field("account_id").type
            keys = part if str(kind) in ("string", "large_string") else [int(i) for i in part]
            frames[name] = pq.read_table(path, filters=[("account_id", "in", keys)]).to_pandas()
        book, _ = validate_frames(frames, source=f"{folder} accounts {start}+")
        yield book


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--book", required=True, help="a book folder (read only)")
    parser.add_argument("--chunks", type=int, default=0, help="time only the first N chunks")
    args = parser.parse_args()
    import psutil

    from churnml.health.score import HealthScore
    from churnml.jobs.weekly import DEFAULT_CHUNK_SIZE
    from churnml.scoring import compare
    from churnml.scoring.actions import load_playbooks

    proc = psutil.Process()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    playbooks = load_playbooks()
    health = HealthScore()
    real = compare.health_features
    arms = {"before": lambda: (), "after": real}
    seconds = {"before": 0.0, "after": 0.0, "health_week_before": 0.0}
    columns = {}
    peak = proc.memory_info().rss
    accounts = 0
    as_of = None
    for k, part in enumerate(chunk_books(Path(args.book), DEFAULT_CHUNK_SIZE)):
        if args.chunks and k >= args.chunks:
            break
        as_of = as_of if as_of is not None else part.data_end  # the first chunk's, for all
        order = ["before", "after"] if k % 2 == 0 else ["after", "before"]
        frames = {}
        for arm in order:
            compare.health_features = arms[arm]
            try:
                t = time.perf_counter()
                frames[arm] = compare.week_before(part, as_of, playbooks)
                seconds[arm] += time.perf_counter() - t
            finally:
                compare.health_features = real
            columns[arm] = frames[arm].shape[1] - 1
            peak = max(peak, proc.memory_info().rss)
        ids = frames["after"]["account_id"].to_numpy()
        t = time.perf_counter()
        before_health = compare.health_week_before(health, ids, frames["after"])
        seconds["health_week_before"] += time.perf_counter() - t
        assert before_health is not None and len(before_health) == len(ids)
        accounts += int(part.accounts["account_id"].nunique())
        print(f"chunk {k}: {accounts:,} accounts, {seconds}, rss "
              f"{proc.memory_info().rss / 2**30:.2f} GiB", file=sys.stderr, flush=True)
    print(f"\n{accounts:,} accounts, as_of {as_of.date()}, chunks of {DEFAULT_CHUNK_SIZE:,}")
    print(f"week_before without the health features ({columns['before']} columns): "
          f"{seconds['before']:.2f} s")
    print(f"week_before with the health features ({columns['after']} columns): "
          f"{seconds['after']:.2f} s (+{seconds['after'] - seconds['before']:.2f} s, "
          f"x{seconds['after'] / max(seconds['before'], 1e-9):.2f})")
    print(f"health score on the week-before rows: {seconds['health_week_before']:.2f} s")
    print(f"peak RSS {peak / 2**30:.2f} GiB; load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
