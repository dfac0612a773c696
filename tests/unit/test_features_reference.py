"""Every vectorised builder equals a deliberately plain, loop-based reference.

The reference below walks observation by observation and filters rows with ordinary pandas
comparisons against as_of: slow and obvious. Each catalog feature built by
``churnml.features.build`` must match it on small random books (several seeds, several as_of
dates including ones that fall on event days).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from test_features_books import random_book

from churnml.features.build import build_features
from churnml.features.catalog import load_catalog

CATALOG = load_catalog()
TIME = {"usage_events": "ts", "invoices": "due_date", "nps_responses": "ts", "touchpoints": "ts",
        "mrr_changes": "effective_date"}
DAY = pd.Timedelta(days=1)


def matches(frame, flt):
    if not flt:
        return pd.Series(True, index=frame.index)
    col = frame[flt["column"]]
    if "in" in flt:
        return col.isin(flt["in"])
    if "not_in" in flt:
        return col.notna() & ~col.isin(flt["not_in"])
    return col == flt["equals"]


_SPLIT: dict = {}


def account_rows(book, table, acc):
    """All rows of one account (split once per book: the reference is slow enough as it is)."""
    key = (id(book), table)
    if key not in _SPLIT:
        _SPLIT[key] = {a: g for a, g in book[table].groupby("account_id", sort=False)}
    return _SPLIT[key].get(acc, book[table].iloc[:0])


def own_rows(book, table, acc, as_of, flt=None):
    """The account's rows strictly before as_of, sorted by time (ties: input order)."""
    df = account_rows(book, table, acc)
    df = df[df[TIME[table]] < as_of].copy()
    if table == "invoices":
        on_time = df["paid_at"].notna() & (df["paid_at"] < df["due_date"].dt.normalize() + DAY)
        df["late"] = (~on_time).astype(float)
    if table == "mrr_changes":
        df = add_direction(book, acc)
        df = df[df["effective_date"] < as_of]
    df = df.sort_values(TIME[table], kind="stable")
    return df[matches(df, flt)]


def add_direction(book, acc):
    df = account_rows(book, "mrr_changes", acc).sort_values("effective_date", kind="stable").copy()
    directions, prev = [], None
    for mrr, reason in zip(df["mrr"], df["reason"]):
        d = 0.0
        if prev is not None and prev > 0 and mrr > prev and reason != "price_increase":
            d = 1.0
        elif prev is not None and prev > 0 and 0 < mrr < prev:
            d = -1.0
        directions.append(d)
        prev = mrr
    df["mrr_direction"] = directions
    return df


def in_window(df, table, as_of, days, offset=0):
    t = df[TIME[table]]
    end = as_of - pd.Timedelta(days=offset)
    return df[(t >= end - pd.Timedelta(days=days)) & (t < end)]


def whole_days(later, earlier):
    return float((later.normalize() - earlier.normalize()).days)


