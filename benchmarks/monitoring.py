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
   the update adds on top);
d. **drift** (``churnml.jobs.drift``): this week's features (built once, as the weekly job
   does, not timed as drift) binned against each outcome's reference profile chunk by chunk
   (10,000 accounts, as ``score_book`` hands them over), then ``update_week``: the score's drift,
   the CBPE estimate, the retrain rules and the three tables written. The profiles are built
   from the features of a week 13 weeks earlier. Beside it, in the same run, the time to build
   the week's features (the weekly job's own cost, for scale).

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


class _Scorer:
    """A stand-in model for the profile: the score's values do not matter here, its cost does."""

    def __init__(self, names, categories):
        self.feature_names, self.categories = names, categories

    def predict_proba(self, frame):
        x = frame[self.feature_names[0]].to_numpy(dtype="float64")
        return 1 / (1 + np.exp(-np.nan_to_num(x - np.nanmean(x))))


def drift_cost(book, out, week, realized):
    from churnml.features.build import build_features
    from churnml.jobs import drift
    from churnml.models.profile import build_profile
    from churnml.outcomes import OUTCOMES

    earlier = week - pd.Timedelta(weeks=13)
    reference = build_features(book, [earlier])
    start = time.perf_counter()
    features = build_features(book, [week])
    features_s = time.perf_counter() - start
    names = [c for c in features.columns if c not in ("account_id", "as_of")]
    categories = {c: [] for c in names if features[c].dtype == object
                  or str(features[c].dtype) in ("str", "string", "category")}
    profile = build_profile(_Scorer([n for n in names if n not in categories] + list(categories),
                                    categories), reference, outcome="churn", bins=10,
                            reference_weeks=1)

    class Facts:
        def profile(self, outcome, version):
            return profile

        def training_auc(self, outcome, version):
            return 0.8

    thresholds = drift.default_thresholds()
    start = time.perf_counter()
    seen = drift.FeatureDrift({o.name: profile for o in OUTCOMES})
    for first in range(0, len(features), 10_000):
        seen.add(features.iloc[first:first + 10_000])
    binning_s = time.perf_counter() - start
    drift.update_week(out, week, facts=Facts(), realized=realized, feature_counts=seen.counts,
                      thresholds=thresholds)
    return time.perf_counter() - start, binning_s, features_s, len(names)


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
        # (d) drift against a reference profile per outcome
        drift_s, drift_bin_s, features_s, n_features = drift_cost(book, out, weeks[-1], realized=table)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result = {"accounts": args.accounts, "weeks": args.weeks,
              "accounts_per_week": int(len(grid) / len(weeks)),
              "weekly_update_s": weekly_s, "backfill_s": backfill_s,
              "backfill_s_per_week": backfill_s / len(weeks), "reference_s": reference_s,
              "rows": int(len(table)), "drift_s": drift_s, "drift_binning_s": drift_bin_s,
              "features_s": features_s, "features": n_features,
              "weekly_total_s": weekly_s + drift_s, "load_average_start": load_start,
              "load_average_end": os.getloadavg()}
    print("| measure | seconds |\n|---|---:|")
    print(f"| weekly update (one newly matured week, {result['accounts_per_week']:,} accounts, "
          f"3 outcomes x 2 scorers) | {weekly_s:.2f} |")
    print(f"| backfill of {args.weeks} weeks | {backfill_s:.2f} ({backfill_s / len(weeks):.2f} per week) |")
    print(f"| reference: read one week + one sklearn AUC per outcome and scorer | {reference_s:.2f} |")
    print(f"| drift: {n_features} features x 3 outcome profiles binned in chunks + score drift, "
          f"CBPE, retrain rules, tables written | {drift_s:.2f} (binning {drift_bin_s:.2f}) |")
    print(f"| for scale: building this week's features (the weekly job's own stage) | "
          f"{features_s:.2f} |")
    print(f"- goal: monitoring (realized update + drift) under 10 s at 50,000 accounts: "
          f"{weekly_s + drift_s:.2f} s, "
          f"{'met' if weekly_s + drift_s < 10 or args.accounts < 50_000 else 'NOT met'}")
    print(f"- load average (1/5/15 min) at start {', '.join(f'{x:.1f}' for x in load_start)}, "
          f"at end {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
