"""NRR / GRR / logo churn / expansion rate against hand-computed examples."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from churnml.jobs.portfolio import portfolio_metrics, portfolio_table

AS_OF = pd.Timestamp("2026-03-02")
START4 = AS_OF - pd.Timedelta(weeks=4)  # 2026-02-02


def _changes(rows):
    return pd.DataFrame(rows, columns=["account_id", "effective_date", "mrr", "reason"]).assign(
        effective_date=lambda d: pd.to_datetime(d["effective_date"]))


def book():
    return _changes([
        # A: 1000 -> upsell to 1500 in the window (expansion +500)
        ("A", "2025-06-01", 1000.0, "new"), ("A", "2026-02-10", 1500.0, "upsell"),
        # B: 2000 -> downsell to 1200 (contraction 800)
        ("B", "2025-01-01", 2000.0, "new"), ("B", "2026-02-20", 1200.0, "downsell"),
        # C: 500 -> churn (churn 500, one logo)
        ("C", "2025-03-01", 500.0, "new"), ("C", "2026-02-15", 0.0, "churn"),
        # D: 1500, unchanged renewal (neither)
        ("D", "2025-03-01", 1500.0, "new"), ("D", "2026-02-05", 1500.0, "renewal"),
        # E: new in the window: not in the starting cohort
        ("E", "2026-02-12", 900.0, "new"),
        # F: churned before the window: not in the cohort
        ("F", "2025-01-01", 300.0, "new"), ("F", "2025-12-01", 0.0, "churn"),
        # G: price increase only (not an expansion event, but MRR does rise)
        ("G", "2025-01-01", 1000.0, "new"), ("G", "2026-02-03", 1100.0, "price_increase"),
        # H: change dated on as_of itself is not seen yet
        ("H", "2025-01-01", 1000.0, "new"), ("H", "2026-03-02", 0.0, "churn"),
    ])


def test_four_week_metrics_by_hand():
    m = portfolio_metrics(book(), AS_OF, 4)
    # cohort A, B, C, D, G, H: start 1000 + 2000 + 500 + 1500 + 1000 + 1000 = 7000
    assert m["start_accounts"] == 6
    assert m["start_mrr"] == 7000.0
    assert m["expansion_mrr"] == 500.0 + 100.0          # A upsell, G price increase in MRR
    assert m["contraction_mrr"] == 800.0
    assert m["churned_mrr"] == 500.0
    assert m["nrr"] == pytest.approx((7000 + 600 - 800 - 500) / 7000)   # 0.9
    assert m["grr"] == pytest.approx((7000 - 800 - 500) / 7000)         # 0.8142857
    assert m["logo_churn"] == pytest.approx(1 / 6)
    assert m["expansion_rate"] == pytest.approx(1 / 6)  # only A; G's rise is a price increase
    assert m["end_mrr"] == pytest.approx(m["nrr"] * m["start_mrr"])


def test_thirteen_week_window_includes_earlier_churn():
    m = portfolio_metrics(book(), AS_OF, 13)   # start 2025-12-01: F churned exactly then
    # F's churn row is dated on the window start: before-start state excludes it, so F is in
    # the cohort with 300 and churns inside the window.
    assert m["start_accounts"] == 7
    assert m["churned_mrr"] == 800.0
    assert m["logo_churn"] == pytest.approx(2 / 7)


def test_empty_cohort_is_nan():
    m = portfolio_metrics(book(), "2024-01-01", 4)
    assert m["start_accounts"] == 0 and math.isnan(m["nrr"]) and math.isnan(m["logo_churn"])


def test_table_has_both_windows():
    t = portfolio_table(book(), AS_OF)
    assert t["weeks"].tolist() == [4, 13]
