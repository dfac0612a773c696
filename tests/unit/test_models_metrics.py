"""Calibration (isotonic / sigmoid, chosen without the test window) and evaluation metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.errors import NotFittedError
from churnml.models import metrics as M
from churnml.models.calibration import Calibrator, choose_calibrator


def miscalibrated(n: int, seed: int):
    """True probabilities p; the 'model' reports p squashed toward 0.5 (under-confident)."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-2, 1.2, n)))
    y = (rng.random(n) < p).astype(float)
    logit = np.log(p / (1 - p))
    raw = 1 / (1 + np.exp(-(0.5 * logit + 0.4)))
    groups = rng.integers(0, n // 5, n)
    return raw, y, p, groups


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_removes_systematic_miscalibration(method):
    raw, y, _, _ = miscalibrated(20000, 0)
    raw_test, y_test, _, _ = miscalibrated(20000, 1)
    cal = Calibrator(method).fit(raw, y)
    before, after = M.ece(y_test, raw_test), M.ece(y_test, cal.transform(raw_test))
    assert before > 0.05 and after < 0.015
    # monotone: ranking (and AUC) kept up to isotonic ties
    grid = np.linspace(0.001, 0.999, 500)
    assert (np.diff(cal.transform(grid)) >= -1e-12).all()
    # JSON-able state, identical after a round trip
    again = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.transform(raw_test), cal.transform(raw_test))


def test_auto_choice_uses_grouped_cross_validation_on_the_calibration_window_only():
    raw, y, _, groups = miscalibrated(5000, 2)
    cal, scores = choose_calibrator(raw, y, groups, "auto", cv_folds=5, seed=0)
    assert set(scores) == {"cv_log_loss_isotonic", "cv_log_loss_sigmoid"}
    assert cal.method == min(("isotonic", "sigmoid"), key=lambda m: scores[f"cv_log_loss_{m}"])
    # the miscalibration is exactly a sigmoid of the logit: Platt scaling should win
    assert cal.method == "sigmoid"
    # seeded: same inputs, same choice and scores
    assert choose_calibrator(raw, y, groups, "auto", cv_folds=5, seed=0)[1] == scores
    fixed, none = choose_calibrator(raw, y, groups, "isotonic")
    assert fixed.method == "isotonic" and none == {}


def test_unfitted_calibrator_says_so():
    with pytest.raises(NotFittedError, match="not fitted"):
        Calibrator("sigmoid").transform(np.array([0.2]))


def test_ece_uses_ten_equal_count_bins():
    p = np.repeat(np.arange(10) / 10 + 0.05, 100)  # 10 bins of 100 rows, mean p = 0.05 .. 0.95
    y = np.zeros(1000)
    for b in range(10):
        y[b * 100: b * 100 + b * 10] = 1  # observed rate 0.0 .. 0.9: each bin off by 0.05
    table = M.reliability_table(y, p)
    assert table["rows"].tolist() == [100] * 10
    assert M.ece(y, p) == pytest.approx(0.05)
    assert M.ece(y, np.clip(p - 0.05, 0, 1)) == pytest.approx(0.0, abs=1e-12)


def test_lift_and_mrr_capture_of_the_top_decile():
    score = np.arange(100, dtype=float)[::-1]  # row 0 has the highest score
    y = np.zeros(100)
    y[[0, 1, 50, 60]] = 1
    assert M.lift_top_decile(y, score) == pytest.approx((2 / 10) / (4 / 100))
    event_mrr = y * np.array([300.0 if i < 10 else 100.0 for i in range(100)])
    assert M.mrr_capture_top_decile(event_mrr, score) == pytest.approx(600 / 800)
    assert np.isnan(M.mrr_capture_top_decile(np.zeros(100), score))


def test_bootstrap_interval_resamples_accounts_and_is_seeded():
    rng = np.random.default_rng(0)
    accounts = np.repeat(np.arange(300), 10)
    y = (rng.random(3000) < 0.2).astype(float)
    score = y * 0.5 + rng.random(3000)
    low, high = M.bootstrap_auc_interval(y, score, accounts, resamples=100, seed=1)
    auc = M.roc_auc(y, score)
    assert low < auc < high and high - low < 0.1
    assert (low, high) == M.bootstrap_auc_interval(y, score, accounts, resamples=100, seed=1)


def test_auc_per_group_and_single_class_groups():
    y = np.array([0, 1, 0, 1, 1, 1], dtype=float)
    s = np.array([0.1, 0.9, 0.8, 0.2, 0.5, 0.6])
    out = M.auc_by_group(y, s, ["core", "core", "vip", "vip", "foundation", None])
    assert out["core"] == 1.0 and out["vip"] == 0.0
    assert np.isnan(out["foundation"]) and np.isnan(out["unknown"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6), st.integers(0, 3)), min_size=2, max_size=60))
def test_weighted_auc_grouped_equals_sklearn(rows):
    """The resampling AUC (ranks computed once, weights per resample) against sklearn's, with
    ties in the scores and zero weights."""
    from sklearn.metrics import roc_auc_score

    y = np.array([r[0] for r in rows], dtype=float)
    score = np.array([r[1] for r in rows], dtype=float) / 7.0
    weight = np.array([r[2] for r in rows], dtype=float)
    levels = np.unique(score, return_inverse=True)[1]
    got = M.weighted_auc_grouped(y, levels, weight)
    keep = weight > 0
    if not (0 < y[keep].sum() < keep.sum()):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(roc_auc_score(y[keep], score[keep], sample_weight=weight[keep]), abs=1e-12)


def test_bootstrap_interval_equals_the_sklearn_loop():
    """The interval is the one the plain loop (sklearn's weighted AUC per resample) gives."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    accounts = np.repeat(np.arange(200), 7)
    y = (rng.random(1400) < 0.15).astype(float)
    score = np.round(y * 0.4 + rng.random(1400), 2)  # rounded: many ties
    uniques, inverse = np.unique(accounts.astype(str), return_inverse=True)
    draws = np.random.default_rng(5)
    values = []
    for _ in range(50):
        weight = np.bincount(draws.integers(0, len(uniques), len(uniques)), minlength=len(uniques))[inverse]
        keep = weight > 0
        values.append(roc_auc_score(y[keep], score[keep], sample_weight=weight[keep].astype(float)))
    expected = np.percentile(values, [2.5, 97.5])
    assert M.bootstrap_auc_interval(y, score, accounts, resamples=50, seed=5) == pytest.approx(tuple(expected), abs=1e-12)
