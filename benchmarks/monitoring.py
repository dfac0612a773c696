"""Benchmark of realized-performance monitoring (``churnml.jobs.monitoring``) at scale.

On the cached simulated book (default 50,000 accounts x 24 months, shared with the other
benchmarks), writes ``--weeks`` scored partitions whose horizon has passed (every active
account of the week, random probabilities and health scores: the figures' values do not
matter here, their cost does), then times:

a. **the weekly update**: ``update_realized`` when one cohort has matured since the last run
   (what ``churnml score`` adds to every run; goal: under 10 s at 50,000 accounts);
b. **the backfill**: ``update_realized(recompute=True)`` over every matured week (what
   ``churnml monitor`` does once);
c. **reference, same run**: reading one week's four score columns with pyarrow and computing
   sklearn's ``roc_auc_score`` once per outcome and scorer on labels already known: the floor
   of any implementation (labels from the revenue history and the bootstrap intervals are what
   the update adds on top).

Usage: ``python benchmarks/monitoring.py [--accounts 50000] [--weeks 8]``. Prints a markdown
table and a JSON line, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import cached_book  # benchmarks/ is on sys.path when run as a script


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "churnml-bench")
    args = parser.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from churnml.data.io import load_book
    from churnml.features.labels import latest_labeled_as_of, observation_grid
    from churnml.jobs.layout import SCORES_NAME
    from churnml.jobs.monitoring import Spans, update_realized
    from churnml.jobs.partitions import mark_complete, partition_dir
    from churnml.outcomes import OUTCOMES

    load_start = os.getloadavg()
    folder = cached_book(args.cache, args.accounts, args.months, args.seed)
    book, _ = load_book(folder)
    horizon = 90
    last = latest_labeled_as_of(book, horizon)
    weeks = pd.DatetimeIndex([last - pd.Timedelta(days=7 * k) for k in range(args.weeks)][::-1])
    grid = observation_grid(book, weeks, horizon)
    out = Path(tempfile.mkdtemp(prefix="churnml-monitoring-bench-"))
    rng = np.random.default_rng(0)
    try:
        for week in weeks:
            rows = grid[grid["as_of"] == week]
            n = len(rows)
            frame = pd.DataFrame({"account_id": rows["account_id"].astype(str).to_numpy(),
                                  "as_of": week, "health_score": rng.uniform(0, 100, n),
                                  "mrr": rows["mrr"].to_numpy()})
            for outcome in OUTCOMES:
                frame[outcome.probability_column] = rng.uniform(0, 1, n)
                frame[outcome.version_column] = "1"
            part = partition_dir(out, week)
            part.mkdir(parents=True)
            frame.to_parquet(part / SCORES_NAME, index=False)
            mark_complete(part, week, n, [SCORES_NAME])
        spans = Spans({o.name: {"1": weeks[0] - pd.Timedelta(days=1)} for o in OUTCOMES})
        # (a) the weekly update: everything but the last week known, then the last one matures
        newest = partition_dir(out, weeks[-1])
        hidden = out / "_hidden"
        shutil.move(str(newest), hidden)
        update_realized(out, book, spans=spans, recompute=True)
        shutil.move(str(hidden), newest)
        start = time.perf_counter()
        table = update_realized(out, book, spans=spans)
        weekly_s = time.perf_counter() - start
        # (b) the backfill
        start = time.perf_counter()
        update_realized(out, book, spans=spans, recompute=True)
        backfill_s = time.perf_counter() - start
        # (c) the reference: read one week's columns, one AUC per outcome and scorer
        import pyarrow.parquet as pq

        labels = grid[grid["as_of"] == weeks[-1]]
        start = time.perf_counter()
        cols = ["account_id", "health_score"] + [o.probability_column for o in OUTCOMES]
        scores = pq.read_table(newest / SCORES_NAME, columns=cols).to_pandas()
        for outcome in OUTCOMES:
            y = labels[outcome.name].to_numpy()
            roc_auc_score(y, scores[outcome.probability_column])
            roc_auc_score(y, scores["health_score"])
        reference_s = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result = {"accounts": args.accounts, "weeks": args.weeks,
              "accounts_per_week": int(len(grid) / len(weeks)),
              "weekly_update_s": weekly_s, "backfill_s": backfill_s,
              "backfill_s_per_week": backfill_s / len(weeks), "reference_s": reference_s,
              "rows": int(len(table)), "load_average_start": load_start,
              "load_average_end": os.getloadavg()}
    print("| measure | seconds |\n|---|---:|")
    print(f"| weekly update (one newly matured week, {result['accounts_per_week']:,} accounts, "
          f"3 outcomes x 2 scorers) | {weekly_s:.2f} |")
    print(f"| backfill of {args.weeks} weeks | {backfill_s:.2f} ({backfill_s / len(weeks):.2f} per week) |")
    print(f"| reference: read one week + one sklearn AUC per outcome and scorer | {reference_s:.2f} |")
    print(f"- goal: weekly update under 10 s at 50,000 accounts: "
          f"{'met' if weekly_s < 10 or args.accounts < 50_000 else 'NOT met'}")
    print(f"- load average (1/5/15 min) at start {', '.join(f'{x:.1f}' for x in load_start)}, "
          f"at end {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
