"""The observation grid and labels follow DESIGN.md's revenue rules, censoring included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.data.tables import Book
from churnml.errors import UsageError
from churnml.features.labels import (
    default_as_of_dates,
    latest_labeled_as_of,
    latest_scoring_date,
    observation_grid,
)

T = pd.Timestamp


def book_of(mrr_rows, data_end="2026-12-31", accounts=None):
    """A Book from ``(account_id, date, mrr, reason)`` rows; an extra usage row fixes data_end."""
    mrr = pd.DataFrame(mrr_rows, columns=["account_id", "effective_date", "mrr", "reason"])
    mrr["effective_date"] = pd.to_datetime(mrr["effective_date"]).astype("datetime64[ns]")
    mrr["mrr"] = mrr["mrr"].astype(float)
    mrr["account_id"] = mrr["account_id"].astype("str")
    mrr["reason"] = mrr["reason"].astype("str")
    ids = sorted(set(mrr["account_id"])) if accounts is None else accounts
    acc = pd.DataFrame({"account_id": pd.array(ids, dtype="str"),
                        "created_at": pd.Timestamp("2025-01-01")})
    acc["created_at"] = acc["created_at"].astype("datetime64[ns]")
    usage = pd.DataFrame({"account_id": pd.array([ids[0]], dtype="str"),
                          "ts": pd.to_datetime([data_end]).astype("datetime64[ns]"),
                          "event": pd.array(["login"], dtype="str")})
    return Book(tables={"accounts": acc, "mrr_changes": mrr, "usage_events": usage})


def labels_at(book, as_of, **kw):
    grid = observation_grid(book, [as_of], **kw)
    return {row.account_id: row for row in grid.itertuples()}


def test_churn_when_mrr_reaches_zero_inside_the_horizon_only():
    book = book_of([
        ("a", "2025-01-01", 100, "new"), ("a", "2025-03-01", 0, "churn"),
        ("b", "2025-01-01", 100, "new"), ("b", "2025-05-30", 0, "churn"),   # day 89 after 03-01
        ("c", "2025-01-01", 100, "new"), ("c", "2025-05-31", 0, "churn"),   # day 91: outside
    ])
    got = labels_at(book, "2025-03-02", horizon_days=90)
    assert "a" not in got  # churned before as_of: not active, no observation
    assert got["b"].churn == 1.0
    assert got["c"].churn == 0.0
    # the window starts at as_of itself: a churn dated as_of counts
    got = labels_at(book, "2025-03-01", horizon_days=90)
    assert got["a"].churn == 1.0


def test_expansion_excludes_price_increases_and_respects_min_share():
    book = book_of([
        ("a", "2025-01-01", 100, "new"), ("a", "2025-02-10", 110, "price_increase"),
        ("b", "2025-01-01", 100, "new"), ("b", "2025-02-10", 105, "seats"),
        ("c", "2025-01-01", 100, "new"), ("c", "2025-02-10", 150, "upsell"),
        ("d", "2025-01-01", 100, "new"), ("d", "2025-02-10", 80, "downsell"),
    ])
    got = labels_at(book, "2025-02-01", horizon_days=30)
    assert got["a"].expansion == 0.0
    assert got["b"].expansion == 1.0 and got["c"].expansion == 1.0
    assert got["d"].expansion == 0.0 and got["d"].churn == 0.0
    got = labels_at(book, "2025-02-01", horizon_days=30, expansion_min_share=0.10)
    assert got["b"].expansion == 0.0  # +5% is below the 10% share
    assert got["c"].expansion == 1.0


def test_both_labels_and_reactivation():
    book = book_of([
        ("a", "2025-01-01", 100, "new"), ("a", "2025-02-05", 200, "upsell"),
        ("a", "2025-02-20", 0, "churn"), ("a", "2025-04-01", 50, "reactivation"),
        ("a", "2025-04-20", 80, "seats"),
    ])
    got = labels_at(book, "2025-02-01", horizon_days=30)
    assert got["a"].churn == 1.0 and got["a"].expansion == 1.0
    assert "a" not in labels_at(book, "2025-03-15", horizon_days=30)  # churned, inactive
    # reactivation row on 04-01: active from 04-02 on; 0 -> 50 is not an expansion
    assert "a" not in labels_at(book, "2025-04-01", horizon_days=30)
    got = labels_at(book, "2025-04-02", horizon_days=30)
    assert got["a"].expansion == 1.0 and got["a"].mrr == 50.0
    got = labels_at(book, "2025-03-15", horizon_days=30)
    assert got == {}
    # seen from before the churn: the reactivation is not an expansion (MRR was 0)
    book2 = book_of([("a", "2025-01-01", 100, "new"), ("a", "2025-02-20", 0, "churn"),
                     ("a", "2025-03-01", 300, "reactivation")])
    got = labels_at(book2, "2025-02-01", horizon_days=60)
    assert got["a"].churn == 1.0 and got["a"].expansion == 0.0


def test_censoring_after_the_data_end():
    book = book_of([("a", "2025-01-01", 100, "new")], data_end="2025-06-30")
    assert book.data_end == T("2025-06-30")
    grid = observation_grid(book, ["2025-03-31", "2025-04-01", "2025-04-02"], horizon_days=90)
    assert grid["labeled"].tolist() == [True, True, False]  # 04-01 + 90 d = 06-30
    assert np.isnan(grid["churn"].iloc[2]) and np.isnan(grid["expansion"].iloc[2])
    assert np.isnan(grid["contraction"].iloc[2])
    assert grid["churn"].iloc[:2].tolist() == [0.0, 0.0]
    assert latest_labeled_as_of(book, 90) == T("2025-04-01")


def test_contraction_is_a_fall_that_stays_above_zero():
    book = book_of([
        ("a", "2025-01-01", 100, "new"), ("a", "2025-02-10", 80, "downsell"),     # contraction
        ("b", "2025-01-01", 100, "new"), ("b", "2025-02-10", 0, "churn"),         # churn only
        ("c", "2025-01-01", 100, "new"), ("c", "2025-02-10", 150, "upsell"),      # expansion
        ("d", "2025-01-01", 100, "new"), ("d", "2025-01-20", 60, "downsell"),     # before as_of
        ("e", "2025-01-01", 100, "new"), ("e", "2025-02-10", 80, "discount"),
        ("e", "2025-02-20", 120, "seats"),                                        # both
    ])
    got = labels_at(book, "2025-02-01", horizon_days=30)
    assert {k: (v.churn, v.expansion, v.contraction) for k, v in got.items()} == {
        "a": (0.0, 0.0, 1.0), "b": (1.0, 0.0, 0.0), "c": (0.0, 1.0, 0.0),
        "d": (0.0, 0.0, 0.0), "e": (0.0, 1.0, 1.0)}
    assert got["d"].mrr == 60.0


_DAYS = st.lists(st.integers(0, 240), min_size=1, max_size=7, unique=True)
_ROW = st.tuples(st.sampled_from([0.0, 40.0, 100.0, 100.0, 130.0, 250.0]),
                 st.sampled_from(["new", "seats", "downsell", "price_increase", "churn"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories=st.lists(_DAYS.flatmap(lambda days: st.tuples(
           st.just(sorted(days)), st.lists(_ROW, min_size=len(days), max_size=len(days)))),
           min_size=1, max_size=5),
       as_of_day=st.integers(1, 230), horizon=st.sampled_from([7, 30, 60]),
       min_share=st.sampled_from([0.0, 0.25]))
def test_contraction_and_other_labels_equal_a_loop_reference(histories, as_of_day, horizon,
                                                             min_share):
    """Random revenue histories (falls to a smaller positive MRR, falls to 0, rises, price
    increases, reactivations): every outcome column equals the plain loop's."""
    day0 = T("2025-01-01")
    rows = [(f"acc{i}", day0 + pd.Timedelta(days=d), mrr, reason)
            for i, (days, values) in enumerate(histories)
            for d, (mrr, reason) in zip(days, values)]
    book = book_of(rows, data_end="2026-06-30")
    as_of = day0 + pd.Timedelta(days=as_of_day)
    grid = observation_grid(book, [as_of], horizon_days=horizon, expansion_min_share=min_share)
    got = {r.account_id: (r.mrr, r.churn, r.expansion, r.contraction) for r in grid.itertuples()}
    assert got == loop_labels(book, as_of, horizon, min_share)


