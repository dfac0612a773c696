"""Week-over-week alerts on crafted scored weeks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.errors import SchemaError, UsageError
from churnml.health import load_health_config
from churnml.scoring.alerts import ALERT_RULES, compute_alerts, rose_since
from churnml.health.score import assign_tiers

CFG = load_health_config()
WEEK = pd.Timedelta(days=7)
NOW = pd.Timestamp("2026-11-16")


def week(as_of: pd.Timestamp, scores: dict[str, float], **extra: dict[str, float]) -> pd.DataFrame:
    ids = list(scores)
    values = np.array([scores[i] for i in ids], dtype=float)
    df = pd.DataFrame({"account_id": ids, "as_of": as_of, "health_score": values,
                       "health_tier": assign_tiers(values, CFG)})
    for col, per_account in extra.items():
        df[col] = [per_account.get(i, np.nan) for i in ids]
    return df


def alerts_of(current, previous=None, history=None) -> dict[str, list[str]]:
    out = compute_alerts(current, previous, history, config=CFG)
    assert out.index.equals(current.index)
    return dict(zip(current["account_id"], out))


def history_of(account: str, scores: list[float], end: pd.Timestamp) -> pd.DataFrame:
    """Weekly scores of one account, the last one at ``end``."""
    dates = [end - WEEK * (len(scores) - 1 - k) for k in range(len(scores))]
    return pd.concat([week(d, {account: s}) for d, s in zip(dates, scores)], ignore_index=True)


def test_falls_below_thresholds_escalate_with_distinct_names():
    prev = week(NOW - WEEK, {"a": 75, "b": 55, "c": 35, "d": 75, "e": 72, "f": 65})
    cur = week(NOW, {"a": 69.9, "b": 49, "c": 29, "d": 45, "e": 71, "f": 60})
    got = alerts_of(cur, prev)
    assert "health_below_70" in got["a"]
    assert "health_below_50" in got["b"] and "health_below_70" not in got["b"]
    assert "health_below_30" in got["c"]
    # 75 -> 45 crosses 70 and 50: only the most severe is raised
    assert "health_below_50" in got["d"] and "health_below_70" not in got["d"]
    assert not any(a.startswith("health_below") for a in got["e"] + got["f"])


def test_weekly_drop_of_15_points_and_tier_changes():
    prev = week(NOW - WEEK, {"a": 85, "b": 85, "c": 88, "d": 90})
    cur = week(NOW, {"a": 70, "b": 70.5, "c": 91, "d": 90})
    got = alerts_of(cur, prev)
    assert "weekly_drop" in got["a"] and "weekly_drop" not in got["b"]
    assert "expansion_review" in got["c"]
    assert got["d"] == []  # steady in the top tier: nothing
    prev2 = week(NOW - WEEK, {"x": 72})
    cur2 = week(NOW, {"x": 68})
    assert alerts_of(cur2, prev2)["x"] == ["health_below_70", "entered_lower_tier"]


def test_drop_of_20_in_30_days_needs_history():
    hist = history_of("a", [80, 75, 70], NOW - 2 * WEEK)  # peak 80 at NOW-28d
    prev = week(NOW - WEEK, {"a": 66})
    cur = week(NOW, {"a": 59})
    assert "monthly_drop" in alerts_of(cur, prev, hist)["a"]
    # without the history only last week is known (66 -> 59): no 30-day alert
    assert "monthly_drop" not in alerts_of(cur, prev)["a"]
    # a peak older than 30 days does not count
    old = history_of("a", [95, 70, 70], NOW - 4 * WEEK - pd.Timedelta(days=3))
    assert "monthly_drop" not in alerts_of(cur, prev, old)["a"]


def test_first_week_raises_only_alerts_that_need_no_history():
    cur = week(NOW, {"a": 20, "b": 95, "c": 60},
               nps_latest={"a": 3, "b": 10, "c": 5}, days_since_last_nps={"a": 2, "b": 1, "c": 40},
               days_since_last_contact={"a": 30, "b": 2, "c": 21},
               champion_left_180d={"a": 1, "b": 0, "c": 0})
    got = alerts_of(cur, None)
    assert got == {"a": ["nps_detractor_received", "no_recent_contact"], "b": [],
                   "c": ["no_recent_contact"]}


def test_new_account_absent_last_week_gets_no_history_alerts():
    prev = week(NOW - WEEK, {"old": 80})
    cur = week(NOW, {"old": 60, "new": 20})
    got = alerts_of(cur, prev)
    assert got["new"] == []
    assert "health_below_70" in got["old"]


def test_nps_detractor_received_only_when_new_since_last_week():
    prev = week(NOW - WEEK, {"a": 70, "b": 70, "c": 70})
    cur = week(NOW, {"a": 65, "b": 65, "c": 65},
               nps_detractor={"a": 1, "b": 1, "c": 0}, days_since_last_nps={"a": 3, "b": 12, "c": 1})
    got = alerts_of(cur, prev)
    assert "nps_detractor_received" in got["a"]
    assert "nps_detractor_received" not in got["b"]  # received before last week's scoring
    assert "nps_detractor_received" not in got["c"]


def test_champion_left_compares_with_the_book_a_week_before():
    """champion_left reads the book's value a week before as_of (``week_before``), not last
    week's output rows: it fires on a first run too, and only on a rise from a known value."""
    cur = week(NOW, {"a": 80, "b": 80, "c": 80, "new": 80},
               champion_left_180d={"a": 1, "b": 1, "c": 0, "new": 1})
    before = pd.DataFrame({"account_id": ["a", "b", "c"], "champion_left_180d": [0.0, 1.0, 0.0]})
    first_run = dict(zip(cur["account_id"],
                         compute_alerts(cur, None, config=CFG, week_before=before)))
    assert first_run == {"a": ["champion_left"], "b": [], "c": [], "new": []}
    # the same with last week's output rows given: previous plays no part in the rule
    prev = week(NOW - WEEK, {"a": 80, "b": 80, "c": 80, "new": 80})
    weekly = dict(zip(cur["account_id"],
                      compute_alerts(cur, prev, config=CFG, week_before=before)))
    assert weekly == first_run
    # without week_before (or without the column in it) the comparing rule is not raised
    assert alerts_of(cur, prev)["a"] == []
    assert compute_alerts(cur, prev, config=CFG,
                          week_before=before.drop(columns="champion_left_180d"))[0] == []


