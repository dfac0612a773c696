"""Health score: bands, tiers, re-normalisation, overrides, output contract (hand-made feature
frames using the binding feature names of docs/architecture.md)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.errors import SchemaError
from churnml.health import HealthScore, load_health_config
from churnml.health.score import INSUFFICIENT_DATA_TIER, assign_tiers

AS_OF = pd.Timestamp("2026-11-16")
DEFAULT = load_health_config()

# Values that put every signal of the default config in its top band.
TOP = {
    "logins_30d_vs_baseline": 1.2, "active_days_30d_vs_baseline": 1.0, "feature_breadth_30d": 6,
    "advanced_feature_events_30d": 25, "meeting_attendance_rate_90d": 1.0,
    "median_reply_hours_90d": 3, "email_reply_rate_90d": 0.9, "expansion_requests_90d": 4,
    "goals_achieved_180d": 3, "qbrs_held_180d": 2, "nps_latest": 10, "nps_change": 2,
    "late_invoices_180d": 0, "overdue_invoices": 0, "failed_payments_90d": 0,
    "billing_page_visits_30d": 0, "mrr_change_90d": 0.2,
}


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(0, "account_id", [f"acc{i}" for i in range(len(df))])
    df.insert(1, "as_of", AS_OF)
    return df


def score_one(**features) -> pd.Series:
    return HealthScore().score(frame([features])).iloc[0]


def one_signal_config(scores_by_from: list[tuple[float | None, float]]) -> dict:
    """A config with one dimension 'x' and one signal 'x_value' with the given bands."""
    raw = copy.deepcopy(DEFAULT.to_dict())
    raw["dimensions"] = {"x": {"weight": 1, "signals": [
        {"feature": "x_value", "weight": 1,
         "bands": [{"from": f, "score": s} for f, s in scores_by_from]}]}}
    raw["overrides"]["nps_detractor_cap"]["enabled"] = False
    raw["overrides"]["no_contact_penalty"]["enabled"] = False
    return raw


# -- bands -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.0, 10), (0.4999, 10), (0.5, 40), (0.6999, 40), (0.7, 70), (0.8999, 70), (0.9, 100), (3.0, 100)],
)
def test_usage_vs_baseline_bands_lower_bounds_inclusive(ratio, expected):
    row = score_one(logins_30d_vs_baseline=ratio)
    assert row["health_usage"] == expected
    assert row["health_dimensions_used"] == "usage"
    assert row["health_score"] == expected


@pytest.mark.parametrize(("breadth", "expected"), [(0, 10), (1, 10), (2, 40), (3, 70), (4, 100), (9, 100)])
def test_feature_breadth_bands(breadth, expected):
    assert score_one(feature_breadth_30d=breadth)["health_usage"] == expected


@pytest.mark.parametrize(("nps", "expected"), [(0, 10), (6, 10), (7, 60), (8, 60), (9, 100), (10, 100)])
def test_nps_bands(nps, expected):
    # nps 0-6 also triggers the cap, which does not change a score already below 69
    row = score_one(nps_latest=nps)
    assert row["health_satisfaction"] == expected


@pytest.mark.parametrize(("hours", "expected"), [(0, 100), (23.9, 100), (24, 70), (71.9, 70), (72, 40), (120, 10)])
def test_reply_time_bands_lower_is_better(hours, expected):
    assert score_one(median_reply_hours_90d=hours)["health_engagement"] == expected


# -- tiers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("score", "tier"),
    [(100, "thriving"), (90, "thriving"), (89.9999, "healthy"), (70, "healthy"),
     (69.9999, "needs_attention"), (50, "needs_attention"), (49.999, "at_risk"), (30, "at_risk"),
     (29.999, "critical"), (0, "critical")],
)
def test_tier_boundaries_are_inclusive_lower_bounds(score, tier):
    assert assign_tiers(np.array([score]), DEFAULT)[0] == tier


def test_tiers_use_the_unrounded_score():
    cfg = one_signal_config([(None, 69.996), (1, 70.0), (2, 89.996), (3, 90.0)])
    out = HealthScore(cfg).score(frame([{"x_value": v} for v in (0, 1, 2, 3)]))
    # 69.996 and 89.996 round to 70.0 / 90.0 but stay in the lower tier
    assert out["health_tier"].tolist() == ["needs_attention", "healthy", "healthy", "thriving"]
    assert out["health_score"].tolist() == [69.996, 70.0, 89.996, 90.0]


# -- weighted sum and re-normalisation ---------------------------------------------------------
def test_all_top_signals_score_100_with_every_dimension():
    row = score_one(**TOP)
    assert row["health_score"] == 100
    assert row["health_tier"] == "thriving"
    assert row["health_dimensions_used"] == "usage|engagement|outcome|satisfaction|payment"


def test_default_weights_combine_dimensions():
    # usage 40 (ratio 0.6), engagement 100, outcome 30 (no goals, no QBRs), satisfaction 100, payment 100
    features = {**TOP, "logins_30d_vs_baseline": 0.6, "active_days_30d_vs_baseline": 0.6,
                "feature_breadth_30d": 2, "advanced_feature_events_30d": np.nan,
                "goals_achieved_180d": 0, "qbrs_held_180d": 0}
    row = score_one(**features)
    assert row["health_usage"] == 40 and row["health_outcome"] == 30
    assert row["health_score"] == pytest.approx((30 * 40 + 25 * 100 + 20 * 30 + 15 * 100 + 10 * 100) / 100)


def test_missing_dimension_is_left_out_and_weights_renormalised():
    row = score_one(logins_30d_vs_baseline=0.6, late_invoices_180d=0)  # usage 40, payment 100
    assert row["health_dimensions_used"] == "usage|payment"
    assert np.isnan(row["health_engagement"]) and np.isnan(row["health_outcome"])
    assert row["health_score"] == pytest.approx((30 * 40 + 10 * 100) / 40)


def test_missing_signal_is_left_out_within_its_dimension():
    # logins (w 2) = 100, breadth (w 2) = 10; active days absent, advanced NaN
    row = score_one(logins_30d_vs_baseline=1.0, feature_breadth_30d=1,
                    advanced_feature_events_30d=np.nan)
    assert row["health_usage"] == pytest.approx((2 * 100 + 2 * 10) / 4)


def test_nan_and_absent_column_mean_the_same():
    with_nan = HealthScore().score(frame([{"logins_30d_vs_baseline": 0.95, "nps_latest": np.nan}]))
    absent = HealthScore().score(frame([{"logins_30d_vs_baseline": 0.95}]))
    pd.testing.assert_frame_equal(with_nan, absent)


def test_no_dimension_available_gives_the_neutral_score():
    out = HealthScore().score(frame([{"logins_30d_vs_baseline": np.nan, "unrelated": 3.0}]))
    row = out.iloc[0]
    assert row["health_score"] == DEFAULT.neutral_score == 50
    # nothing known: the neutral score is reported, but no tier is read into it
    assert row["health_tier"] == INSUFFICIENT_DATA_TIER == "insufficient_data"
    assert row["health_dimensions_used"] == ""


def test_insufficient_data_tier_below_the_known_weight_share():
    """usage (30) + satisfaction (15) = 45% of the weight known: insufficient_data, score still
    reported; usage + outcome (20) = 50% exactly: an ordinary tier (the bound is inclusive)."""
    assert DEFAULT.min_known_weight_share == 0.5
    usage = {k: TOP[k] for k in ("logins_30d_vs_baseline", "active_days_30d_vs_baseline",
                                 "feature_breadth_30d", "advanced_feature_events_30d")}
    rows = [
        {**usage, "nps_latest": 10},                                       # 45%
        {**usage, "goals_achieved_180d": 3, "qbrs_held_180d": 2},          # 50%
        {"nps_latest": 10, "late_invoices_180d": 0},                       # 25%
        dict(TOP),                                                         # 100%
    ]
    out = HealthScore().score(frame(rows))
    assert out["health_tier"].tolist() == [INSUFFICIENT_DATA_TIER, "thriving",
                                           INSUFFICIENT_DATA_TIER, "thriving"]
    assert out["health_score"].tolist() == pytest.approx([100, 100, 100, 100])
    assert out["health_dimensions_used"].tolist()[:3] == [
        "usage|satisfaction", "usage|outcome", "satisfaction|payment"]
    # the arrays score_frame reads give the same tiers
    arrays = HealthScore().score_arrays(frame(rows))
    assert arrays.tier_names() == out["health_tier"].tolist()
    # a lower share in the configuration accepts the 45% account
    raw = DEFAULT.to_dict()
    raw["min_known_weight_share"] = 0.4
    assert HealthScore(raw).score(frame(rows[:1]))["health_tier"].tolist() == ["thriving"]


def test_insufficient_data_raises_no_risk_severity():
    """A critical-range score from too little data is not read as critical risk."""
    from churnml.scoring.actions import load_playbooks, risk_severity

    pb = load_playbooks()
    features = frame([{"logins_30d_vs_baseline": 0.1}, {"logins_30d_vs_baseline": 0.1}])
    features["health_score"] = 20.0
    tiers = [INSUFFICIENT_DATA_TIER, "critical"]
    assert risk_severity(features, [0.01, 0.01], pb, health_tier=tiers).tolist() == [
        "low", "critical"]


def test_zero_weight_dimension_is_not_used():
    raw = DEFAULT.to_dict()
    raw["dimensions"]["payment"]["weight"] = 0
    row = HealthScore(raw).score(frame([{"logins_30d_vs_baseline": 1.0, "late_invoices_180d": 5}])).iloc[0]
    assert row["health_score"] == 100
    assert row["health_dimensions_used"] == "usage"
    assert row["health_payment"] == 30  # the sub-score is still reported


# -- overrides ---------------------------------------------------------------------------------
def test_detractor_caps_the_score_below_healthy():
    row = score_one(**{**TOP, "nps_latest": 5, "nps_change": -4})
    assert row["health_score"] == 69
    assert row["health_tier"] == "needs_attention"
    assert row["health_overrides"] == "nps_detractor_cap"


def test_detractor_cap_lifted_by_a_newer_non_detractor_response():
    weeks = frame([
        {**TOP, "nps_latest": 4, "nps_detractor": 1, "nps_change": -5},
        {**TOP, "nps_latest": 8, "nps_detractor": 0, "nps_change": 4},  # newer response, passive
    ])
    weeks["account_id"] = "acc"
    weeks["as_of"] = [AS_OF, AS_OF + pd.Timedelta(days=7)]
    out = HealthScore().score(weeks)
    assert out["health_score"].iloc[0] == 69
    assert out["health_score"].iloc[1] == pytest.approx((85 * 100 + 15 * (3 * 60 + 100) / 4) / 100)
    assert out["health_tier"].iloc[1] == "thriving"
    assert out["health_overrides"].iloc[1] == ""


def test_detractor_flag_used_when_latest_score_absent():
    row = score_one(**{k: v for k, v in TOP.items() if not k.startswith("nps")}, nps_detractor=1)
    assert row["health_score"] == 69


def test_no_contact_for_21_days_subtracts_10_points():
    rows = frame([{**TOP, "days_since_last_contact": d} for d in (20, 21, 60, np.nan)])
    out = HealthScore().score(rows)
    assert out["health_score"].tolist() == [100, 90, 90, 100]
    assert out["health_overrides"].tolist() == ["", "no_contact_penalty", "no_contact_penalty", ""]


def test_both_overrides_cap_then_subtract_and_clip_at_zero():
    row = score_one(**{**TOP, "nps_latest": 2, "days_since_last_contact": 30})
    assert row["health_score"] == 59
    low = score_one(logins_30d_vs_baseline=0.1, days_since_last_contact=40)  # 10 - 10
    assert low["health_score"] == 0


# -- contract ----------------------------------------------------------------------------------
def test_output_columns_follow_the_contract():
    out = HealthScore().score(frame([TOP]))
    assert list(out.columns[:4]) == ["account_id", "as_of", "health_score", "health_tier"]
    for d in DEFAULT.dimension_names:
        assert f"health_{d}" in out.columns
    assert "health_dimensions_used" in out.columns
    assert out["health_weights_version"].iloc[0] == DEFAULT.version


def test_non_numeric_feature_is_a_clear_error():
    bad = frame([{"nps_latest": "nine"}, {"nps_latest": "7"}])
    with pytest.raises(SchemaError, match=r"'nps_latest'.*1 bad values.*'nine'"):
        HealthScore().score(bad)


def test_score_is_per_row_independent_of_the_batch():
    rows = [TOP, {"logins_30d_vs_baseline": 0.3, "nps_latest": 4}, {"late_invoices_180d": 3}]
    batch = HealthScore().score(frame(rows))
    for i, r in enumerate(rows):
        alone = HealthScore().score(frame([r]))
        assert alone["health_score"].iloc[0] == batch["health_score"].iloc[i]


FEATURES = sorted(DEFAULT.features)
values = st.one_of(st.none(), st.just(float("nan")), st.floats(-1e6, 1e6), st.integers(-5, 200),
                   st.sampled_from([float("inf"), float("-inf")]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    columns=st.lists(st.sampled_from(FEATURES), unique=True, max_size=len(FEATURES)),
    data=st.data(),
)
def test_score_always_between_0_and_100_and_never_null(columns, data):
    n = data.draw(st.integers(1, 8))
    rows = [{c: data.draw(values) for c in columns} for _ in range(n)]
    features = frame(rows) if columns else frame([{} for _ in range(n)])
    for c in columns:
        features[c] = pd.to_numeric(features[c], errors="coerce").astype(float)
    out = HealthScore().score(features)
    assert out["health_score"].notna().all()
    assert out["health_score"].between(0, 100).all()
    assert set(out["health_tier"]) <= {t.name for t in DEFAULT.tiers} | {INSUFFICIENT_DATA_TIER}
    for d in DEFAULT.dimension_names:
        listed = out["health_dimensions_used"].str.split("|").apply(lambda names, d=d: d in names)
        assert (listed == out[f"health_{d}"].notna()).all()


def _plain_subscores(features: pd.DataFrame, config) -> np.ndarray:
    """The sub-scores signal by signal with ``np.searchsorted``, as the rubric reads: the
    reference for the padded-array version in ``churnml.health.rubric``."""
    n = len(features)
    out = np.full((n, len(config.dimensions)), np.nan)
    for j, dimension in enumerate(config.dimensions):
        num, den = np.zeros(n), np.zeros(n)
        for sig in dimension.signals:
            if sig.weight <= 0 or sig.feature not in features.columns:
                continue
            values = features[sig.feature].to_numpy(dtype=float)
            band = np.asarray(sig.scores, dtype=float)[
                np.searchsorted(np.asarray(sig.thresholds[1:]), values, side="right")]
            band = np.where(np.isnan(values), np.nan, band)
            have = ~np.isnan(band)
            num += np.where(have, band, 0.0) * sig.weight
            den += have * sig.weight
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(den > 0, num / den, np.nan)
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), missing=st.floats(0, 1),
       drop=st.integers(0, 5))
def test_subscores_equal_a_plain_signal_by_signal_reference(seed, n, missing, drop):
    """Bit for bit, on values at, between and beyond every threshold, with NaN, +-inf and
    absent columns."""
    from churnml.health.rubric import dimension_subscores

    config = load_health_config()
    rng = np.random.default_rng(seed)
    signals = [s for d in config.dimensions for s in d.signals]
    data = {"account_id": [f"a{i}" for i in range(n)], "as_of": pd.Timestamp("2026-01-05")}
    for sig in signals:
        points = np.array([t for t in sig.thresholds[1:]] + [np.inf, -np.inf, 0.0], dtype=float)
        values = np.where(rng.random(n) < 0.5, rng.choice(points, n),
                          rng.normal(0, 1, n) * (np.abs(points[np.isfinite(points)]).max() + 1))
        values[rng.random(n) < missing] = np.nan
        data[sig.feature] = values
    features = pd.DataFrame(data)
    absent = rng.choice([s.feature for s in signals], size=min(drop, len(signals)), replace=False)
    features = features.drop(columns=list(set(absent)))
    np.testing.assert_array_equal(dimension_subscores(features, config),
                                  _plain_subscores(features, config))
