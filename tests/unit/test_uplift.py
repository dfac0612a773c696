"""Uplift by account (``churnml.models.uplift``): Qini and uplift at k equal a plain
computation; the X-learner finds who a play helps on randomized data with a known effect."""

from __future__ import annotations

import numpy as np
import pytest

from churnml.errors import UsageError
from churnml.models.uplift import XLearner, qini_coefficient, qini_curve, uplift_at_k


def plain_qini(score, treated, good):
    order = sorted(range(len(score)), key=lambda i: (-score[i], i))
    points = [0.0]
    for k in range(1, len(order) + 1):
        top = order[:k]
        nt = sum(treated[i] for i in top)
        nc = k - nt
        yt = sum(good[i] for i in top if treated[i])
        yc = sum(good[i] for i in top if not treated[i])
        points.append(yt - (yc * nt / nc if nc else 0.0))
    return points


def test_qini_curve_and_uplift_at_k_equal_a_plain_computation():
    rng = np.random.default_rng(3)
    score = rng.normal(size=60).round(1)          # ties broken by row order
    treated = rng.random(60) < 0.7
    good = (rng.random(60) < 0.6).astype(float)
    x, q = qini_curve(score, treated, good)
    assert q == pytest.approx(plain_qini(list(score), list(treated), list(good)))
    assert x[0] == 0 and x[-1] == 1
    n = len(score)
    gap = [(qi - xi * q[-1]) / n for xi, qi in zip(x, q)]
    area = sum((gap[i] + gap[i + 1]) / 2 * (x[i + 1] - x[i]) for i in range(n))
    assert qini_coefficient(score, treated, good) == pytest.approx(area)
    top = sorted(range(n), key=lambda i: (-score[i], i))[:15]
    t = [good[i] for i in top if treated[i]]
    c = [good[i] for i in top if not treated[i]]
    assert uplift_at_k(score, treated, good, 0.25) == pytest.approx(np.mean(t) - np.mean(c))


def test_xlearner_ranks_who_the_play_helps_on_randomized_data():
    """The play lowers churn only where x0 > 0 and raises it where x2 > 1.2: the learned
    ranking beats random on held-out randomized rows, and its estimated effect is lower
    (more churn prevented) where the true effect helps, and its Qini is over half the oracle's
    (ranking by the true effect)."""
    rng = np.random.default_rng(11)

    def make(n):
        X = rng.normal(size=(n, 4))
        logit0 = -1.2 + 0.6 * X[:, 1]
        effect = -1.5 * (X[:, 0] > 0) + 1.0 * (X[:, 2] > 1.2)
        treated = rng.random(n) < 0.5
        p = 1 / (1 + np.exp(-(logit0 + treated * effect)))
        return X, treated, (rng.random(n) < p).astype(float), effect

    Xa, ta, ya, _ = make(4000)
    Xb, tb, yb, eb = make(4000)
    model = XLearner(seed=0, params={"n_estimators": 60, "learning_rate": 0.1,
                                     "num_leaves": 7, "verbose": -1, "n_jobs": 1}).fit(Xa, ta, ya)
    tau = model.effect(Xb)
    assert tau[eb < 0].mean() < tau[eb == 0].mean() < tau[eb > 0].mean()
    learned = qini_coefficient(-tau, tb, 1 - yb)
    assert learned > qini_coefficient(rng.random(len(yb)), tb, 1 - yb) + 0.01
    oracle = qini_coefficient(-eb, tb, 1 - yb)
    assert learned > 0.5 * oracle


def test_xlearner_refuses_one_armed_data():
    X = np.zeros((10, 2))
    with pytest.raises(UsageError, match="both treated and held-out"):
        XLearner().fit(X, np.ones(10, dtype=bool), np.r_[np.zeros(5), np.ones(5)])
