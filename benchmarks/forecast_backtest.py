"""Does the report's 90-day revenue forecast land in its band? (issue 14, "done means")

For each seed: simulate a book, cut it 90 days before its end (every table keeps only the rows
dated before the cut), train the time-to-event model on the cut book exactly as
``churnml train --target time_to_event`` does (default ``models/time_to_event.yaml``, refit on
every row), score the accounts active at the cut from the full book's point-in-time features
(only rows before the cut reach them), and build the report's forecast
(``churnml.jobs.report_forecast.forecast``: 90% band). Then compare months 1-3 with what
happened in the 90 days after the cut, on the same accounts:

- ``as_forecast``: the same quantity the forecast predicts: the MRR at the cut x the typical
  share (1 for churn) of every account whose *first* revenue event in the 90 days is the
  outcome (``survival.first_events``): it tests the incidences;
- ``actual``: the MRR that first event really moved (churn: the MRR at the cut; contraction:
  the fall; expansion: the rise of the first rising row), which also tests the typical shares.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/forecast_backtest.py --accounts 1500 --seeds 21 22 23 [--binary]

``--binary`` also trains the binary churn model on the cut book and sets its 90-day MRR at
risk (calibrated probability x MRR, the report's card) beside what churned.

Prints one line per seed and outcome and a markdown table (results: ``docs/models.md``,
"Time to event in the output"); states ``uptime``'s load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

HORIZON_DAYS = 90


def cut_book(book, cut: pd.Timestamp):
    """The book as it was known at ``cut``: rows dated before it."""
    from churnml.data.tables import TABLES, Book

    tables = {}
    for name, table in book.tables.items():
        spec = TABLES.get(name)
        column = spec.time_column if spec is not None else None
        if column and column in table:
            tables[name] = table[pd.to_datetime(table[column]) < cut].reset_index(drop=True)
        else:
            tables[name] = table
    return Book(tables=tables, source=book.source)


def actual_moves(mrr_changes: pd.DataFrame, accounts: pd.Series, cut: pd.Timestamp,
                 mrr_at_cut: pd.Series) -> dict[str, pd.Series]:
    """Per account, the MRR moved by its first fall above 0 (contraction) and its first rise
    not from a price increase (expansion) in the 90 days from ``cut``."""
    rows = mrr_changes[mrr_changes["account_id"].isin(accounts)]
    rows = rows[(rows["effective_date"] >= cut)
                & (rows["effective_date"] < cut + pd.Timedelta(days=HORIZON_DAYS))]
    rows = rows.sort_values(["account_id", "effective_date"], kind="stable")
    before = rows.groupby("account_id")["mrr"].shift(1)
    before = before.fillna(rows["account_id"].map(mrr_at_cut))
    delta = rows["mrr"] - before
    reason = rows["reason"].astype(str) if "reason" in rows else pd.Series("", index=rows.index)
    fall = rows[(delta < 0) & (rows["mrr"] > 0)]
    rise = rows[(delta > 0) & (before > 0) & (reason != "price_increase")]
    return {"contraction": (-delta[fall.index]).groupby(fall["account_id"]).first(),
            "expansion": delta[rise.index].groupby(rise["account_id"]).first()}


def binary_churn_forecast(cut_view, frame: pd.DataFrame, book, cut: pd.Timestamp) -> dict:
    """The binary churn model (``models/churn.yaml``, as ``churnml train --target churn``) trained
    on the cut book: its calibrated 90-day probability x MRR summed over the same accounts, with
    the same 90% band, against the MRR of the accounts that churned at any time in the 90 days
    (its label)."""
    from churnml.features.labels import observation_grid
    from churnml.jobs.report_forecast import BAND_Z
    from churnml.models.train import train_target

    model = train_target(cut_view, "churn").model
    p = np.asarray(model.predict_proba(frame), dtype="float64")
    mrr = frame["mrr"].fillna(0.0).to_numpy(dtype="float64")
    mean, sd = float(mrr @ p), float(np.sqrt((mrr ** 2) @ (p * (1 - p))))
    grid = observation_grid(book, pd.DatetimeIndex([cut]), HORIZON_DAYS)
    label = frame[["account_id"]].merge(grid[["account_id", "churn"]], on="account_id", how="left")
    happened = float(mrr[label["churn"].fillna(0).to_numpy() == 1].sum())
    low, high = max(0.0, mean - BAND_Z * sd), mean + BAND_Z * sd
    return {"binary_expected": mean, "binary_low": low, "binary_high": high,
            "binary_happened": happened, "binary_in_band": bool(low <= happened <= high)}


def run_seed(seed: int, accounts: int, months: int, binary: bool = False) -> list[dict]:
    from churnml.data.simulator import simulate
    from churnml.data.tables import Book
    from churnml.features.build import build_features
    from churnml.features.windows import to_as_of
    from churnml.jobs.report_forecast import forecast
    from churnml.models import survival as S
    from churnml.models.survival_train import train_time_to_event
    from churnml.outcomes import OUTCOMES
    from churnml.scoring.actions import load_playbooks

    t0 = time.perf_counter()
    book = Book(tables=dict(simulate(n_accounts=accounts, months=months, seed=seed).tables))
    cut = to_as_of(book.data_end) - pd.Timedelta(days=HORIZON_DAYS)
    cut_view = cut_book(book, cut)
    result = train_time_to_event(cut_view)
    train_s = time.perf_counter() - t0
    events = S.first_events(book, pd.DatetimeIndex([cut]))
    features = build_features(book, pd.DatetimeIndex([cut]))
    frame = events[["account_id", "as_of", "event", "event_period", "observed_periods"]].merge(
        features, on=["account_id", "as_of"], how="inner")
    if (frame["observed_periods"] < HORIZON_DAYS // S.PERIOD_DAYS).any():
        raise SystemExit("the 90 days after the cut are not all observed")
    predicted = result.model.predict(frame)
    scores = pd.concat([frame[["account_id", "mrr"]].reset_index(drop=True),
                        predicted.drop(columns=["account_id", "as_of"])], axis=1)
    shares = load_playbooks().typical_share
    table = forecast(scores, shares)
    months = HORIZON_DAYS // S.PERIOD_DAYS
    mrr = scores["mrr"].fillna(0.0)
    within = (frame["event_period"] >= 0) & (frame["event_period"] < months)
    moved = actual_moves(book.mrr_changes, frame["account_id"], cut,
                         frame.set_index("account_id")["mrr"])
    extra = binary_churn_forecast(cut_view, frame, book, cut) if binary else {}
    out = []
    for o in OUTCOMES:
        row = table[(table["outcome"] == o.name) & (table["month"] == months)].iloc[0]
        first = (within & (frame["event"] == S.class_code(o.name))).to_numpy()
        as_forecast = float((mrr[first] * float(shares.get(o.name, 1.0))).sum())
        if o.label_rule == "mrr_reaches_zero":
            actual = float(mrr[first].sum())
        else:
            amounts = frame.loc[first, "account_id"].map(moved[o.name]).fillna(0.0)
            actual = float(amounts.sum())
        out.append({"seed": seed, "outcome": o.name, "accounts": int(len(frame)),
                    "events": int(first.sum()), "expected": float(row["cumulative_expected_mrr"]),
                    "low": float(row["cumulative_low"]), "high": float(row["cumulative_high"]),
                    "as_forecast": as_forecast, "actual": actual,
                    "in_band": bool(row["cumulative_low"] <= as_forecast <= row["cumulative_high"]),
                    "actual_in_band": bool(row["cumulative_low"] <= actual <= row["cumulative_high"]),
                    "cut": f"{cut:%Y-%m-%d}", "seconds": round(time.perf_counter() - t0, 1),
                    "train_seconds": round(train_s, 1),
                    **(extra if o.label_rule == "mrr_reaches_zero" else {})})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1500)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23])
    parser.add_argument("--binary", action="store_true",
                        help="also train the binary churn model on the cut book and compare its "
                             "90-day MRR at risk with the churn that happened")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        for r in run_seed(seed, args.accounts, args.months, args.binary):
            print(r, flush=True)
            rows.append(r)
    print(f"\nload average: {os.getloadavg()}")
    print("\n| seed | outcome | accounts | first events | forecast 90 d [90% band] | happened "
          "(MRR x share) | in band | happened (actual MRR moved) | in band |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['outcome']} | {r['accounts']:,} | {r['events']:,} | "
              f"{r['expected']:,.0f} [{r['low']:,.0f} - {r['high']:,.0f}] | {r['as_forecast']:,.0f} | "
              f"{'yes' if r['in_band'] else 'no'} | {r['actual']:,.0f} | "
              f"{'yes' if r['actual_in_band'] else 'no'} |")
    binary = [r for r in rows if "binary_expected" in r]
    if binary:
        print("\n| seed | binary churn model: MRR at risk 90 d [90% band] | churned at any time in "
              "the 90 days | in band | time-to-event: churn first [band] | happened |")
        print("|---|---|---|---|---|---|")
        for r in binary:
            print(f"| {r['seed']} | {r['binary_expected']:,.0f} [{r['binary_low']:,.0f} - "
                  f"{r['binary_high']:,.0f}] | {r['binary_happened']:,.0f} | "
                  f"{'yes' if r['binary_in_band'] else 'no'} | {r['expected']:,.0f} "
                  f"[{r['low']:,.0f} - {r['high']:,.0f}] | {r['as_forecast']:,.0f} |")


if __name__ == "__main__":
    main()