def test_account_without_revenue_yet_or_with_zero_mrr_has_no_observation():
    book = book_of([("a", "2025-03-01", 100, "new"), ("b", "2025-01-01", 0, "new"),
                    ("c", "2025-01-01", 100, "new")], accounts=["a", "b", "c", "d"])
    grid = observation_grid(book, ["2025-02-01", "2025-03-01", "2025-03-02"])
    assert set(zip(grid["account_id"], grid["as_of"].dt.strftime("%m-%d"))) == {
        ("c", "02-01"), ("c", "03-01"), ("a", "03-02"), ("c", "03-02")}
    # order: by as_of, then account_id; columns as documented
    assert list(grid.columns) == ["account_id", "as_of", "mrr", "churn", "expansion",
                                  "contraction", "labeled"]
    assert grid["as_of"].is_monotonic_increasing
    assert grid["account_id"].dtype == "str" and grid["as_of"].dtype == "datetime64[ns]"


def test_default_as_of_dates_count_back_weekly_from_the_latest_labeled_date():
    book = book_of([("a", "2025-01-01", 100, "new")], data_end="2025-12-31")
    dates = default_as_of_dates(book, horizon_days=90, n=4)
    assert list(dates) == [T("2025-09-11"), T("2025-09-18"), T("2025-09-25"), T("2025-10-02")]
    every = default_as_of_dates(book, horizon_days=90)
    assert every[-1] == T("2025-10-02") and every[0] >= T("2025-01-02")
    assert (np.diff(every.values) == np.timedelta64(7, "D")).all()
    assert latest_scoring_date(book) == T("2025-12-31")
    grid = observation_grid(book, dates, horizon_days=90)
    assert grid["labeled"].all()