def test_rose_since():
    now = np.array([1.0, 1.0, 2.0, np.nan, 1.0])
    before = np.array([0.0, 1.0, 1.0, 0.0, np.nan])
    assert rose_since(now, before).tolist() == [True, False, True, False, True]
    assert rose_since(now, None).tolist() == [True, True, True, False, True]


def test_alert_rules_table_names_the_alerts():
    names = [r.name for r in ALERT_RULES]
    assert names == ["health_below", "weekly_drop", "monthly_drop", "unusual_drop",
                     "entered_lower_tier", "expansion_review", "nps_detractor_received",
                     "no_recent_contact", "champion_left"]
    assert all(r.meaning for r in ALERT_RULES)


def test_no_contact_is_a_state_alert():
    prev = week(NOW - WEEK, {"a": 60}, days_since_last_contact={"a": 25})
    cur = week(NOW, {"a": 60}, days_since_last_contact={"a": 32})
    assert alerts_of(cur, prev)["a"] == ["no_recent_contact"]


def test_noise_aware_drop_fires_for_a_stable_account_not_a_noisy_one():
    stable = history_of("stable", [80, 81, 80, 79, 80, 81, 80, 81], NOW - WEEK)
    noisy = history_of("noisy", [80, 92, 78, 90, 76, 89, 80, 81], NOW - WEEK)
    hist = pd.concat([stable, noisy], ignore_index=True)
    prev = hist[hist["as_of"] == NOW - WEEK]
    cur = week(NOW, {"stable": 73, "noisy": 73})  # both drop 8 points
    got = alerts_of(cur, prev, hist)
    assert "unusual_drop" in got["stable"]
    assert "unusual_drop" not in got["noisy"]
    assert "weekly_drop" not in got["stable"]


def test_noise_aware_drop_has_a_floor_and_needs_enough_weeks():
    flat = history_of("flat", [80] * 8, NOW - WEEK)  # zero variation
    prev = flat[flat["as_of"] == NOW - WEEK]
    assert "unusual_drop" not in alerts_of(week(NOW, {"flat": 77}), prev, flat)["flat"]  # 3 < floor 5
    assert "unusual_drop" in alerts_of(week(NOW, {"flat": 74}), prev, flat)["flat"]
    short = history_of("short", [80, 80, 80], NOW - WEEK)  # 2 weekly changes < min_weeks 4
    prev_s = short[short["as_of"] == NOW - WEEK]
    assert "unusual_drop" not in alerts_of(week(NOW, {"short": 60}), prev_s, short)["short"]


def test_history_at_or_after_current_is_ignored():
    prev = week(NOW - WEEK, {"a": 70})
    future = week(NOW + WEEK, {"a": 100})
    same = week(NOW, {"a": 100})
    cur = week(NOW, {"a": 69})
    got = alerts_of(cur, prev, pd.concat([future, same]))
    assert "monthly_drop" not in got["a"]


def test_bad_inputs_are_clear_errors():
    cur = week(NOW, {"a": 50})
    with pytest.raises(SchemaError, match="health_tier"):
        compute_alerts(cur.drop(columns="health_tier"), None)
    with pytest.raises(UsageError, match="must be before"):
        compute_alerts(cur, week(NOW, {"a": 50}))
    two = pd.concat([cur, week(NOW - WEEK, {"a": 50})])
    with pytest.raises(UsageError, match="one scored week"):
        compute_alerts(two, None)
