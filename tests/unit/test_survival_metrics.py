"""The censoring-aware metrics (churnml.models.survival_metrics) against plain implementations.

scikit-survival computes them on the censoring-complete view of one outcome; these tests
write the textbook formulas out with loops on small data without ties and compare.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")

from churnml.models import survival_metrics as SM  # noqa: E402


def _data(seed: int, n: int = 160):
    rng = np.random.default_rng(seed)
    censor = rng.uniform(40, 200, n)            # known (administrative) censoring times
    latent = rng.exponential(120, n)
    cause = rng.integers(1, 4, n)
    event = np.where(latent < censor, cause, 0)
    time = np.where(event > 0, latent, censor)
    risk = -latent + rng.normal(0, 60, n)       # informative but noisy
    return time, event, censor, risk


def _plain_censoring_km(view_time, view_event):
    """G(t) = P(C > t): Kaplan-Meier with the censorings as events (no ties)."""
    order = np.argsort(view_time)
    times, steps, surv = [], [], 1.0
    for rank, i in enumerate(order):
        at_risk = len(order) - rank
        if not view_event[i]:
            surv *= 1 - 1 / at_risk
        times.append(view_time[i])
        steps.append(surv)
    times, steps = np.array(times), np.array(steps)

    def G(t):
        pos = np.searchsorted(times, t, side="right") - 1
        return 1.0 if pos < 0 else steps[pos]
    return G


def _plain_view(time, event, censor, cause):
    hit = event == cause
    return np.where(hit | (event == 0), time, censor), hit


def test_aalen_johansen_against_a_plain_estimator():
    time, event, _, _ = _data(1)
    grid = [30.0, 60.0, 90.0, 150.0]
    got = SM.aalen_johansen(time, event, grid, 3)
    order = np.argsort(time)
    surv, cif, want = 1.0, np.zeros(3), []
    values = {}
    for rank, i in enumerate(order):
        at_risk = len(order) - rank
        if event[i] > 0:
            cif[event[i] - 1] += surv / at_risk
            surv *= 1 - 1 / at_risk
        values[time[i]] = cif.copy()
    keys = np.array(sorted(values))
    for t in grid:
        pos = np.searchsorted(keys, t, side="right") - 1
        want.append(values[keys[pos]])
    np.testing.assert_allclose(got, np.array(want).T, atol=1e-10)


@pytest.mark.parametrize("cause", [1, 2])
def test_td_auc_against_the_plain_ipcw_formula(cause):
    time, event, censor, risk = _data(2)
    t = 90.0
    vt, ve = _plain_view(time, event, censor, cause)
    G = _plain_censoring_km(vt, ve)
    num = den = 0.0
    for i in np.flatnonzero(ve & (vt <= t)):
        w = 1 / G(vt[i])
        for j in np.flatnonzero(vt > t):
            num += w * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
            den += w
    assert SM.td_auc(time, event, censor, cause, risk, t) == pytest.approx(num / den, abs=1e-9)


def test_concordance_against_uno_plain():
    time, event, censor, risk = _data(3)
    tau, cause = 150.0, 1
    vt, ve = _plain_view(time, event, censor, cause)
    G = _plain_censoring_km(vt, ve)
    num = den = 0.0
    for i in np.flatnonzero(ve & (vt < tau)):
        w = 1 / G(vt[i]) ** 2
        for j in np.flatnonzero(vt > vt[i]):
            num += w * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
            den += w
    assert SM.concordance(time, event, censor, cause, risk, tau) == pytest.approx(num / den, abs=1e-9)


def test_brier_against_the_plain_ipcw_formula():
    time, event, censor, risk = _data(4)
    cause, times = 2, np.array([50.0, 90.0, 130.0])
    rng = np.random.default_rng(0)
    incidence = np.sort(rng.uniform(0, 0.6, (len(time), len(times))), axis=1)
    vt, ve = _plain_view(time, event, censor, cause)
    G = _plain_censoring_km(vt, ve)
    want = []
    for k, t in enumerate(times):
        total = 0.0
        for i in range(len(time)):
            if ve[i] and vt[i] <= t:
                total += (1 - incidence[i, k]) ** 2 / G(vt[i])
            elif vt[i] > t:
                total += incidence[i, k] ** 2 / G(t)
        want.append(total / len(time))
    got = SM.brier(time, event, censor, cause, incidence, times)
    np.testing.assert_allclose(got, want, atol=1e-10)
    ibs = SM.integrated_brier(time, event, censor, cause, incidence, times)
    assert ibs == pytest.approx(np.trapezoid(want, times) / (times[-1] - times[0]), abs=1e-10)


def test_calibration_by_decile_of_a_perfect_constant_is_within():
    time, event, _, _ = _data(5, n=400)
    truth = SM.aalen_johansen(time, event, [90.0], 3)[0, 0]
    table = SM.calibration_by_decile(time, event, 1, 3, np.full(len(time), truth), 90.0, bins=2)
    assert table["rows"].sum() == len(time)
    assert ((table["low"] <= table["observed"]) & (table["observed"] <= table["high"])).all()


def test_weighted_incidence_is_aalen_johansen_of_the_repeated_rows():
    time, event, _, _ = _data(6, n=300)
    for cause in (1, 2, 3):
        for t in (40.0, 90.0, 150.0):
            want = SM.aalen_johansen(time, event, [t], 3)[cause - 1, 0]
            got = SM.weighted_incidence(time, event, cause, t, np.ones((1, len(time))))
            assert got[0] == pytest.approx(want, abs=1e-12)
    # a weight of k counts a row k times (a bootstrap resample), resample by resample
    rng = np.random.default_rng(2)
    weights = rng.integers(0, 3, size=(4, len(time))).astype(float)
    got = SM.weighted_incidence(time, event, 1, 90.0, weights)
    for b in range(4):
        idx = np.repeat(np.arange(len(time)), weights[b].astype(int))
        want = SM.aalen_johansen(time[idx], event[idx], [90.0], 3)[0, 0]
        assert got[b] == pytest.approx(want, abs=1e-12)


def test_account_bootstrap_widens_the_interval_of_repeated_rows():
    """Rows repeated per account (one account at several landmarks) carry less information than
    their count: the account bootstrap's interval is wider than the independent-rows one."""
    time, event, _, _ = _data(7, n=200)
    time, event = np.tile(time, 3), np.tile(event, 3)
    groups = np.tile(np.arange(200), 3)
    predicted = np.full(len(time), 0.2)
    plain = SM.calibration_by_decile(time, event, 1, 3, predicted, 90.0, bins=1)
    clustered = SM.calibration_by_decile(time, event, 1, 3, predicted, 90.0, bins=1,
                                         groups=groups, resamples=300, seed=1)
    assert clustered["observed"].iloc[0] == plain["observed"].iloc[0]
    width = lambda t: float(t["high"].iloc[0] - t["low"].iloc[0])  # noqa: E731
    assert width(clustered) > 1.4 * width(plain)
    again = SM.calibration_by_decile(time, event, 1, 3, predicted, 90.0, bins=1,
                                     groups=groups, resamples=300, seed=1)
    pd.testing.assert_frame_equal(clustered, again)


def test_decile_calibration_statistic_against_a_plain_loop():
    time, event, _, risk = _data(8, n=400)
    predicted = 0.05 + 0.3 * (risk - risk.min()) / (risk.max() - risk.min())
    for cause in (1, 2):
        want = 0.0
        for idx in np.array_split(np.argsort(predicted, kind="stable"), 5):
            observed = SM.aalen_johansen(time[idx], event[idx], [90.0], 3)[cause - 1, 0]
            mean = predicted[idx].mean()
            want += (mean - observed) ** 2 / (mean * (1 - mean) / len(idx))
        got = SM.decile_calibration_statistic(time, event, cause, 3, predicted, 90.0, bins=5)
        assert got == pytest.approx(want, rel=1e-10)
    # a prediction equal to each group's observed incidence scores 0; a shifted one more
    truth = SM.aalen_johansen(time, event, [90.0], 3)[0, 0]
    assert SM.decile_calibration_statistic(time, event, 1, 3, np.full(len(time), truth), 90.0,
                                           bins=1) == pytest.approx(0.0, abs=1e-20)
    assert SM.decile_calibration_statistic(time, event, 1, 3, np.full(len(time), truth + 0.05), 90.0,
                                           bins=1) > 1.0
