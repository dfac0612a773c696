"""Page times of ``churnml ui`` on a large book (server-side, through Starlette's TestClient).

The partitions are FABRICATED: one real scored week (``--source``, a partition written by
``churnml score``) is repeated to ``--accounts`` rows (account ids suffixed ``-r<k>``) and
``--weeks`` weeks (as_of shifted by 7 days each), with the probabilities, health scores and MRR
perturbed by seeded noise so that weeks differ; every other column (reasons, actions, queue
text) is copied; columns of the installed output schema the source week lacks are null. Each partition is written with the real schema and a ``_SUCCESS`` marker
(``churnml.jobs.partitions.mark_complete``), so the UI reads them as it reads the weekly job's.

Printed per page: the first request (cold: files read) and the median / max of the next
``--repeat`` requests (warm: cached per file modification time), next to a reference measured
in the same run: ``pandas.read_parquet`` of one week's list columns. Memory: the process RSS
after all pages (psutil).

``--sql duckdb`` and/or ``--sql postgresql`` also write the same weeks into ``churnml_scores``
(``churnml score --out``'s own publisher; PostgreSQL: a throw-away cluster started by
``tests/support/postgres.py``) and time the same pages with ``churnml ui --scores <URL>``, each
source in a fresh process of its own (so each RSS is that source's alone), the folder first.

    PYTHONPATH=src python benchmarks/ui.py --source /tmp/qdemo/out/scores/as_of=2026-11-15 \
        --out /tmp/ui/bench --accounts 50000 --weeks 12 [--sql duckdb --sql postgresql]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd


def fabricate(source: Path, out: Path, accounts: int, weeks: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from churnml.jobs.partitions import mark_complete, partition_dir

    from churnml.scoring.schema import SCHEMA_VERSION, arrow_schema
    from churnml.ui.store import dimension_columns

    table = pq.read_table(source / "scores.parquet")
    base = table.to_pandas()
    # in the installed version's output schema (a column the source week lacks is null), so
    # that churnml score's publisher takes the same weeks into churnml_scores
    schema = arrow_schema([c[len("health_"):] for c in dimension_columns(table.column_names)])
    for name in schema.names:
        if name not in base:
            base[name] = None
    base["schema_version"] = SCHEMA_VERSION
    reps = int(np.ceil(accounts / len(base)))
    big = pd.concat([base] * reps, ignore_index=True).iloc[:accounts].copy()
    k = np.repeat(np.arange(reps), len(base))[:accounts]
    big["account_id"] = big["account_id"].astype(str) + "-r" + pd.Series(k).astype(str)
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(base["as_of"].iloc[0]) - pd.Timedelta(weeks=weeks - 1)
    prob_cols = [c for c in big.columns if c.endswith("_probability")]
    for w in range(weeks):
        as_of = start + pd.Timedelta(weeks=w)
        part = partition_dir(out, as_of)
        if (part / "_SUCCESS").exists():
            continue
        frame = big.copy()
        frame["as_of"] = as_of
        for c in prob_cols:
            frame[c] = np.clip(frame[c] * rng.lognormal(0, 0.2, len(frame)), 0, 1)
        frame["health_score"] = np.clip(frame["health_score"] + rng.normal(0, 4, len(frame)),
                                        0, 100)
        frame["mrr"] = frame["mrr"] * rng.lognormal(0, 0.02, len(frame))
        part.mkdir(parents=True, exist_ok=True)
        out_table = pa.Table.from_pandas(frame[schema.names], schema=schema,
                                         preserve_index=False)
        pq.write_table(out_table, part / "scores.parquet", compression="zstd",
                       row_group_size=10_000)
        mark_complete(part, as_of, len(frame), ["scores.parquet"])


def publish(out: Path, url: str) -> float:
    """Every week of ``out`` into ``churnml_scores`` at ``url``; returns seconds."""
    import pyarrow.parquet as pq

    from churnml.data.sql import parse_source
    from churnml.jobs.partitions import list_partitions
    from churnml.jobs.sql_scores import publish_partition
    from churnml.ui.store import dimension_columns

    target = parse_source(url)
    t = time.perf_counter()
    for as_of, part in list_partitions(out):
        names = pq.read_schema(part / "scores.parquet").names
        publish_partition(target, part / "scores.parquet", as_of,
                          [c[len("health_"):] for c in dimension_columns(names)])
    return time.perf_counter() - t


def measure(label: str, scores: str, some_id: str, repeat: int) -> None:
    """The pages' times over ``scores`` (a folder or a database URL), printed (run in a process
    of its own: the RSS printed is this source's)."""
    from starlette.testclient import TestClient

    from churnml.ui.app import create_app

    print(f"\n== source: {label} (load average {os.getloadavg()[0]:.1f})", flush=True)
    client = TestClient(create_app(scores, None, api_key=""))
    pages = [
        ("portfolio", "/"),
        ("accounts (default sort)", "/accounts"),
        ("accounts (filter+search+sort, page 3)",
         "/accounts?health_tier=needs_attention&q=-r1&sort=churn_probability&page=3"),
        ("accounts (health change sort)", "/accounts?sort=health_change&order=asc"),
        ("account", f"/accounts/{some_id}"),
        ("queue (one owner)", "/queue?owner=CSM"),
        ("queue (all owners)", "/queue"),
        ("accounts.csv (one tier)", "/accounts.csv?health_tier=critical"),
        ("trust", "/trust"),
    ]
    print(f"{'page':42s} {'cold ms':>8s} {'warm median':>12s} {'warm max':>9s} {'bytes':>9s}")
    for name, url in pages:
        t = time.perf_counter()
        r = client.get(url)
        cold = time.perf_counter() - t
        assert r.status_code == 200, (url, r.status_code, r.text[:500])
        warm = []
        for _ in range(repeat):
            t = time.perf_counter()
            client.get(url)
            warm.append(time.perf_counter() - t)
        print(f"{name:42s} {1000 * cold:8.0f} {1000 * statistics.median(warm):12.0f} "
              f"{1000 * max(warm):9.0f} {len(r.content):9d}", flush=True)
    try:
        import psutil

        rss = psutil.Process().memory_info().rss / 2**20
        print(f"process RSS after all pages: {rss:.0f} MiB")
    except ImportError:
        pass
    print(f"load average after: {os.getloadavg()}", flush=True)


