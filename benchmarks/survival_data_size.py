"""Is the time-to-event model's per-decile miss estimation noise? The same test, more training data (issue 14).

For each target seed: the test landmarks of that book (3,000 accounts, 24 months, as
``survival_calibration.py``) are scored by protocol models of ``churnml train --target
time_to_event`` (``survival_train.fit_protocol``, the shipped config: rounds chosen on the
calibration window, then the hazard scaling fitted on it) trained on

- the target book's own training landmarks (what the product does), and
- the same plus the training landmarks of K other books of the same simulated world (same
  simulator, same dates, other seeds; their account ids prefixed so that no two books share
  one), so K + 1 times the training rows *and* K + 1 times the calibration window's rows.

Every training, early-stopping and calibration row ends by the same cutoff (the first test
landmark); the test rows are the target book's only, the same for every K (each model's
ranking makes its own deciles and their account-bootstrap intervals). If the deciles inside
their interval rise towards the oracle's count as K grows, the model's miss at K = 0 is
estimation noise (too few training accounts and window events for the deciles' precision),
not a bias the model family cannot avoid.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/survival_data_size.py --targets 97 98 \\
        --pool 91 92 93 94 95 96 --sizes 0 1 3 5 --cache DIR --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cached_book, log  # noqa: E402
from survival_calibration import decile_figures  # noqa: E402
from survival_library import prepare  # noqa: E402


def prefixed(prepared: dict, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The book's events before its cutoff and its features, account ids prefixed by the seed."""
    events = prepared["events"]
    past = events[events["as_of"] < prepared["cutoff"]].copy()
    features = prepared["features"].copy()
    for frame in (past, features):
        frame["account_id"] = f"s{seed}-" + frame["account_id"].astype(str)
    return past, features


def run_target(target: int, pool: list[int], sizes: list[int], books: dict) -> list[dict]:
    from churnml.models import survival as S
    from churnml.models import survival_train as ST

    config = ST.load_survival_config()
    prepared = books[target]
    cutoff = prepared["cutoff"]
    events, features = prepared["events"], prepared["features"]
    test = events[(events["as_of"] >= cutoff) & (events["observed_periods"] > 0)]
    frame = S.join_features(test, features)
    t, e = frame["time_days"].to_numpy(dtype="float64"), frame["event"].to_numpy(dtype=np.int64)
    c = frame["censor_days"].to_numpy(dtype="float64")
    groups = frame["account_id"].to_numpy()
    own_past, own_features = prefixed(prepared, target)
    out = []
    for size in sizes:
        others = [s for s in pool if s != target][:size]
        if len(others) < size:
            raise SystemExit(f"--pool has {len(others)} books besides {target}; --sizes asks for {size}")
        parts = [(own_past, own_features)] + [prefixed(books[s], s) for s in others]
        for s in others:
            if books[s]["cutoff"] != cutoff:
                raise SystemExit(f"book {s} has cutoff {books[s]['cutoff'].date()}, the target {cutoff.date()}")
        past = pd.concat([p for p, _ in parts], ignore_index=True)
        feats = pd.concat([f for _, f in parts], ignore_index=True)
        t0 = time.perf_counter()
        rows = S.person_period_rows(past, feats, cutoff=cutoff)
        names, categorical, _ = ST._feature_columns(feats, rows)
        window = ST.calibration_window(past, feats, cutoff, config)
        window_rows = ST.calibration_rows(past, feats, cutoff, config)
        plain = ST.fit_protocol(rows, names, categorical, cutoff, replace(config, hazard_scaling=False), window)
        scaled = S.SurvivalModel(plain.booster, plain.feature_names, plain.categories, dict(plain.info),
                                 plain.class_bias, baseline=plain.baseline)
        scaled.fit_scaling(window_rows, config.hazard_scaling_period)
        seconds = time.perf_counter() - t0
        train_events = ST.truncate_events(past, cutoff)
        window_events = np.bincount(window_rows["label"].to_numpy(dtype=np.int64), minlength=len(S.CLASSES))
        log(f"  target {target}, +{size} books ({others}): {len(rows):,} rows, window events "
            f"{window_events.tolist()}, rounds {plain.info['best_iteration']}, {seconds:.0f} s")
        for variant, model in (("none", plain), ("scaling, window", scaled)):
            incidence = model.curves(frame)[1]
            metrics = ST.incidence_metrics(incidence, t, e, c, groups, train_events, 0, 0)[0]
            for k, outcome in enumerate(S.CLASSES[1:]):
                row = {"target": target, "extra_books": size, "others": others, "variant": variant,
                       "outcome": outcome, "train_rows": int(len(rows)),
                       "window_events": int(window_events[k + 1]), "rounds": plain.info["best_iteration"],
                       "td_auc_90d": metrics[f"test_td_auc_{outcome}_90d"], "ibs": metrics[f"test_ibs_{outcome}"],
                       "scaling": model.hazard_scaling,
                       **decile_figures(incidence[:, k, :], t, e, k + 1, groups, config)}
                out.append(row)
                log(f"    {variant:<16} {outcome:<12} dec 30/90/180 {row['within_30d']}/{row['within_90d']}/"
                    f"{row['within_180d']} AUC90 {row['td_auc_90d']:.4f} ECE90 {row['ece_90d']:.4f} IBS {row['ibs']:.4f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", required=True)
    parser.add_argument("--pool", type=int, nargs="+", required=True, help="seeds of the extra books")
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1, 3, 5],
                        help="numbers of extra books to train with (0: the target's own rows only)")
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/churnml-bench"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    log(f"load average at start: {os.getloadavg()}")
    books = {s: prepare(cached_book(args.cache, args.accounts, args.months, s), args.cache)
             for s in sorted(set(args.targets) | set(args.pool))}
    rows = []
    for target in args.targets:
        t0 = time.perf_counter()
        rows += run_target(target, args.pool, args.sizes, books)
        log(f"  target {target}: {time.perf_counter() - t0:.0f} s, load average {os.getloadavg()}")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1, default=str))
    log(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
