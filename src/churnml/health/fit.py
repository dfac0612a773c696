"""Re-fitting the health score's dimension weights (and optionally its tier cut points).

The score is ``S_w(x) = sum_j w_j d_j(x) m_j(x) / sum_j w_j m_j(x)``: the weighted mean of the
dimension sub-scores ``d_j`` over the dimensions the account has data for (``m_j`` = 1). The
weights are learned by maximising the likelihood of ``churn ~ Bernoulli(sigmoid(a + b * S_w))``
over ``w >= 0`` (L-BFGS-B with the exact gradient; the score is scale-free in ``w`` so a small
penalty pins ``sum(w) = 1``). Because the model is fitted through the *re-normalised* score, an
account with missing dimensions counts exactly as the score treats it. A logistic link on the
score is the best monotone-in-score calibration family with one slope, so the weights chosen
are those under which the score orders churn risk best in likelihood terms; the report gives
the ROC AUC before and after.

The fitted weights are then shrunk toward the current ones:
``w = (1 - shrinkage) * w_fitted + shrinkage * w_current`` (0 = fitted, 1 = unchanged),
and rescaled to sum to 100. Dimensions without any data in the fitting set keep their current
share. Overrides are not part of the fit (they are rules, applied after the weighted sum).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

from churnml.errors import InsufficientDataError, SchemaError
from churnml.health.config import HealthConfig, validate_fit_params
from churnml.health.rubric import apply_overrides, assign_tiers, combine, dimension_subscores


def _auc(y: np.ndarray, risk: np.ndarray) -> float | None:
    if y.min() == y.max():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, risk))


def _fit_simplex_logistic(X: np.ndarray, M: np.ndarray, y: np.ndarray, w0: np.ndarray,
                          ) -> tuple[np.ndarray, float, float]:
    """Maximum-likelihood ``w >= 0`` (sum 1), ``a``, ``b`` of ``y ~ sigmoid(a + b (S_w - 0.5))``.

    ``X``: sub-scores scaled to [0, 1] with 0 where missing; ``M``: 1.0 where present."""
    n, k = X.shape
    base = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    theta0 = np.concatenate([np.maximum(w0, 0.01) / np.maximum(w0, 0.01).sum(),
                             [np.log(base / (1 - base)), 0.0]])

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, a, b = theta[:k], theta[k], theta[k + 1]
        den = M @ w
        S = (X * M) @ w / den
        z = a + b * (S - 0.5)
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
        gz = (expit(z) - y) / n
        grad_w = b * ((gz / den)[:, None] * M * (X - S[:, None])).sum(axis=0)
        excess = w.sum() - 1.0
        loss += excess**2
        grad_w = grad_w + 2 * excess
        grad = np.concatenate([grad_w, [gz.sum(), (gz * (S - 0.5)).sum()]])
        return loss, grad

    # b <= 0: a higher health score may only mean less churn. Unconstrained, the fit would happily
    # pick the weights under which the score ranks churn *backwards* when the data say so.
    bounds = [(1e-6, None)] * k + [(None, None), (None, 0.0)]
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 500, "gtol": 1e-9, "ftol": 1e-12})
    w = res.x[:k]
    w = w / w.sum()
    w[w < 1e-3] = 0.0  # below 0.1 point of weight is the bound, not a signal
    return w / w.sum(), float(res.x[k]), float(res.x[k + 1])


def _round_to_100(w: np.ndarray) -> np.ndarray:
    """Weights in points (2 decimals) that sum to exactly 100."""
    pts = np.round(w / w.sum() * 100, 2)
    pts[np.argmax(pts)] += round(100 - pts.sum(), 2)
    return np.round(pts, 2)


def refit_tier_cuts(score: np.ndarray, y: np.ndarray, cuts: list[float]) -> tuple[list[float] | None, str]:
    """Snap each tier cut point to the nearest step of an isotonic (decreasing) fit of churn on
    score. Every tier is then a union of consecutive isotonic blocks, so the observed churn rate
    is non-increasing from the lowest tier to the highest. Returns (new cuts or None, note)."""
    from sklearn.isotonic import IsotonicRegression

    order = np.argsort(score, kind="stable")
    s, t = score[order], y[order]
    fitted = IsotonicRegression(increasing=False, out_of_bounds="clip").fit_transform(s, t)
    step = np.nonzero((np.diff(fitted) != 0) & (np.diff(s) > 0))[0]
    if len(step) < len(cuts):
        return None, (f"churn varies in only {len(step) + 1} steps along the score: too few "
                      f"to place {len(cuts)} cut points; tiers kept")
    # A cut at `c` puts scores >= c in the upper tier, so it must satisfy s[k] < c <= s[k + 1];
    # the smallest two-decimal number above s[k] reads better and is used when it still fits.
    lower, upper = s[step], s[step + 1]
    nice = np.round(np.floor(lower * 100) / 100 + 0.01, 2)
    fits = (nice > lower) & (nice <= upper)
    # prefer steps with a readable cut point; dense scores can leave gaps narrower than 0.01
    for boundaries in (nice[fits], np.where(fits, nice, upper)):
        new = _snap_distinct(np.unique(boundaries), cuts)
        if new is not None:
            break
    else:
        return None, "too few churn steps to give every tier its own; tiers kept"
    return new, "cut points snapped to the steps of an isotonic fit of churn on the score"


def _snap_distinct(boundaries: np.ndarray, cuts: list[float]) -> list[float] | None:
    """Distinct boundaries, decreasing, each the nearest to its cut among those that leave
    enough lower boundaries for the cuts still to place (None when there are too few)."""
    chosen: list[float] = []
    for i, c in enumerate(cuts):
        below = boundaries if not chosen else boundaries[boundaries < chosen[-1]]
        still = len(cuts) - i - 1
        valid = below[still:] if still else below  # ascending: keep `still` boundaries below
        if len(valid) == 0:
            return None
        chosen.append(float(valid[np.argmin(np.abs(valid - c))]))
    return chosen


def _weights_hash(weights: dict[str, float], tiers: list[dict[str, Any]]) -> str:
    blob = json.dumps({"weights": weights, "tiers": tiers}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


def fit_weights(features: pd.DataFrame, churned, config: HealthConfig, *,
                shrinkage: float | None = None, min_churn_events: int | None = None,
                min_retained: int | None = None, refit_tiers: bool | None = None,
                version: str | None = None) -> tuple[HealthConfig, dict[str, Any]]:
    """Fit dimension weights (and optionally tiers); returns ``(fitted config, report)``.

    The fitted config's version is ``version`` or ``"<current version>+fit.<hash of weights>"``
    (the same data and settings give the same version)."""

    params = dict(config.fitting)
    for key, value in (("shrinkage", shrinkage), ("min_churn_events", min_churn_events),
                       ("min_retained", min_retained), ("refit_tiers", refit_tiers)):
        if value is not None:
            params[key] = value
    validate_fit_params(params)

    y = np.asarray(pd.Series(churned).to_numpy(dtype=float, na_value=np.nan), dtype=float)
    if len(y) != len(features):
        raise SchemaError(f"fit: 'churned' has {len(y)} values for {len(features)} feature rows.")
    bad = ~np.isnan(y) & ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise SchemaError(f"fit: 'churned' must be 0, 1 or NaN; {int(bad.sum())} bad values, "
                          f"e.g. {sorted(set(y[bad].tolist()))[:5]}")
    sub = dimension_subscores(features, config)
    present = ~np.isnan(sub)
    rows = ~np.isnan(y) & present.any(axis=1)
    yy = y[rows]
    n_events, n_retained = int(yy.sum()), int(len(yy) - yy.sum())
    if n_events < params["min_churn_events"] or n_retained < params["min_retained"]:
        raise InsufficientDataError(
            f"Fitting the health weights needs at least {params['min_churn_events']} churn events "
            f"and {params['min_retained']} retained observations with health data; got "
            f"{n_events} churned and {n_retained} retained among {int(rows.sum())} labeled rows. "
            f"The current weights (version {config.version}) stay in use; lower 'min_churn_events' "
            "only if you accept noisier weights."
        )

    names = config.dimension_names
    w_current = np.array([d.weight for d in config.dimensions], dtype=float)
    w_current = w_current / w_current.sum()
    seen = present[rows].any(axis=0)
    X = np.nan_to_num(sub[rows][:, seen] / 100.0)
    M = present[rows][:, seen].astype(float)
    w_seen, a, b = _fit_simplex_logistic(X, M, yy, w_current[seen])
    note = "weights fitted"
    if b > -1e-6:
        # No weighting makes higher health mean less churn in these data: the slope sits at its
        # bound and the weights carry no information, so the current ones are kept.
        w_seen = w_current[seen] / w_current[seen].sum()
        note = "no weighting of the dimensions ranks churn in the expected direction; weights kept"
    w_fit = w_current.copy()
    # Dimensions never seen keep their share; the seen ones share the rest as fitted.
    w_fit[seen] = w_seen * w_current[seen].sum()
    s = float(params["shrinkage"])
    w_final = (1 - s) * w_fit + s * w_current
    points = _round_to_100(w_final)
    weights = {n: float(p) for n, p in zip(names, points)}

    before_raw, _ = combine(sub[rows], w_current * 100, config.neutral_score)
    tiers: list[dict[str, Any]] = [{"name": t.name, "min": t.min} for t in config.tiers]
    interim = config.with_weights(weights, version=config.version + "+fit")
    after_raw, _ = combine(sub[rows], points, config.neutral_score)
    final_scores, _ = apply_overrides(after_raw, features[rows], interim)
    tier_note = "tiers kept"
    if params["refit_tiers"]:
        new_cuts, tier_note = refit_tier_cuts(final_scores, yy, [t["min"] for t in tiers[:-1]])
        if new_cuts is not None:
            for t, c in zip(tiers, new_cuts):
                t["min"] = c
    tag = version or f"{config.version}+fit.{_weights_hash(weights, tiers)}"
    fitted = config.with_weights(weights, version=tag, tiers=tiers)
    tier_of = assign_tiers(final_scores, fitted)
    rates = {t.name: (float(yy[tier_of == t.name].mean()) if (tier_of == t.name).any() else None)
             for t in fitted.tiers}
    report = {
        "version": tag,
        "previous_version": config.version,
        "rows": int(rows.sum()),
        "churn_events": n_events,
        "retained": n_retained,
        "shrinkage": s,
        "weights_before": {n: float(p) for n, p in zip(names, _round_to_100(w_current))},
        "weights_fitted_unshrunk": {n: float(p) for n, p in zip(names, _round_to_100(w_fit))},
        "weights": weights,
        "dimensions_without_data": [n for n, ok in zip(names, seen) if not ok],
        "note": note,
        "intercept": a,
        "slope_per_score_unit": b / 100.0,
        "auc_before": _auc(yy, -before_raw),
        "auc_after": _auc(yy, -after_raw),
        "tiers": [(t.name, t.min) for t in fitted.tiers],
        "tier_note": tier_note,
        "tier_churn_rates": rates,
    }
    return fitted, report
