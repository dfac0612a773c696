"""Metrics of the competing-risk model that fit censoring (scikit-survival where it can).

Rows are observations with a first-event ``time`` (days), an ``event`` code (0 = censored,
``k`` = outcome ``k``) and a ``censor`` time: the follow-up the data allows. Our censoring is
*administrative* (the data's end), so ``censor`` is known for every row, events included.

scikit-survival's IPCW metrics (``cumulative_dynamic_auc``, ``concordance_index_ipcw``,
``brier_score``, ``integrated_brier_score``) take one event type; its docs and API have no
competing-risk version of them (0.28). With every censoring time known they still apply, to
one outcome at a time, through the *censoring-complete* transform of Fine and Gray (1999):
a row whose first event is another outcome stays in the outcome's risk set until its own
censoring time, where it is censored (:func:`cause_view`). Then

- time-dependent AUC at ``t`` is the cumulative/dynamic AUC of Blanche et al. (2013), "cases"
  = outcome ``k`` by ``t``, "controls" = everyone else still followed (including rows whose
  first event was another outcome), weighted by the inverse probability of censoring (Kaplan-
  Meier of the censoring, estimated by scikit-survival on the same rows);
- concordance is Uno's IPCW C-index of the outcome's incidence by ``tau``;
- the Brier score at ``t`` compares ``CIF_k(t)`` with "outcome ``k`` by ``t``", IPCW; the
  integrated Brier score averages it over the period ends up to the last evaluated day, and the
  null is the Aalen-Johansen incidence of the *training* rows (the same for every row);
- calibration per decile (:func:`calibration_by_decile`, our own: the libraries lack it) puts
  the rows into deciles of predicted ``CIF_k(t)`` and compares the mean prediction with the
  Aalen-Johansen incidence of each decile (scikit-survival's
  ``cumulative_incidence_competing_risks``) and its 95% interval: the library's log-log
  interval, or (the training protocol) a bootstrap that resamples accounts, whose rows at
  successive landmarks share their events (:func:`weighted_incidence`).

``tests/unit/test_survival_metrics.py`` checks the transformed library calls against plain
implementations of the same formulas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def cause_view(time, event, censor, cause: int) -> np.ndarray:
    """scikit-survival's structured array for outcome ``cause``: its events at their time; every
    other row censored at its own censoring time (a competing event's row stays at risk of
    ``cause`` until then: the censoring-complete transform)."""
    from sksurv.util import Surv

    time = np.asarray(time, dtype="float64")
    event = np.asarray(event, dtype=np.int64)
    censor = np.asarray(censor, dtype="float64")
    hit = event == cause
    return Surv.from_arrays(hit, np.where(hit | (event == 0), time, censor))


def aalen_johansen(time, event, times, n_causes: int, conf: bool = False):
    """Aalen-Johansen cumulative incidence of causes 1..n_causes at ``times`` (n_causes, len(times));
    with ``conf`` also the 95% log-log interval (n_causes, 2, len(times))."""
    from sksurv.nonparametric import cumulative_incidence_competing_risks

    time = np.asarray(time, dtype="float64")
    event = np.asarray(event, dtype=np.int64)
    times = np.asarray(times, dtype="float64")
    # the library assumes every cause occurs: add absent causes as a weightless stand-in is not
    # possible, so estimate on the causes present and report 0 for the absent ones
    present = np.unique(event[event > 0])
    out = np.zeros((n_causes, len(times)))
    band = np.zeros((n_causes, 2, len(times)))
    if not len(present):
        return (out, band) if conf else out
    remap = np.zeros(n_causes + 1, dtype=np.int64)
    remap[present] = np.arange(1, len(present) + 1)
    result = cumulative_incidence_competing_risks(remap[event], time,
                                                  conf_type="log-log" if conf else None)
    grid, cif = result[0], result[1]
    # step function: the value at the last grid time <= t (0 before the first)
    pos = np.searchsorted(grid, times, side="right") - 1
    for j, cause in enumerate(present):
        out[cause - 1] = np.where(pos >= 0, cif[j + 1][np.maximum(pos, 0)], 0.0)
        if conf:
            ci = result[2]
            band[cause - 1] = np.where(pos >= 0, ci[j + 1][:, np.maximum(pos, 0)], 0.0)
    return (out, band) if conf else out


def _evaluable(view: np.ndarray, t: float) -> bool:
    # the IPCW metrics need follow-up beyond t and at least one case and one control at t
    times = view["time"]
    cases = view["event"] & (times <= t)
    return bool(cases.any() and (times > t).any())


def td_auc(time, event, censor, cause: int, risk: np.ndarray, t: float) -> float:
    """Cumulative/dynamic IPCW AUC of ``risk`` for outcome ``cause`` by ``t`` (scikit-survival's
    ``cumulative_dynamic_auc`` on :func:`cause_view`); NaN when not evaluable."""
    from sksurv.metrics import cumulative_dynamic_auc

    view = cause_view(time, event, censor, cause)
    if not _evaluable(view, t):
        return float("nan")
    auc, _ = cumulative_dynamic_auc(view, view, np.asarray(risk, dtype="float64"), [t])
    return float(auc[0])


def concordance(time, event, censor, cause: int, risk: np.ndarray, tau: float) -> float:
    """Uno's IPCW concordance of ``risk`` for outcome ``cause``, pairs truncated at ``tau``."""
    from sksurv.metrics import concordance_index_ipcw

    view = cause_view(time, event, censor, cause)
    if not _evaluable(view, tau):
        return float("nan")
    return float(concordance_index_ipcw(view, view, np.asarray(risk, dtype="float64"), tau=tau)[0])