def test_bad_parameters_raise_usage_errors():
    book = book_of([("a", "2025-01-01", 100, "new")])
    with pytest.raises(UsageError, match="horizon_days"):
        observation_grid(book, ["2025-02-01"], horizon_days=0)
    with pytest.raises(UsageError, match="expansion_min_share"):
        observation_grid(book, ["2025-02-01"], expansion_min_share=-0.1)
    with pytest.raises(UsageError, match="no complete label window"):
        default_as_of_dates(book_of([("a", "2025-01-01", 100, "new")], data_end="2025-02-01"), 90)


def loop_labels(book, as_of, horizon, min_share=0.0):
    """Plain reference: walk each account's history."""
    out = {}
    end = as_of + pd.Timedelta(days=horizon)
    for acc, rows in book.mrr_changes.groupby("account_id"):
        rows = rows.sort_values("effective_date", kind="stable")
        before = rows[rows["effective_date"] < as_of]
        if not len(before) or before["mrr"].iloc[-1] <= 0:
            continue
        churn = expansion = contraction = 0.0
        prev = None
        for r in rows.itertuples():
            if as_of <= r.effective_date < end:
                if r.mrr == 0:
                    churn = 1.0
                if (prev is not None and prev > 0 and r.mrr > prev
                        and (r.mrr - prev) / prev >= min_share and r.reason != "price_increase"):
                    expansion = 1.0
                if prev is not None and prev > 0 and 0 < r.mrr < prev:
                    contraction = 1.0
            prev = r.mrr
        out[acc] = (before["mrr"].iloc[-1], churn, expansion, contraction)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_equals_a_loop_reference_on_random_books(seed):
    from test_features_books import random_book

    book = random_book(seed, n_accounts=25, days=400)
    dates = [T("2025-03-01"), T("2025-06-10"), T("2025-09-30")]
    for min_share in (0.0, 0.2):
        grid = observation_grid(book, dates, horizon_days=60, expansion_min_share=min_share)
        for as_of in dates:
            want = loop_labels(book, as_of, 60, min_share)
            part = grid[grid["as_of"] == as_of]
            got = {r.account_id: (r.mrr, r.churn, r.expansion, r.contraction)
                   for r in part.itertuples()}
            assert got == want
