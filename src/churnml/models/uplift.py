"""A play's effect by account (heterogeneous treatment effect) from randomized holdout data,
and its evaluation (Qini, uplift at k). See ``docs/actions.md``, "Uplift by account".

:class:`XLearner` (Kunzel et al., PNAS 2019) on LightGBM: outcome models per arm, then the
imputed effects of each arm regressed on the features, blended by the known share treated.
The treatment is randomized by the holdout (a stable hash within churn-risk deciles), so the
propensity is a constant, known by design, not a fitted model. ``effect(X)`` estimates
``E[y | treated, X] - E[y | control, X]``: negative is good for a risk outcome (fewer churns),
the caller signs it (``benefit``).

Evaluation on held-out randomized rows (:func:`qini_curve`, :func:`qini_coefficient`,
:func:`uplift_at_k`): rows ranked by predicted benefit; at each cut, the treated rows' good
outcomes minus the control rows' scaled to the treated count. Vectorised (sorts and cumsums).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: small trees: held-out arms hold tens to thousands of rows
DEFAULT_PARAMS: dict[str, Any] = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15,
                                  "min_child_samples": 20, "subsample": 0.8,
                                  "subsample_freq": 1, "colsample_bytree": 0.8, "verbose": -1,
                                  "n_jobs": 1}


@dataclass
class XLearner:
    """X-learner with LightGBM base learners; ``seed`` fixes every random step."""

    seed: int = 0
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    binary: bool = True
    _models: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _share: float = field(default=float("nan"), init=False)

    def _outcome_model(self):
        import lightgbm as lgb

        kind = lgb.LGBMClassifier if self.binary else lgb.LGBMRegressor
        return kind(random_state=self.seed, **self.params)

    def _effect_model(self):
        import lightgbm as lgb

        return lgb.LGBMRegressor(random_state=self.seed + 1, **self.params)

    def _predict(self, model, X) -> np.ndarray:
        if self.binary:
            return model.predict_proba(X)[:, 1]
        return model.predict(X)

    def fit(self, X, treated, y) -> "XLearner":
        from churnml.errors import UsageError

        treated = np.asarray(treated, dtype=bool)
        y = np.asarray(y, dtype="float64")
        X = np.asarray(X, dtype="float64")
        if treated.all() or not treated.any():
            raise UsageError("uplift needs both treated and held-out rows; got "
                             f"{int(treated.sum())} treated of {len(treated)}")
        if self.binary and not (((y == 0) | (y == 1)).all()
                                and 0 < y[treated].sum() < treated.sum()
                                and 0 < y[~treated].sum() < (~treated).sum()):
            raise UsageError("uplift on a binary outcome needs both outcomes in each arm")
        self._share = float(treated.mean())
        mu1 = self._outcome_model().fit(X[treated], y[treated])
        mu0 = self._outcome_model().fit(X[~treated], y[~treated])
        d1 = y[treated] - self._predict(mu0, X[treated])
        d0 = self._predict(mu1, X[~treated]) - y[~treated]
        self._models = {"tau1": self._effect_model().fit(X[treated], d1),
                        "tau0": self._effect_model().fit(X[~treated], d0)}
        return self

    def effect(self, X) -> np.ndarray:
        """Estimated ``E[y | treated] - E[y | control]`` per row."""
        X = np.asarray(X, dtype="float64")
        g = self._share
        return (g * self._models["tau0"].predict(X)
                + (1 - g) * self._models["tau1"].predict(X))


def qini_curve(benefit_score: np.ndarray, treated: np.ndarray, good: np.ndarray,
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(share targeted, incremental good outcomes)``: rows ranked by ``benefit_score``
    (highest first, ties in row order); at each cut ``k``, good outcomes among the treated
    minus those among the controls scaled by ``n_treated(k) / n_control(k)`` (Radcliffe's
    Qini). ``good``: 1 for the outcome the play wants (a churn avoided: ``1 - churned``)."""
    order = np.argsort(-np.asarray(benefit_score, dtype="float64"), kind="stable")
    t = np.asarray(treated, dtype=bool)[order]
    g = np.asarray(good, dtype="float64")[order]
    nt = np.cumsum(t)
    nc = np.cumsum(~t)
    yt = np.cumsum(g * t)
    yc = np.cumsum(g * ~t)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = yt - np.where(nc > 0, yc * nt / np.maximum(nc, 1), 0.0)
    share = np.arange(1, len(order) + 1) / len(order)
    return np.concatenate([[0.0], share]), np.concatenate([[0.0], q])


def qini_coefficient(benefit_score, treated, good) -> float:
    """Area between the Qini curve and the straight line of random targeting, per row
    (incremental good outcomes per account targeted, averaged over every targeting share;
    0 = no better than random, higher is better)."""
    x, q = qini_curve(benefit_score, treated, good)
    gap = (q - x * q[-1]) / max(len(x) - 1, 1)
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(x)))


def uplift_at_k(benefit_score, treated, good, k: float) -> float:
    """Good-outcome rate of the treated minus that of the controls among the top ``k`` share
    of rows by ``benefit_score`` (nan when an arm is absent there)."""
    score = np.asarray(benefit_score, dtype="float64")
    n = max(1, int(round(k * len(score))))
    top = np.argsort(-score, kind="stable")[:n]
    t = np.asarray(treated, dtype=bool)[top]
    g = np.asarray(good, dtype="float64")[top]
    if not t.any() or t.all():
        return float("nan")
    return float(g[t].mean() - g[~t].mean())


__all__ = ["DEFAULT_PARAMS", "XLearner", "qini_coefficient", "qini_curve", "uplift_at_k"]