def brier(time, event, censor, cause: int, incidence: np.ndarray, times) -> np.ndarray:
    """IPCW Brier score of the incidence of ``cause`` (n, len(times)) at each of ``times``."""
    from sksurv.metrics import brier_score

    view = cause_view(time, event, censor, cause)
    _, scores = brier_score(view, view, 1.0 - np.asarray(incidence, dtype="float64"),
                            np.asarray(times, dtype="float64"))
    return np.asarray(scores, dtype="float64")


def integrated_brier(time, event, censor, cause: int, incidence: np.ndarray, times) -> float:
    """Integrated Brier score over ``times`` (trapezoid rule, divided by the span, as
    scikit-survival's ``integrated_brier_score``)."""
    from sksurv.metrics import integrated_brier_score

    view = cause_view(time, event, censor, cause)
    return float(integrated_brier_score(view, view, 1.0 - np.asarray(incidence, dtype="float64"),
                                        np.asarray(times, dtype="float64")))


def weighted_incidence(time, event, cause: int, t: float, weights: np.ndarray) -> np.ndarray:
    """The Aalen-Johansen incidence of ``cause`` by ``t`` for each row of ``weights`` (B, n): row
    ``i`` counted ``weights[b, i]`` times (a bootstrap resample). Vectorised over the B
    resamples; with every weight 1 it is :func:`aalen_johansen` (tested). At a time holding
    both, events come before censorings (those censored then are still at risk)."""
    time = np.asarray(time, dtype="float64")
    event = np.asarray(event, dtype=np.int64)
    weights = np.atleast_2d(np.asarray(weights, dtype="float64"))
    grid = np.unique(time[(time <= t) & (event > 0)])
    if not len(grid):
        return np.zeros(len(weights))
    at_risk = (time[:, None] >= grid[None, :]).astype("float64")           # (n, m)
    hit = time[:, None] == grid[None, :]
    n = weights @ at_risk                                                 # (B, m)
    d_all = weights @ (hit & (event[:, None] > 0)).astype("float64")
    d_cause = weights @ (hit & (event[:, None] == cause)).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(n > 0, d_all / n, 0.0)
        share = np.where(n > 0, d_cause / n, 0.0)
    before = np.cumprod(np.c_[np.ones(len(weights)), 1.0 - hazard[:, :-1]], axis=1)
    return (before * share).sum(axis=1)


def calibration_by_decile(time, event, cause: int, n_causes: int, predicted: np.ndarray, t: float,
                          bins: int = 10, groups=None, resamples: int = 0,
                          seed: int = 0) -> pd.DataFrame:
    """Per decile of predicted incidence of ``cause`` by ``t``: rows, mean prediction, the
    Aalen-Johansen incidence of the decile's rows with its 95% interval, and ``within``
    (the mean prediction inside the interval).

    The interval: the log-log interval of scikit-survival, which takes the rows as independent;
    with ``groups`` (each row's account) and ``resamples`` > 0 instead the 2.5-97.5 percentiles
    of a bootstrap that resamples *accounts* (seeded), because the rows of one account at
    landmarks 30 days apart share their events: a churn is the first event of every landmark
    in the 90 days before it, so the rows are not independent (docs/models.md)."""
    predicted = np.asarray(predicted, dtype="float64")
    time = np.asarray(time, dtype="float64")
    event = np.asarray(event, dtype=np.int64)
    order = np.argsort(predicted, kind="stable")
    split = np.array_split(order, bins)
    counts = None
    if groups is not None and resamples > 0:
        codes, uniques = pd.factorize(pd.Series(np.asarray(groups)), sort=True)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(uniques), size=(resamples, len(uniques)))
        counts = np.zeros((resamples, len(uniques)))
        np.add.at(counts, (np.repeat(np.arange(resamples), len(uniques)), draws.ravel()), 1.0)
    rows = []
    for d, idx in enumerate(split, start=1):
        if not len(idx):
            continue
        cif, band = aalen_johansen(time[idx], event[idx], [t], n_causes, conf=True)
        low, high = float(band[cause - 1, 0, 0]), float(band[cause - 1, 1, 0])
        if counts is not None:
            boot = weighted_incidence(time[idx], event[idx], cause, t, counts[:, codes[idx]])
            low, high = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
        mean = float(predicted[idx].mean())
        rows.append({"decile": d, "rows": int(len(idx)), "predicted": mean,
                     "observed": float(cif[cause - 1, 0]), "low": low, "high": high,
                     "within": bool(low <= mean <= high)})
    return pd.DataFrame(rows)


def decile_calibration_statistic(time, event, cause: int, n_causes: int, predicted: np.ndarray, t: float,
                                 bins: int = 10) -> float:
    """A Hosmer-Lemeshow statistic of the incidence of ``cause`` by ``t`` that fits censoring:
    over the deciles of ``predicted`` (:func:`calibration_by_decile`), the sum of
    ``(mean predicted - Aalen-Johansen incidence)^2 / (mean predicted (1 - mean predicted) / rows)``.
    Lower is better calibrated; the training protocol chooses the hazard model's rounds with it
    on the calibration window (``survival_train.fit_protocol``)."""
    predicted = np.asarray(predicted, dtype="float64")
    time = np.asarray(time, dtype="float64")
    event = np.asarray(event, dtype=np.int64)
    total = 0.0
    for idx in np.array_split(np.argsort(predicted, kind="stable"), bins):
        if not len(idx):
            continue
        # the Aalen-Johansen incidence (weighted_incidence with unit weights: scikit-survival's
        # estimator fails on some small groups, e.g. 5 rows with 2 causes)
        observed = float(weighted_incidence(time[idx], event[idx], cause, t, np.ones((1, len(idx))))[0])
        mean = float(np.clip(predicted[idx].mean(), 1e-9, 1 - 1e-9))
        total += (mean - observed) ** 2 / (mean * (1 - mean) / len(idx))
    return float(total)
