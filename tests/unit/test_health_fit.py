"""Fitting the health score's weights from outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from churnml.errors import InsufficientDataError, NotFittedError, SchemaError
from churnml.health import HealthScore, load_health_config

DIMS = ["usage", "engagement", "outcome", "satisfaction", "payment"]


def continuous_config(weights: dict[str, float] | None = None) -> dict:
    """Five dimensions, each one signal ``d_<dim>`` whose band score is floor(value) (0-100),
    so a dimension's sub-score is the feature itself; overrides off."""
    raw = load_health_config().to_dict()
    weights = weights or {"usage": 30, "engagement": 25, "outcome": 20, "satisfaction": 15, "payment": 10}
    bands = [{"from": None, "score": 0}] + [{"from": k, "score": k} for k in range(1, 101)]
    raw["dimensions"] = {d: {"weight": weights[d], "signals": [{"feature": f"d_{d}", "weight": 1, "bands": bands}]}
                         for d in DIMS}
    raw["overrides"]["nps_detractor_cap"]["enabled"] = False
    raw["overrides"]["no_contact_penalty"]["enabled"] = False
    return raw


def synthetic(true_w: dict[str, float], n: int, seed: int, missing: float = 0.15):
    """Churn drawn from sigmoid(3 - 8 * S/100) where S is the re-normalised weighted mean."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 101, size=(n, len(DIMS))).astype(float)
    X[rng.random(X.shape) < missing] = np.nan
    w = np.array([true_w[d] for d in DIMS], dtype=float)
    X[(np.isnan(X) | (w == 0)).all(axis=1), 0] = 50.0  # every row has a weighted dimension
    m = ~np.isnan(X)
    S = (np.nan_to_num(X) * w).sum(1) / (m * w).sum(1)
    y = (rng.random(n) < expit(3 - 8 * S / 100)).astype(float)
    features = pd.DataFrame({f"d_{d}": X[:, j] for j, d in enumerate(DIMS)})
    features.insert(0, "account_id", [f"a{i}" for i in range(n)])
    features.insert(1, "as_of", pd.Timestamp("2026-11-16"))
    return features, y


TRUE_W = {"usage": 45, "engagement": 10, "outcome": 25, "satisfaction": 0, "payment": 20}


def test_fit_recovers_known_weights():
    features, y = synthetic(TRUE_W, n=6000, seed=7)
    h = HealthScore(continuous_config()).fit(features, y, shrinkage=0.0)
    assert sum(h.weights_.values()) == pytest.approx(100)
    assert all(w >= 0 for w in h.weights_.values())
    for d in DIMS:
        assert h.weights_[d] == pytest.approx(TRUE_W[d], abs=5), (d, h.weights_)
    report = h.fit_report_
    assert report["churn_events"] == int(y.sum())
    assert report["auc_after"] >= report["auc_before"]
    assert h.fit_report_["slope_per_score_unit"] < 0  # higher health, less churn


def test_fit_is_deterministic_and_versioned():
    features, y = synthetic(TRUE_W, n=1500, seed=3)
    a = HealthScore(continuous_config()).fit(features, y)
    b = HealthScore(continuous_config()).fit(features, y)
    assert a.weights_ == b.weights_
    assert a.weights_version_ == b.weights_version_
    assert a.weights_version_.startswith(load_health_config().version + "+fit.")
    assert (a.score(features)["health_weights_version"] == a.weights_version_).all()
    named = HealthScore(continuous_config()).fit(features, y, version="2026-11-16")
    assert named.version == "2026-11-16"


def test_shrinkage_moves_toward_current_weights():
    features, y = synthetic(TRUE_W, n=3000, seed=11)
    current = load_health_config().weights
    unshrunk = HealthScore(continuous_config()).fit(features, y, shrinkage=0.0).weights_
    kept = HealthScore(continuous_config()).fit(features, y, shrinkage=1.0).weights_
    half = HealthScore(continuous_config()).fit(features, y, shrinkage=0.5).weights_
    assert kept == pytest.approx(current)
    for d in DIMS:
        assert half[d] == pytest.approx((unshrunk[d] + current[d]) / 2, abs=0.05)


def test_fit_refuses_too_few_churn_events():
    features, y = synthetic(TRUE_W, n=400, seed=1)
    y[:] = 0.0
    y[:12] = 1.0
    with pytest.raises(InsufficientDataError, match=r"at least 30 churn events.*got 12 churned"):
        HealthScore(continuous_config()).fit(features, y)
    # the minimum is configurable
    HealthScore(continuous_config()).fit(features, y, min_churn_events=10)


def test_unlabeled_rows_are_skipped_and_labels_checked():
    features, y = synthetic(TRUE_W, n=800, seed=2)
    y_nan = y.copy()
    y_nan[::2] = np.nan
    h = HealthScore(continuous_config()).fit(features, y_nan, min_churn_events=10, min_retained=10)
    assert h.fit_report_["rows"] == int((~np.isnan(y_nan)).sum())
    with pytest.raises(SchemaError, match="0, 1 or NaN"):
        HealthScore(continuous_config()).fit(features, np.full(len(features), 2.0))
    with pytest.raises(SchemaError, match="values for"):
        HealthScore(continuous_config()).fit(features, y[:-1])


def test_unfitted_state_raises_not_fitted():
    h = HealthScore()
    with pytest.raises(NotFittedError, match="not fitted"):
        h.weights_
    with pytest.raises(NotFittedError):
        h.fit_report_
    assert not hasattr(h, "weights_")  # NotFittedError is an AttributeError, like scikit-learn


def test_fitted_weights_round_trip_through_yaml(tmp_path):
    features, y = synthetic(TRUE_W, n=1500, seed=5)
    h = HealthScore(continuous_config()).fit(features, y)
    path = h.save(tmp_path / "weights" / "health_weights.yaml")
    loaded = HealthScore.load(path)
    assert loaded.version == h.weights_version_
    assert loaded.base_config.weights == h.weights_
    pd.testing.assert_frame_equal(loaded.score(features), h.score(features))
    again = HealthScore.from_dict(h.to_dict())
    pd.testing.assert_frame_equal(again.score(features), h.score(features))


def test_refit_tiers_orders_churn_rate_by_tier():
    features, y = synthetic(TRUE_W, n=4000, seed=9)
    h = HealthScore(continuous_config()).fit(features, y, refit_tiers=True)
    rates = [r for r in h.fit_report_["tier_churn_rates"].values() if r is not None]
    assert len(rates) >= 3
    assert all(hi <= lo for hi, lo in zip(rates, rates[1:]))  # top tier first: churn rises down the list
    cuts = [m for _, m in h.tiers_]
    assert cuts == sorted(cuts, reverse=True) and cuts[-1] == 0


def test_dimension_without_data_keeps_its_share():
    features, y = synthetic(TRUE_W, n=3000, seed=4)
    features["d_outcome"] = np.nan
    h = HealthScore(continuous_config()).fit(features, y, shrinkage=0.0)
    assert h.fit_report_["dimensions_without_data"] == ["outcome"]
    assert h.weights_["outcome"] == pytest.approx(20, abs=0.02)


def test_fit_keeps_weights_when_health_ranks_churn_backwards():
    features, y = synthetic(TRUE_W, n=2000, seed=6)
    h = HealthScore(continuous_config()).fit(features, 1.0 - y, shrinkage=0.0)
    assert h.fit_report_["note"].startswith("no weighting")
    assert h.weights_ == pytest.approx(load_health_config().weights)


@pytest.mark.parametrize("seed", range(6))
def test_refit_tier_cuts_orders_churn_on_random_data(seed):
    from churnml.health.fit import refit_tier_cuts

    rng = np.random.default_rng(seed)
    score = np.round(rng.uniform(0, 100, 3000), rng.integers(0, 4))
    y = (rng.random(3000) < expit(1 - score / 25 + rng.normal(0, 1, 3000))).astype(float)
    cuts, note = refit_tier_cuts(score, y, [90, 70, 50, 30])
    if cuts is None:
        assert "tiers kept" in note
        return
    assert cuts == sorted(cuts, reverse=True) and len(set(cuts)) == 4
    tier = np.select([score >= c for c in cuts], range(4), default=4)
    rates = [y[tier == k].mean() for k in range(5) if (tier == k).any()]
    assert all(a <= b + 1e-12 for a, b in zip(rates, rates[1:]))