def in_own_process(*args) -> None:
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(target=measure, args=args)
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"measuring {args[0]} failed (exit {proc.exitcode})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ui/bench"))
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--sql", action="append", default=[], choices=["duckdb", "postgresql"],
                        help="also serve the weeks from churnml_scores in this database")
    args = parser.parse_args()

    t0 = time.perf_counter()
    fabricate(args.source, args.out, args.accounts, args.weeks)
    print(f"fabricated {args.accounts} accounts x {args.weeks} weeks in {args.out} "
          f"({time.perf_counter() - t0:.1f} s)")
    print(f"load average before: {os.getloadavg()}")

    from churnml.jobs.partitions import list_partitions

    last = list_partitions(args.out)[-1][1] / "scores.parquet"
    ref = []
    for _ in range(5):
        t = time.perf_counter()
        pd.read_parquet(last, columns=["account_id", "health_score", "health_tier", "mrr",
                                       "churn_probability", "expansion_probability"])
        ref.append(time.perf_counter() - t)
    print(f"reference: pandas.read_parquet of 6 list columns of one week: "
          f"median {1000 * statistics.median(ref):.0f} ms")
    some_id = pd.read_parquet(last, columns=["account_id"])["account_id"].iloc[args.accounts // 2]

    in_own_process("folder", str(args.out), some_id, args.repeat)
    if "duckdb" in args.sql:
        db = args.out.parent / f"{args.out.name}.duckdb"
        if db.exists():
            db.unlink()
        url = f"duckdb://{db}"
        print(f"\nwrote churnml_scores into {url} in {publish(args.out, url):.1f} s")
        in_own_process("DuckDB churnml_scores", url, some_id, args.repeat)
    if "postgresql" in args.sql:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from support.postgres import postgres_server

        with postgres_server() as pg:
            url = pg.create_database("ui_bench")
            print(f"\nwrote churnml_scores into PostgreSQL (local throw-away cluster) in "
                  f"{publish(args.out, url):.1f} s")
            in_own_process("PostgreSQL churnml_scores", url, some_id, args.repeat)


if __name__ == "__main__":
    main()
