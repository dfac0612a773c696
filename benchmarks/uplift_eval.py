"""Uplift by account: does a learned effect rank accounts better than churn risk?

Randomized data with a known heterogeneous effect (the holdout's design: a fixed share held
out at random), a learner fitted on one sample and evaluated on another (held-out randomized
rows): Qini coefficient and uplift at 20% for

- ``xlearner``: churnml.models.uplift.XLearner (LightGBM base learners);
- ``econml``: econml.metalearners.XLearner with the same LightGBM learners (only when econml
  imports: PYTHONPATH=/tmp/effects/econml_target:... in the evaluation, not a dependency);
- ``risk``: ranking by the true churn probability without treatment (what the queue does
  today: risk x MRR);
- ``oracle``: ranking by the true effect; ``random``.

The true effect: working an account lowers churn (on the logit) when its problem is
engagement (x0), does nothing for a budget cut (x1), and raises it for a "sleeping dog"
segment (x2 > 1.2): Ascarza (JMR 2018). Seeds 11, 12, 13 (nothing tuned on them).

    PYTHONPATH=src python benchmarks/uplift_eval.py [--n 20000] [--holdout 0.1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from churnml.models.uplift import XLearner, qini_coefficient, uplift_at_k


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def make(n: int, holdout: float, rng):
    X = rng.normal(size=(n, 8))
    x1 = (X[:, 1] > 0.8).astype(float)           # a budget cut
    logit0 = -1.6 + 0.9 * X[:, 0] + 1.0 * x1 + 0.3 * X[:, 3]
    effect_logit = -1.2 * np.clip(X[:, 0], 0, None) + 0.9 * (X[:, 2] > 1.2)
    p0 = sigmoid(logit0)
    p1 = sigmoid(logit0 + effect_logit)
    treated = rng.random(n) >= holdout
    churn = rng.random(n) < np.where(treated, p1, p0)
    return X, treated, churn.astype(float), p0, p1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--holdout", type=float, default=0.1)
    args = ap.parse_args()
    try:
        import lightgbm as lgb
        from econml.metalearners import XLearner as EconXLearner
        from sklearn.dummy import DummyClassifier
    except Exception as exc:  # not a dependency: evaluated from a scratch install
        EconXLearner = None
        print(f"econml not importable here ({type(exc).__name__}): skipped")
    print(f"load average: {os.getloadavg()}")
    rows = {k: [] for k in ("xlearner", "econml", "risk", "oracle", "random")}
    at20 = {k: [] for k in rows}
    seconds = {"xlearner": [], "econml": []}
    for seed in (11, 12, 13):
        rng = np.random.default_rng(seed)
        Xa, ta, ya, _, _ = make(args.n, args.holdout, rng)
        Xb, tb, yb, p0b, p1b = make(args.n, args.holdout, rng)
        good = 1 - yb
        t0 = time.perf_counter()
        ours = XLearner(seed=seed).fit(Xa, ta, ya)
        scores = {"xlearner": -ours.effect(Xb)}
        seconds["xlearner"].append(time.perf_counter() - t0)
        if EconXLearner is not None:
            t0 = time.perf_counter()
            from churnml.models.uplift import DEFAULT_PARAMS
            est = EconXLearner(
                models=lgb.LGBMClassifier(random_state=seed, **DEFAULT_PARAMS),
                cate_models=lgb.LGBMRegressor(random_state=seed + 1, **DEFAULT_PARAMS),
                propensity_model=DummyClassifier(strategy="prior"))  # randomized: constant
            est.fit(ya, ta.astype(int), X=Xa)
            scores["econml"] = -est.effect(Xb).ravel()
            seconds["econml"].append(time.perf_counter() - t0)
        scores["risk"] = p0b
        scores["oracle"] = p0b - p1b
        scores["random"] = rng.random(len(yb))
        for name, s in scores.items():
            rows[name].append(qini_coefficient(s, tb, good))
            at20[name].append(uplift_at_k(s, tb, good, 0.2))
    print(f"n={args.n} per sample, holdout {args.holdout:.0%}, seeds 11-13: "
          "Qini coefficient (mean, min-max) | uplift at 20% in points (mean)")
    for name in rows:
        if not rows[name]:
            continue
        q = np.array(rows[name])
        u = np.array(at20[name]) * 100
        print(f"{name:<9} {q.mean():+.4f} ({q.min():+.4f}, {q.max():+.4f}) | {u.mean():+.1f}")
    for name, s in seconds.items():
        if s:
            print(f"fit seconds {name}: {np.mean(s):.1f}")


if __name__ == "__main__":
    main()