def reference(book, spec, acc, as_of, known):
    p, agg, w = spec.params, spec.aggregation, spec.window_days
    if agg == "threshold":
        x = known[p["of"]]
        if math.isnan(x):
            return np.nan
        ops = {"lt": x < p["value"], "le": x <= p["value"], "gt": x > p["value"],
               "ge": x >= p["value"], "eq": x == p["value"]}
        return float(ops[p["op"]])
    if agg == "bins":
        x = known[p["of"]]
        if x is None or (isinstance(x, float) and math.isnan(x)):
            label = p.get("missing_label")
            if label is None:
                return np.nan if spec.kind == "numeric" else None
        else:
            x = x * p.get("multiply", 1)
            label = p["labels"][0]
            for edge, lab in zip(p["edges"], p["labels"][1:]):
                if x >= edge:
                    label = lab
        return float(label) if spec.kind == "numeric" else str(label)
    if agg == "segment_rules":
        scores = [known[n] for n in p["of"]]
        if any(math.isnan(s) for s in scores):
            return None
        for rule in p["segments"]:
            if all(lo <= s <= hi for s, (lo, hi) in zip(scores, rule["ranges"])):
                return rule["name"]
        return p["default"]
    if agg == "static":
        row = book.accounts[book.accounts["account_id"] == acc].iloc[0]
        value = row[p["column"]]
        return None if pd.isna(value) else value
    if agg == "tenure":
        created = book.accounts.loc[book.accounts["account_id"] == acc, "created_at"].iloc[0]
        return whole_days(as_of, created)

    table = spec.table
    rows = own_rows(book, table, acc, as_of, p.get("filter"))
    if agg == "count":
        return float(len(in_window(rows, table, as_of, w, p.get("offset_days", 0))))
    if agg == "sum":
        return float(in_window(rows, table, as_of, w)[p["column"]].sum())
    if agg == "mean":
        vals = in_window(rows, table, as_of, w)[p["column"]].dropna()
        return float(vals.mean()) if len(vals) else np.nan
    if agg == "median":
        vals = in_window(rows, table, as_of, w)[p["column"]].dropna()
        return float(np.median(vals)) if len(vals) else np.nan
    if agg == "distinct":
        return float(in_window(rows, table, as_of, w)[p["column"]].dropna().nunique())
    if agg == "active_days":
        return float(in_window(rows, table, as_of, w)[TIME[table]].dt.normalize().nunique())
    if agg == "ratio_to_baseline":
        b = p["baseline_days"]
        current = in_window(rows, table, as_of, w)
        base = in_window(rows, table, as_of, b, offset=w)
        created = book.accounts.loc[book.accounts["account_id"] == acc, "created_at"].iloc[0]
        if p["measure"] == "distinct":
            base_start = as_of - pd.Timedelta(days=w + b)
            existed_from = base_start if pd.isna(created) else max(base_start, created.normalize())
            current_v = current[p["column"]].dropna().nunique()
            base_v = base[p["column"]].dropna().nunique()
            if (as_of - pd.Timedelta(days=w) - existed_from).days < b or base_v == 0:
                return np.nan
            return current_v / base_v
        if p["measure"] == "active_days":
            current_v = current[TIME[table]].dt.normalize().nunique()
            base_v = base[TIME[table]].dt.normalize().nunique()
        else:
            current_v, base_v = len(current), len(base)
        created = book.accounts.loc[book.accounts["account_id"] == acc, "created_at"].iloc[0]
        base_start = as_of - pd.Timedelta(days=w + b)
        base_end = as_of - pd.Timedelta(days=w)
        covered = min(max((base_end - max(base_start, created.normalize())).days, 0), b)
        if covered < w or base_v == 0:
            return np.nan
        return current_v / (base_v * w / covered)
    if agg == "days_since":
        return whole_days(as_of, rows[TIME[table]].iloc[-1]) if len(rows) else np.nan
    if agg == "trend":
        weeks = p["weeks"]
        counts = [len(in_window(rows, table, as_of, 7, 7 * (weeks - 1 - k))) for k in range(weeks)]
        if np.mean(counts) == 0:
            return np.nan
        slope = np.polyfit(np.arange(weeks), counts, 1)[0]
        return slope / np.mean(counts)
    if agg == "latest":
        vals = rows[p["column"]].dropna()
        return float(vals.iloc[-1]) if len(vals) else np.nan
    if agg == "change":
        vals = rows[p["column"]].dropna()
        return float(vals.iloc[-1] - vals.iloc[-2]) if len(vals) >= 2 else np.nan
    if agg == "relative_change":
        now = rows[p["column"]].dropna()
        then = rows[rows[TIME[table]] < as_of - pd.Timedelta(days=w)][p["column"]].dropna()
        if not len(then) or then.iloc[-1] <= 0:
            return np.nan
        return (now.iloc[-1] - then.iloc[-1]) / then.iloc[-1]
    if agg == "rate":
        num = len(in_window(rows[matches(rows, p["numerator"])], table, as_of, w))
        den = len(in_window(rows[matches(rows, p["denominator"])], table, as_of, w))
        if den == 0:
            return np.nan
        return min(num / den, p.get("clip_max", np.inf))
    if agg == "missed_in_a_row":
        run = 0
        for kind in rows["kind"]:
            if kind in p["hit"]:
                run += 1
            elif kind in p["reset"]:
                run = 0
        return float(run)
    if agg == "spike_then_silence":
        recent = len(in_window(rows, table, as_of, p["recent_days"]))
        prior = len(in_window(rows, table, as_of, p["prior_days"], p["recent_days"]))
        return float(recent == 0 and prior >= p["min_spike"])
    if agg in ("overdue_count", "overdue_days_max"):
        overdue = rows[rows["paid_at"].isna() | (rows["paid_at"] >= as_of)]
        if agg == "overdue_count":
            return float(len(overdue))
        return max((whole_days(as_of, d) for d in overdue["due_date"]), default=0.0)
    if agg == "days_until":
        if not len(rows) or pd.isna(rows[p["column"]].iloc[-1]):
            return np.nan
        return whole_days(rows[p["column"]].iloc[-1], as_of)
    raise AssertionError(f"no reference for {agg}")


def active_at(book, acc, as_of):
    rows = own_rows(book, "mrr_changes", acc, as_of)
    return len(rows) > 0 and rows["mrr"].iloc[-1] > 0


def reference_frame(book, as_of_dates):
    records = []
    for as_of in sorted(pd.Timestamp(d) for d in as_of_dates):
        for acc in sorted(book.accounts["account_id"]):
            if not active_at(book, acc, as_of):
                continue
            known = {}
            for spec in CATALOG:
                if spec.aggregation == "static_other":
                    continue
                known[spec.name] = reference(book, spec, acc, as_of, known)
            known["employees"] = float(
                book.accounts.loc[book.accounts["account_id"] == acc, "employees"].iloc[0]
            )
            records.append({"account_id": acc, "as_of": as_of, **known})
    return pd.DataFrame(records)


def assert_same(built, ref):
    assert list(built["account_id"]) == list(ref["account_id"])
    assert list(built["as_of"]) == list(ref["as_of"])
    for name in ref.columns[2:]:
        got, want = built[name], ref[name]
        if CATALOG.get(name) is not None and CATALOG[name].kind == "categorical":
            got = got.astype(object).where(got.notna(), None).tolist()
            want = want.astype(object).where(want.notna(), None).tolist()
            assert got == want, name
        else:
            np.testing.assert_allclose(
                got.to_numpy(float), want.to_numpy(float), rtol=1e-9, atol=1e-9, err_msg=name
            )


@pytest.mark.parametrize(
    "seed", [0, 1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)]
)
def test_every_builder_equals_the_loop_reference(seed):
    book = random_book(seed, n_accounts=10, days=360)
    # dates on and between event days, early (little history) and late
    dates = ["2025-03-15", "2025-07-01", "2025-09-17", "2025-12-20"]
    built = build_features(book, dates)
    ref = reference_frame(book, dates)
    assert len(ref) > 0
    expected = {s.name for s in CATALOG if s.aggregation != "static_other"} | {"employees"}
    assert set(built.columns[2:]) == expected
    assert_same(built, ref)
