"""When, not only whether: a discrete-time competing-risk model of churn, contraction and expansion.

The question: from an account's features at ``as_of`` (a *landmark*), in which 30-day period
of the next year does its first revenue event happen, and which one is it? Churn, contraction
and expansion compete: whichever happens first ends the account's follow-up (an account that
churns cannot expand in the same history), so survival ("no event yet") and the cumulative
incidence of each outcome sum to 1 at every time.

Person-period form (the discrete-time hazard model; LightGBM has no survival objective, this
keeps LightGBM and its TreeSHAP reasons):

- **landmarks** are as_of dates every ``cadence_days`` (30 by default); an observation is an
  account active at the landmark (``features.labels.active_observations``), with its features
  built by the feature engine *at the landmark* (point in time, as everywhere);
- its follow-up is cut into :data:`N_PERIODS` periods of :data:`PERIOD_DAYS` days; period ``j``
  is ``[as_of + 30 j, as_of + 30 (j + 1))``;
- the **first event** and its period come from the outcome registry's label rules, read with
  ``features.labels.observation_grid`` at horizons 30, 60, ..., 360 days: outcome ``k``
  has happened by the end of period ``j`` exactly when its label at horizon ``30 (j + 1)`` is
  1, so its first period is the first horizon whose label is 1. Two outcomes first seen in the
  same period are ordered by :data:`TIE_ORDER` (an outcome that takes MRR to zero first, then
  the risk outcomes, then the others: a 30-day period cannot order them);
- a period is **observed** when it ends by the data's end (``Book.data_end``); follow-up is
  censored at the start of the first unobserved period;
- one **person-period row** per observation and period the account is at risk in: periods
  ``0 .. e`` when the first event is in period ``e``, ``0 .. observed - 1`` otherwise. Its label
  is the event class of that period (0 = none, else 1 + the outcome's position in
  :data:`~churnml.outcomes.OUTCOMES`) and it gets three time features at the *period's* start:
  :data:`TIME_FEATURES` (period index, days since signup, days to the renewal date in force at
  the landmark, which goes negative once that date has passed);
- a LightGBM **multiclass** model over {none, outcomes...} gives the hazards ``h_k(j)``: the
  probability of outcome ``k`` in period ``j`` given no event before it. Then
  ``S(j) = prod_{m < j} h_none(m)`` and ``CIF_k(j) = sum_{m <= j} S(m) h_k(m)``; survival plus
  the incidences is 1 by construction and every incidence rises with time.

From them :meth:`SurvivalModel.predict` returns, per account, the incidence of each outcome by
30, 60, 90 and 180 days (:data:`REPORT_DAYS`, ends of periods 1, 2, 3 and 6), survival at those
days and the expected days to churn within a year (a restricted mean: an account that does not
churn in the 360 days counts 360; a churn in period ``j`` counts its middle, ``30 j + 15``).

Only the past of ``as_of`` reaches a feature; the training protocol (``models.survival_train``)
cuts every person-period row at the end of its window, so no row at or after a censoring date
and no row after an account's event is ever trained on (:func:`person_period_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence, cast

import numpy as np
import pandas as pd

from churnml.errors import InsufficientDataError, UsageError
from churnml.outcomes import EXPECTED_DAYS_COLUMN, OUTCOMES, TIME_TO_EVENT_DAYS, Outcome

#: length of one period of the discrete-time hazard, in days
PERIOD_DAYS = 30
#: periods of follow-up: one (360-day) year
N_PERIODS = 12
#: the days the incidences are reported at (ends of periods 1, 2, 3 and 6; declared with the
#: outcome registry, which the output schema reads without loading this module)
REPORT_DAYS: tuple[int, ...] = TIME_TO_EVENT_DAYS
#: the class of "no event in the period"
NONE_CLASS = "none"
#: the classes of the multiclass hazard: none, then the outcomes in registry order
CLASSES: tuple[str, ...] = (NONE_CLASS,) + tuple(o.name for o in OUTCOMES)
#: period-dependent features added to every person-period row (at the period's start)
PERIOD_FEATURE = "period_index"
TENURE_FEATURE = "time_since_signup_days"
RENEWAL_FEATURE = "time_to_renewal_days"
TIME_FEATURES: tuple[str, ...] = (PERIOD_FEATURE, TENURE_FEATURE, RENEWAL_FEATURE)
#: the catalog features the time features start from (at the landmark)
_TENURE_SOURCE, _RENEWAL_SOURCE = "tenure_days", "days_to_renewal"
#: the time feature -> the catalog feature it equals in an account's current period (period 0)
TIME_FEATURE_SOURCES: dict[str, str] = {TENURE_FEATURE: _TENURE_SOURCE, RENEWAL_FEATURE: _RENEWAL_SOURCE}


def _tie_rank(outcome: Outcome) -> tuple[int, int]:
    terminal = 0 if outcome.label_rule == "mrr_reaches_zero" else 1
    return (terminal, 0 if outcome.is_risk else 1)


#: the order two outcomes first seen in the same period are counted in (module docstring)
TIE_ORDER: tuple[str, ...] = tuple(o.name for o in sorted(OUTCOMES, key=_tie_rank))


def class_code(name: str) -> int:
    """The multiclass code of an outcome (0 = none)."""
    if name not in CLASSES:
        raise UsageError(f"The 'outcome' parameter must be one of {list(CLASSES[1:])}. Got {name!r}.")
    return CLASSES.index(name)


def report_period(days: int) -> int:
    """The number of whole periods in ``days`` (a report day must be a multiple of the period)."""
    if days % PERIOD_DAYS or not 0 < days <= PERIOD_DAYS * N_PERIODS:
        raise UsageError(f"The 'days' parameter must be a multiple of {PERIOD_DAYS} up to "
                         f"{PERIOD_DAYS * N_PERIODS}. Got {days!r}.")
    return days // PERIOD_DAYS


# ---- events ------------------------------------------------------------------------------------
def first_events(book, landmarks, expansion_min_share: float = 0.0) -> pd.DataFrame:
    """The first event of every active (account, landmark) within :data:`N_PERIODS` periods.

    Columns: ``account_id, as_of, mrr`` (as ``observation_grid``, same row order: by as_of,
    then account_id), ``event`` (class code, 0 = no event seen), ``event_period`` (the period
    of the first event, -1 when none), ``observed_periods`` (periods that end by the data's
    end, 0 .. :data:`N_PERIODS`), ``time_days`` (days to the middle of the event's period, or
    to the censoring: ``PERIOD_DAYS * observed_periods``) and ``censor_days`` (the follow-up the
    data allows, ``PERIOD_DAYS * observed_periods``, known for every row: the censoring is
    administrative).
    """
    from churnml.features.labels import observation_grid

    grids = [observation_grid(book, landmarks, PERIOD_DAYS * (j + 1), expansion_min_share)
             for j in range(N_PERIODS)]
    base = grids[0][["account_id", "as_of", "mrr"]].copy()
    n = len(base)
    labeled = np.stack([g["labeled"].to_numpy(dtype=bool) for g in grids], axis=1)  # (n, periods)
    observed = labeled.sum(axis=1).astype(np.int64)
    first = {}
    for name in CLASSES[1:]:
        seen = np.stack([g[name].to_numpy(dtype="float64") == 1.0 for g in grids], axis=1)
        # labels are cumulative in the horizon: the first horizon with a 1 is the event's period
        first[name] = np.where(seen.any(axis=1), seen.argmax(axis=1), N_PERIODS).astype(np.int64)
    period = np.full(n, N_PERIODS, dtype=np.int64)
    for name in TIE_ORDER:
        period = np.minimum(period, first[name])
    event = np.zeros(n, dtype=np.int64)
    for name in reversed(TIE_ORDER):  # the first in TIE_ORDER wins a tie
        event = np.where(first[name] == period, class_code(name), event)
    has_event = period < N_PERIODS
    base["event"] = np.where(has_event, event, 0)
    base["event_period"] = np.where(has_event, period, -1)
    base["observed_periods"] = observed
    base["censor_days"] = PERIOD_DAYS * observed
    # an event counts at its period's middle (it happened somewhere inside), so it never ties
    # with a censoring, which falls on a period's end
    base["time_days"] = np.where(has_event, PERIOD_DAYS * period + PERIOD_DAYS // 2, PERIOD_DAYS * observed)
    return base


# ---- person-period rows --------------------------------------------------------------------------
def period_time_features(frame: pd.DataFrame, period: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`TIME_FEATURES` of landmark rows ``frame`` at the start of ``period``."""
    start = PERIOD_DAYS * period.astype("float64")

    def column(name: str) -> np.ndarray:
        if name in frame.columns:
            return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64")
        return np.full(len(frame), np.nan)

    return {PERIOD_FEATURE: period.astype("float64"),
            TENURE_FEATURE: column(_TENURE_SOURCE) + start,
            RENEWAL_FEATURE: column(_RENEWAL_SOURCE) - start}


def join_features(events: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """``events`` rows with their landmark's features (a column both have, ``mrr``, is the
    features')."""
    shared = [c for c in events.columns if c in features.columns and c not in ("account_id", "as_of")]
    return events.drop(columns=shared).merge(features, on=["account_id", "as_of"], how="inner",
                                             validate="one_to_one")


def person_period_rows(events: pd.DataFrame, features: pd.DataFrame,
                       cutoff: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per observation and period at risk (module docstring), with the landmark's
    features, the :data:`TIME_FEATURES` and ``label`` (class code of the period's event).

    ``events``: :func:`first_events`; ``features``: ``account_id, as_of`` + features at the
    landmark. ``cutoff``: keep only periods that end by this date (a training window's end):
    a period ending after it is censored, its event unseen. Columns added: ``period``,
    ``period_end`` (the day after the period's last day).
    """
    frame = join_features(events, features)
    observed = frame["observed_periods"].to_numpy(dtype=np.int64)
    if cutoff is not None:
        as_of_day = frame["as_of"].to_numpy(dtype="datetime64[D]").astype(np.int64)
        cut_day = np.datetime64(pd.Timestamp(cutoff).date(), "D").astype(np.int64)
        observed = np.clip((cut_day - as_of_day) // PERIOD_DAYS, 0, observed)
    event_period = frame["event_period"].to_numpy(dtype=np.int64)
    seen = (event_period >= 0) & (event_period < observed)
    count = np.where(seen, event_period + 1, observed)
    index = np.repeat(np.arange(len(frame)), count)
    offsets = np.repeat(np.cumsum(count) - count, count)
    period = np.arange(len(index), dtype=np.int64) - offsets
    rows = frame.iloc[index].reset_index(drop=True)
    last = period == (count[index] - 1)
    rows["label"] = np.where(seen[index] & last, frame["event"].to_numpy(dtype=np.int64)[index], 0)
    rows["period"] = period
    rows["period_end"] = rows["as_of"] + pd.to_timedelta(PERIOD_DAYS * (period + 1), unit="D")
    for name, values in period_time_features(rows, period).items():
        rows[name] = values
    return rows


# ---- curves ------------------------------------------------------------------------------------
def curves_from_hazards(hazards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Survival and cumulative incidence from per-period class probabilities.

    ``hazards``: (n, periods, classes) with column 0 = no event; each row sums to 1.
    Returns ``survival`` (n, periods + 1; ``survival[:, j]`` = no event in the first ``j``
    periods) and ``incidence`` (n, classes - 1, periods + 1; ``incidence[:, k, j]`` = outcome
    ``k + 1`` first, within the first ``j`` periods). ``survival + incidence.sum(1) == 1``.
    """
    hazards = np.asarray(hazards, dtype="float64")
    n, periods, _ = hazards.shape
    survival = np.ones((n, periods + 1))
    survival[:, 1:] = np.cumprod(hazards[:, :, 0], axis=1)
    at_risk = survival[:, :-1]  # survival at each period's start
    incidence = np.zeros((n, hazards.shape[2] - 1, periods + 1))
    incidence[:, :, 1:] = np.cumsum(at_risk[:, None, :] * np.moveaxis(hazards[:, :, 1:], 2, 1), axis=2)
    return survival, incidence


def expected_days_to_event(survival_free: np.ndarray, days_per_period: int = PERIOD_DAYS) -> np.ndarray:
    """Restricted mean days to an event within the follow-up from the probability of being free
    of it at each period end (``survival_free`` (n, periods + 1), column 0 = 1): an event in
    period ``j`` counts ``days_per_period * (j + 0.5)``, no event counts the whole follow-up."""
    periods = survival_free.shape[1] - 1
    in_period = survival_free[:, :-1] - survival_free[:, 1:]
    middle = days_per_period * (np.arange(periods) + 0.5)
    return in_period @ middle + survival_free[:, -1] * days_per_period * periods


def incidence_column(outcome: str, days: int) -> str:
    """``churn_probability_90d``: the cumulative incidence of ``outcome`` by ``days``."""
    return f"{outcome}_probability_{days}d"


def survival_column(days: int) -> str:
    return f"event_free_probability_{days}d"



@dataclass
class SurvivalModel:
    """The multiclass hazard booster and what it needs to score landmark features."""

    booster: Any
    feature_names: list[str]
    categories: dict[str, list[str]]
    info: dict[str, Any] = field(default_factory=dict)
    #: per-class shift of the raw scores (class 0 fixed at 0) fitted on the validation rows
    #: (:func:`fit_class_bias`); None = the booster's probabilities as they are
    class_bias: list[float] | None = None
    #: post-hoc scaling of each outcome's "outcome vs none" logit fitted on the calibration
    #: window (:func:`fit_hazard_scaling`, :class:`HazardScaling` as a dict); None = none
    hazard_scaling: dict[str, list[float]] | None = None
    #: the hazard's starting point per renewal stratum (:class:`HazardBaseline` as a dict),
    #: added to the booster's raw scores; None = the booster as it is (a model saved before)
    baseline: dict[str, Any] | None = None

    @property
    def hazard_baseline(self) -> "HazardBaseline | None":
        """:attr:`baseline` as a :class:`HazardBaseline` (parsed once per dict)."""
        if self.baseline is None:
            return None
        cached = self.__dict__.get("_baseline_parsed")
        if cached is None or cached[0] is not self.baseline:
            cached = (self.baseline, HazardBaseline.from_dict(self.baseline))
            self.__dict__["_baseline_parsed"] = cached
        return cached[1]

    @property
    def version(self) -> str | None:
        """The registered version (``load(..., version=)``), None for an unregistered model."""
        value = self.info.get("version")
        return None if value is None else str(value)

    #: features the model computes from the landmark's (never sent to ``/predict``)
    derived_features: ClassVar[tuple[str, ...]] = TIME_FEATURES
    #: what the timing reasons read of the model (``churnml.models.survival_explain``, which
    #: does not import this module): its classes, the period feature and the time features'
    #: catalog sources
    classes: ClassVar[tuple[str, ...]] = CLASSES
    period_feature: ClassVar[str] = PERIOD_FEATURE
    time_feature_sources: ClassVar[dict[str, str]] = TIME_FEATURE_SOURCES

    @property
    def encoder(self):
        from churnml.models.model import FeatureEncoder

        return FeatureEncoder(self.feature_names, self.categories, label="time_to_event")

    def save(self, path) -> Path:
        """Write the booster (``hazard.txt``) and ``survival_model.json`` to folder ``path``."""
        import json

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "hazard.txt"))
        meta = {"feature_names": self.feature_names, "categories": self.categories,
                "classes": list(CLASSES), "period_days": PERIOD_DAYS, "info": self.info,
                "class_bias": self.class_bias, "hazard_scaling": self.hazard_scaling,
                "baseline": self.baseline}
        (folder / "survival_model.json").write_text(json.dumps(meta, indent=1, default=str))
        return folder

    @classmethod
    def load(cls, path, version: str | None = None) -> "SurvivalModel":
        """A model written by :meth:`save`; its classes and period must be this code's."""
        import json

        import lightgbm as lgb

        from churnml.errors import SchemaError

        folder = Path(path)
        meta = json.loads((folder / "survival_model.json").read_text())
        if tuple(meta.get("classes", ())) != CLASSES or meta.get("period_days") != PERIOD_DAYS:
            raise SchemaError(f"{folder}: a time-to-event model of classes {meta.get('classes')} and "
                              f"{meta.get('period_days')}-day periods; this churnml has {list(CLASSES)} "
                              f"and {PERIOD_DAYS}: retrain it")
        booster = lgb.Booster(model_file=str(folder / "hazard.txt"))
        info = dict(meta.get("info", {}))
        if version is not None:
            info["version"] = str(version)
        return cls(booster, list(meta["feature_names"]), dict(meta["categories"]), info,
                   meta.get("class_bias"), meta.get("hazard_scaling"), meta.get("baseline"))

    def hazards(self, features: pd.DataFrame, periods: int = N_PERIODS,
                num_iteration: int | None = None) -> np.ndarray:
        """(n, periods, classes) hazards of landmark ``features`` (one row per account): each
        row is repeated once per period with that period's :data:`TIME_FEATURES`. The landmark
        rows are encoded once and their matrix rows repeated (the encoding is row by row), so
        only the time features' columns differ between a row's periods. ``num_iteration``:
        the booster's first rounds only (choosing the rounds, :func:`fit_hazard`)."""
        n = len(features)
        period = np.tile(np.arange(periods, dtype=np.int64), n)
        index = np.repeat(np.arange(n), periods)
        X = np.repeat(self.encoder.matrix(features), periods, axis=0)
        sources = features[[c for c in (_TENURE_SOURCE, _RENEWAL_SOURCE) if c in features.columns]]
        for name, values in period_time_features(sources.iloc[index], period).items():
            if name in self.feature_names:
                X[:, self.feature_names.index(name)] = values
        return self.period_hazards(X, period, num_iteration).reshape(n, periods, len(CLASSES))

    def period_hazards(self, X: np.ndarray, period: np.ndarray, num_iteration: int | None = None) -> np.ndarray:
        """(rows, classes) hazards of encoded person-period rows ``X`` in periods ``period``:
        the booster's probabilities from :attr:`baseline`, shifted by :attr:`class_bias` and
        scaled by :attr:`hazard_scaling` when the model has them. Every path that scores the
        model (local, ``/predict``, the Spark and Bento pyfunc) goes through here."""
        scaling = self.hazard_scaling
        if self.class_bias is None and scaling is None and self.baseline is None:
            return cast(np.ndarray, self.booster.predict(X, num_iteration=num_iteration))
        raw = self.raw_scores(X, num_iteration)
        if scaling is None:
            return softmax(raw)
        return HazardScaling.from_dict(scaling).apply(raw, period)

    def raw_scores(self, X: np.ndarray, num_iteration: int | None = None) -> np.ndarray:
        """(rows, classes) raw multiclass scores of encoded rows ``X``: the booster's, from the
        row's :attr:`baseline` stratum when the model has one, shifted by :attr:`class_bias`
        when it has one (what :attr:`hazard_scaling` is fitted on)."""
        raw = cast(np.ndarray, self.booster.predict(X, raw_score=True, num_iteration=num_iteration))
        baseline = self.hazard_baseline
        if baseline is not None:
            raw = raw + baseline.offsets(X, self.feature_names)
        if self.class_bias is not None:
            raw = raw + np.asarray(self.class_bias, dtype="float64")
        return raw

    def fit_scaling(self, rows: pd.DataFrame, period_term: bool = False) -> "HazardScaling":
        """Fit :attr:`hazard_scaling` on person-period ``rows`` (:func:`person_period_rows`:
        features, time features, ``period`` and ``label``) and keep it; returns it."""
        raw = self.raw_scores(self.encoder.matrix(rows))
        period = rows["period"].to_numpy(dtype="float64") if period_term else None
        scaling = fit_hazard_scaling(raw, rows["label"].to_numpy(dtype=np.int64), period)
        self.hazard_scaling = scaling.to_dict()
        return scaling

    def current_period_matrix(self, features: pd.DataFrame, columns=None) -> np.ndarray:
        """The matrix of each account's current-period row (period 0), as :meth:`hazards`
        builds its first period: the landmark features encoded, then the time features."""
        X = self.encoder.matrix(features, columns)
        if not X.flags.writeable:
            X = X.copy()
        for name, values in period_time_features(features, np.zeros(len(features), dtype=np.int64)).items():
            if name in self.feature_names:
                X[:, self.feature_names.index(name)] = values
        return X

    def timing_reasons(self, features: pd.DataFrame, top_k: int = 3, *, catalog=None,
                       columns=None) -> dict[str, list[list[dict]]]:
        """Per outcome, per row, up to ``top_k`` reasons for the outcome's hazard in the
        account's current period, in the catalog's words (``churnml.models.survival_explain``)."""
        from churnml.models.survival_explain import timing_reasons

        return dict(timing_reasons(self, features, top_k, catalog=catalog, columns=columns))

    def curves(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """:func:`curves_from_hazards` of :meth:`hazards`."""
        return curves_from_hazards(self.hazards(features))

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Per row of ``features``: the incidence of every outcome by each of
        :data:`REPORT_DAYS` (``churn_probability_30d`` ...), survival (no event) at those days
        and :data:`EXPECTED_DAYS_COLUMN`; ``account_id`` and ``as_of`` when present."""
        survival, incidence = self.curves(features)
        out = features[[c for c in ("account_id", "as_of") if c in features.columns]].copy()
        out = out.reset_index(drop=True)
        for days in REPORT_DAYS:
            j = report_period(days)
            for k, name in enumerate(CLASSES[1:]):
                out[incidence_column(name, days)] = incidence[:, k, j]
            out[survival_column(days)] = survival[:, j]
        churn = incidence[:, class_code(TIE_ORDER[0]) - 1, :]
        out[EXPECTED_DAYS_COLUMN] = expected_days_to_event(1.0 - churn)
        return out


def softmax(raw: np.ndarray, bias=None) -> np.ndarray:
    """Row-wise softmax of raw multiclass scores (n, classes) shifted by ``bias``."""
    z = np.asarray(raw, dtype="float64") + (0.0 if bias is None else np.asarray(bias, dtype="float64"))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_class_bias(raw: np.ndarray, label: np.ndarray) -> list[float]:
    """The per-class shift of the raw scores (class 0 fixed at 0) that minimises the multiclass
    log loss of ``label`` (an intercept-only recalibration: it moves each outcome's base rate,
    not the ranking). scipy's L-BFGS with the exact gradient."""
    from scipy.optimize import minimize

    raw = np.asarray(raw, dtype="float64")
    onehot = np.eye(raw.shape[1])[np.asarray(label, dtype=np.int64)]

    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        bias = np.r_[0.0, b]
        p = softmax(raw, bias)
        value = -float(np.log(np.clip((p * onehot).sum(axis=1), 1e-300, None)).mean())
        grad = (p - onehot).mean(axis=0)[1:]
        return value, grad

    result = minimize(loss, np.zeros(raw.shape[1] - 1), jac=True, method="L-BFGS-B",
                      options={"ftol": 1e-15, "gtol": 1e-10})
    return [0.0] + [float(v) for v in result.x]


#: the renewal state of a period, from :data:`RENEWAL_FEATURE` at its start (the renewal date in
#: force at the landmark): not known, already passed, due in this period, due in a later period
RENEWAL_STATES: tuple[str, ...] = ("unknown", "passed", "due", "later")
#: the name a stratum's missing (or unseen) category is stored under
MISSING_LEVEL = "(missing)"


def renewal_state(days_to_renewal: np.ndarray) -> np.ndarray:
    """Index into :data:`RENEWAL_STATES` of each period from its :data:`RENEWAL_FEATURE`."""
    ttr = np.asarray(days_to_renewal, dtype="float64")
    return np.select([np.isnan(ttr), ttr < 0, ttr < PERIOD_DAYS], [0, 1, 2], 3).astype(np.int64)


@dataclass(frozen=True)
class HazardBaseline:
    """The hazard's starting point per stratum: the booster learns from it, not from one overall rate.

    A stratum is the period's renewal state (:data:`RENEWAL_STATES`) crossed with the levels
    of the categorical features ``by`` (``contract_type`` by default: an annual contract can
    churn at its renewal, a monthly one every month). ``log_rates`` (states, levels of
    ``by[0]``, ..., classes) holds the log of each class's share of the training rows in the
    stratum, shrunk towards the overall shares with ``prior_rows`` pseudo-rows; it is the
    booster's ``init_score`` in training and is added to its raw scores in every prediction
    (:meth:`SurvivalModel.raw_scores`). Why: the renewal period's hazard is an order of
    magnitude above the others, and a booster that starts from the overall rate and is stopped
    early on the log loss leaves that contrast shrunk: on the training rows of seed 91 the
    annual renewal period got 0.12 against 0.145 observed and the periods before it 0.010
    against 0.006 (docs/models.md, "Calibration per decile: why the low deciles run high ...
    (session 13)").

    ``shares`` holds the training rows' share of each state and level: the reference
    distribution the stratum's part of the log odds is explained against
    (:meth:`contributions`)."""

    by: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]
    log_rates: np.ndarray
    shares: tuple[tuple[float, ...], ...]
    prior_rows: float = 20.0

    def coordinates(self, X: np.ndarray, feature_names: Sequence[str]) -> list[np.ndarray]:
        """Per axis (renewal state, then each ``by`` feature) the index of each encoded row of
        ``X``: a category code is its position in the model's categories, a missing or unseen
        one (NaN) the last level."""
        names = list(feature_names)
        ttr = (X[:, names.index(RENEWAL_FEATURE)] if RENEWAL_FEATURE in names
               else np.full(len(X), np.nan))
        coords = [renewal_state(ttr)]
        for name, levels in zip(self.by, self.levels):
            code = X[:, names.index(name)]
            missing = len(levels) - 1
            coords.append(np.where(np.isnan(code), missing, np.nan_to_num(code, nan=0.0)).astype(np.int64)
                          .clip(0, missing))
        return coords

    def offsets(self, X: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
        """(rows, classes) log rates of each encoded row's stratum."""
        return self.log_rates[tuple(self.coordinates(X, feature_names))]

    def contributions(self, X: np.ndarray, feature_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The stratum's part of each outcome's log odds against none, explained: exact Shapley
        values of ``d = log_rate_k - log_rate_none`` over the axes (renewal state, ``by``...),
        a missing axis replaced by its training shares (:attr:`shares`, axes independent).
        Returns ``(phi, reference)``: ``phi`` (rows, outcomes, axes), ``reference``
        (outcomes,) the shares-weighted mean of ``d``; per row ``phi`` sums to
        ``d(row) - reference``."""
        from itertools import combinations
        from math import factorial

        d = self.log_rates[..., 1:] - self.log_rates[..., :1]
        axes = d.ndim - 1
        coords = self.coordinates(X, feature_names)

        def value(subset: tuple[int, ...]) -> np.ndarray:
            """(rows, outcomes): ``d`` averaged over the axes not in ``subset`` at each row."""
            table = d
            for axis in sorted(set(range(axes)) - set(subset), reverse=True):
                table = np.tensordot(table, np.asarray(self.shares[axis], dtype="float64"), axes=([axis], [0]))
            if not subset:
                return np.broadcast_to(table, (len(X), table.shape[-1]))
            return table[tuple(coords[a] for a in subset)]

        values = {subset: value(subset) for r in range(axes + 1) for subset in combinations(range(axes), r)}
        phi = np.zeros((len(X), d.shape[-1], axes))
        for i in range(axes):
            others = [a for a in range(axes) if a != i]
            for r in range(axes):
                weight = factorial(r) * factorial(axes - r - 1) / factorial(axes)
                for subset in combinations(others, r):
                    phi[:, :, i] += weight * (values[tuple(sorted(subset + (i,)))] - values[subset])
        reference = np.tensordot(d, _outer_shares(self.shares), axes=(list(range(axes)), list(range(axes))))
        return phi, np.asarray(reference, dtype="float64")

    def axis_features(self) -> tuple[str, ...]:
        """The model feature each axis of :meth:`contributions` belongs to."""
        return (RENEWAL_FEATURE,) + self.by

    def to_dict(self) -> dict[str, Any]:
        return {"by": list(self.by), "levels": [list(v) for v in self.levels],
                "log_rates": self.log_rates.tolist(), "shares": [list(v) for v in self.shares],
                "prior_rows": self.prior_rows}

    @classmethod
    def from_dict(cls, data: dict) -> "HazardBaseline":
        return cls(tuple(data["by"]), tuple(tuple(v) for v in data["levels"]),
                   np.asarray(data["log_rates"], dtype="float64"),
                   tuple(tuple(float(x) for x in v) for v in data["shares"]), float(data.get("prior_rows", 20.0)))


def _outer_shares(shares: Sequence[Sequence[float]]) -> np.ndarray:
    """The product distribution of independent axes with these shares."""
    out = np.ones(())
    for w in shares:
        out = np.multiply.outer(out, np.asarray(w, dtype="float64"))
    return out


def fit_hazard_baseline(X: np.ndarray, label: np.ndarray, feature_names: Sequence[str],
                        categories: dict[str, list[str]], by: Sequence[str],
                        prior_rows: float = 20.0) -> HazardBaseline:
    """:class:`HazardBaseline` of encoded person-period rows ``X`` with class codes ``label``:
    per stratum, ``(count_k + prior_rows * share_k) / (rows + prior_rows)`` with ``share_k`` the
    overall share of class ``k`` (an empty stratum: the overall shares). A ``by`` feature the model does not have (or that is not
    categorical) is left out; without the renewal feature every row is in state "unknown"."""
    names = list(feature_names)
    kept = tuple(b for b in by if b in names and b in categories)
    levels = tuple(tuple(categories[b]) + (MISSING_LEVEL,) for b in kept)
    shell = HazardBaseline(kept, levels, np.zeros(()), (), float(prior_rows))
    coords = shell.coordinates(X, names)
    shape = (len(RENEWAL_STATES),) + tuple(len(v) for v in levels)
    classes = len(CLASSES)
    y = np.asarray(label, dtype=np.int64)
    overall = np.bincount(y, minlength=classes) / max(len(y), 1)
    flat = np.ravel_multi_index(tuple(coords), shape) if len(y) else np.zeros(0, dtype=np.int64)
    cells = int(np.prod(shape))
    counts = np.bincount(flat * classes + y, minlength=cells * classes).reshape(cells, classes)
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty stratum: the overall shares
        rates = np.where(rows + prior_rows > 0, (counts + prior_rows * overall) / (rows + prior_rows), overall)
    log_rates = np.log(np.clip(rates, 1e-12, None)).reshape(shape + (classes,))
    shares = tuple(tuple((np.bincount(c, minlength=n) / max(len(c), 1)).tolist())
                   for c, n in zip(coords, shape))
    return HazardBaseline(kept, levels, log_rates, shares, float(prior_rows))


@dataclass(frozen=True)
class HazardScaling:
    """Post-hoc calibration of the multiclass hazard (vector scaling of the logits).

    With ``raw`` the booster's raw scores of a person-period row and ``l_k = raw_k - raw_none``
    the log odds of outcome ``k`` against no event, the calibrated hazard is
    ``softmax(0, a_k l_k + b_k + c_k * period)`` over (none, outcomes): ``scale`` ``a_k``,
    ``offset`` ``b_k`` and ``period_slope`` ``c_k`` per outcome. It stays a probability over
    the classes for every row, so survival and the incidences still sum to 1 and every
    incidence still rises with time (:func:`curves_from_hazards`). A scale per outcome keeps
    each outcome's ranking only approximately (the hazard of ``k`` depends on the other
    logits too). Identity: scale 1, offset 0, slope 0."""

    scale: tuple[float, ...]
    offset: tuple[float, ...]
    period_slope: tuple[float, ...]

    @classmethod
    def identity(cls, outcomes: int = len(CLASSES) - 1) -> "HazardScaling":
        return cls((1.0,) * outcomes, (0.0,) * outcomes, (0.0,) * outcomes)

    def logits(self, raw: np.ndarray, period: np.ndarray | None) -> np.ndarray:
        """(rows, outcomes) calibrated log odds of each outcome against none."""
        raw = np.asarray(raw, dtype="float64")
        z = (raw[:, 1:] - raw[:, :1]) * np.asarray(self.scale) + np.asarray(self.offset)
        if period is not None and any(self.period_slope):
            z = z + np.asarray(period, dtype="float64")[:, None] * np.asarray(self.period_slope)
        return z

    def apply(self, raw: np.ndarray, period: np.ndarray | None) -> np.ndarray:
        """(rows, classes) calibrated hazards of raw scores ``raw`` in periods ``period``."""
        z = self.logits(raw, period)
        return softmax(np.concatenate([np.zeros((len(z), 1)), z], axis=1))

    def to_dict(self) -> dict[str, list[float]]:
        return {"scale": list(self.scale), "offset": list(self.offset),
                "period_slope": list(self.period_slope)}

    @classmethod
    def from_dict(cls, data: dict) -> "HazardScaling":
        outcomes = len(data["scale"])
        return cls(tuple(float(v) for v in data["scale"]), tuple(float(v) for v in data["offset"]),
                   tuple(float(v) for v in data.get("period_slope", [0.0] * outcomes)))


def fit_hazard_scaling(raw: np.ndarray, label: np.ndarray, period: np.ndarray | None = None,
                       fixed: Sequence[int] = ()) -> HazardScaling:
    """The :class:`HazardScaling` that minimises the multinomial log loss of ``label`` (class
    codes) over person-period rows with raw scores ``raw`` (rows, classes); with ``period``
    also a slope in the period index per outcome. ``fixed``: outcomes (0-based, in
    ``CLASSES[1:]`` order) held at the identity while the others are fitted. scipy's L-BFGS-B
    with the exact gradient from the identity; deterministic, vectorised (a few dozen passes
    over the rows)."""
    from scipy.optimize import minimize

    raw = np.asarray(raw, dtype="float64")
    label = np.asarray(label, dtype=np.int64)
    outcomes = raw.shape[1] - 1
    if not len(raw):
        return HazardScaling.identity(outcomes)
    base = raw[:, 1:] - raw[:, :1]
    onehot = np.eye(raw.shape[1])[label][:, 1:]
    t = None if period is None else np.asarray(period, dtype="float64")
    blocks = 3 if t is not None else 2

    def unpack(theta: np.ndarray) -> HazardScaling:
        a, b = theta[:outcomes], theta[outcomes: 2 * outcomes]
        c = theta[2 * outcomes:] if t is not None else np.zeros(outcomes)
        return HazardScaling(tuple(float(v) for v in a), tuple(float(v) for v in b), tuple(float(v) for v in c))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = base * theta[:outcomes] + theta[outcomes: 2 * outcomes]
        if t is not None:
            z += t[:, None] * theta[2 * outcomes:]
        top = np.maximum(z.max(axis=1), 0.0)                        # none's logit is 0
        log_norm = top + np.log(np.exp(-top) + np.exp(z - top[:, None]).sum(axis=1))
        value = float((log_norm - (onehot * z).sum(axis=1)).mean())
        resid = (np.exp(z - log_norm[:, None]) - onehot) / len(z)   # d loss / d z
        grad = [(resid * base).sum(axis=0), resid.sum(axis=0)]
        if t is not None:
            grad.append((resid * t[:, None]).sum(axis=0))
        return value, np.concatenate(grad)

    start = np.concatenate([np.ones(outcomes), np.zeros(outcomes * (blocks - 1))])
    held = set(int(k) for k in fixed)
    bounds = [(v, v) if i % outcomes in held else (None, None) for i, v in enumerate(start)]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"ftol": 1e-13, "gtol": 1e-9})
    return unpack(np.asarray(result.x, dtype="float64"))


def fit_hazard(train: pd.DataFrame, valid: pd.DataFrame | None, feature_names: list[str],
               categorical: list[str], params: dict, num_boost_round: int,
               early_stopping_rounds: int, rounds: int | None = None, recalibrate: bool = False,
               class_bias: list[float] | None = None,
               select_rounds: Callable[["SurvivalModel", int, int], int] | None = None,
               baseline_by: Sequence[str] | None = None, baseline_prior_rows: float = 20.0) -> SurvivalModel:
    """LightGBM multiclass over :data:`CLASSES` on person-period rows (``label`` column).

    With ``valid`` rows: early stopping on their multi-class log loss; ``rounds`` fixes the
    number of rounds instead (the refit on every row). ``select_rounds(model, best, last)``:
    after early stopping, choose the rounds kept among ``best`` (the log loss's) .. ``last``
    (the rounds trained before stopping), ``model`` holding all ``last`` rounds
    (``survival_train.fit_protocol`` chooses on the calibration window's per-decile
    calibration); ``info["early_stopping_iteration"]`` keeps ``best``. ``recalibrate``: fit the
    per-class bias (:func:`fit_class_bias`) on the ``valid`` rows after that; ``class_bias``:
    use this one instead (the refit carries the protocol's). ``baseline_by``: start the booster
    from a :class:`HazardBaseline` per renewal state and level of these categorical features,
    fitted on the ``train`` rows (its ``init_score``, and the ``valid`` rows' too); None: from
    LightGBM's own start (one rate per class)."""
    import lightgbm as lgb

    from churnml.models.model import FeatureEncoder

    if not len(train):
        raise InsufficientDataError("time_to_event: no person-period row to train on.")
    counts = np.bincount(train["label"].to_numpy(dtype=np.int64), minlength=len(CLASSES))
    if (counts[1:] == 0).any():
        missing = [c for c, n in zip(CLASSES[1:], counts[1:]) if n == 0]
        raise InsufficientDataError(f"time_to_event: the training rows hold no event of {missing} "
                                    f"({len(train):,} person-period rows).")
    categories = {c: sorted(str(v) for v in train[c].dropna().unique()) for c in categorical}
    encoder = FeatureEncoder(feature_names, categories, label="time_to_event")
    cat_idx = [feature_names.index(c) for c in categorical]
    p = dict(params)
    p.update({"objective": "multiclass", "num_class": len(CLASSES)})
    p.setdefault("verbose", -1)
    X_train = encoder.matrix(train)
    baseline = None
    if baseline_by is not None:
        baseline = fit_hazard_baseline(X_train, train["label"].to_numpy(), feature_names, categories,
                                       baseline_by, baseline_prior_rows)
    d_train = lgb.Dataset(X_train, train["label"].to_numpy(), feature_name=feature_names,
                          categorical_feature=cat_idx, free_raw_data=True,
                          init_score=None if baseline is None else baseline.offsets(X_train, feature_names))
    del X_train
    saved = None if baseline is None else baseline.to_dict()
    bias = None if class_bias is None else list(class_bias)
    if rounds is None and valid is not None and len(valid):
        X_valid = encoder.matrix(valid)
        d_valid = lgb.Dataset(X_valid, valid["label"].to_numpy(), reference=d_train,
                              categorical_feature=cat_idx,
                              init_score=None if baseline is None else baseline.offsets(X_valid, feature_names))
        booster = lgb.train(p, d_train, num_boost_round=num_boost_round, valid_sets=[d_valid],
                            valid_names=["validation"],
                            callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)])
        best = booster.best_iteration or booster.current_iteration()
        early = best
        if select_rounds is not None:
            whole = SurvivalModel(booster, list(feature_names), categories, baseline=saved)
            best = int(select_rounds(whole, best, booster.current_iteration()))
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        if recalibrate:
            raw = SurvivalModel(booster, list(feature_names), categories, baseline=saved).raw_scores(X_valid)
            bias = fit_class_bias(raw, valid["label"].to_numpy())
    else:
        best = early = int(rounds if rounds is not None else num_boost_round)
        booster = lgb.train(p, d_train, num_boost_round=best)
    info = {"best_iteration": int(best), "early_stopping_iteration": int(early),
            "lightgbm_version": lgb.__version__,
            "rows": int(len(train)), "class_counts": {c: int(n) for c, n in zip(CLASSES, counts)}}
    if bias is not None:
        info["class_bias"] = bias
    if baseline is not None:
        info["baseline_by"] = list(baseline.by)
    return SurvivalModel(booster, list(feature_names), categories, info, bias, baseline=saved)


#: the revenue forecast's band: accounts simulated one by one (those that carry the most of a
#: total's variance; the rest by the normal approximation) and draws of the total
BAND_EXACT_ACCOUNTS = 256
BAND_DRAWS = 4000


def sum_band(amount: np.ndarray, p: np.ndarray, level: float, seed: int = 0,
             exact: int = BAND_EXACT_ACCOUNTS, draws: int = BAND_DRAWS) -> tuple[np.ndarray, np.ndarray]:
    """The central ``level`` interval of ``sum_i amount_i B_ij`` for each column j of ``p``
    (n, m), the ``B_ij`` independent Bernoulli(``p_ij``): ``(low, high)``, each of length m.

    MRR is heavy-tailed: a few large accounts carry most of a month's variance, so the total is
    skewed and ``mean +- z sd`` is wrong at the bottom (clipped at 0 where the true 5% point of
    a 1,309-account book's month is $19,844). Per column, the ``exact`` accounts with the largest
    variance ``amount^2 p (1 - p)`` are drawn one by one and the others' sum, many small
    independent terms, is drawn from its normal approximation; ``draws`` totals, seeded, their
    quantiles. Tested against a plain simulation of every account."""
    amount = np.asarray(amount, dtype="float64")
    p = np.clip(np.asarray(p, dtype="float64"), 0.0, 1.0)
    n, m = p.shape
    rng = np.random.default_rng(seed)
    tails = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
    low, high = np.zeros(m), np.zeros(m)
    variance = (amount ** 2)[:, None] * p * (1.0 - p)
    k = min(exact, n)
    for j in range(m):
        top = (np.argpartition(-variance[:, j], k - 1)[:k] if k < n else np.arange(n))
        rest = np.ones(n, dtype=bool)
        rest[top] = False
        totals = (rng.random((draws, k)) < p[top, j]) @ amount[top]
        if rest.any():
            totals = totals + (amount[rest] @ p[rest, j]
                               + np.sqrt(variance[rest, j].sum()) * rng.standard_normal(draws))
        low[j], high[j] = np.quantile(np.maximum(totals, 0.0), tails)
    return low, high


def revenue_forecast(incidence: np.ndarray, mrr: np.ndarray, shares: dict[str, float] | None = None,
                     periods: int = 6, level: float = 0.95,
                     names: Sequence[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """Expected MRR moved by each outcome in each of the next ``periods`` periods, with a band.

    ``incidence``: (n, outcomes, periods + 1) cumulative incidences (:meth:`SurvivalModel.curves`);
    ``mrr``: each account's MRR at as_of; ``shares``: the share of the MRR an outcome moves
    (1 for an outcome that takes MRR to zero; e.g. ``typical_share`` of ``playbooks.yaml`` for
    contraction and expansion; default 1 for every outcome). An account's first event falls in
    period ``j`` with probability ``CIF(j + 1) - CIF(j)``; accounts are taken as independent, so
    a period's total is a sum of independent Bernoulli amounts: its expectation is exact and its
    band is the central ``level`` interval of that sum (:func:`sum_band`, seeded by ``seed``),
    per period and for the cumulative total (``cumulative_*`` columns). One row per outcome and
    period: ``outcome, period, start_day, end_day, expected_mrr, low, high,
    cumulative_expected_mrr, cumulative_low, cumulative_high``. ``names``: the outcomes along
    the incidence's second axis (default :data:`CLASSES` but none). The weekly report's forecast
    (``churnml.jobs.report_forecast``) asks for a 90% band."""
    incidence = np.asarray(incidence, dtype="float64")
    mrr = np.nan_to_num(np.asarray(mrr, dtype="float64"))
    if incidence.ndim != 3 or incidence.shape[0] != len(mrr) or incidence.shape[2] <= periods:
        raise UsageError(f"incidence must be (accounts, outcomes, > {periods} period ends) for "
                         f"{len(mrr)} accounts. Got {incidence.shape}.")
    shares = shares or {}
    names = list(CLASSES[1:] if names is None else names)
    if len(names) != incidence.shape[1]:
        raise UsageError(f"incidence has {incidence.shape[1]} outcomes; names {names}.")
    rows = []
    for k, name in enumerate(names):
        moved = mrr * float(shares.get(name, 1.0))
        p = np.diff(incidence[:, k, : periods + 1], axis=1)        # (n, periods)
        cum = incidence[:, k, 1: periods + 1] - incidence[:, k, :1]
        expected, c_expected = moved @ p, moved @ cum
        low, high = sum_band(moved, p, level, seed=seed + 2 * k)
        c_low, c_high = sum_band(moved, cum, level, seed=seed + 2 * k + 1)
        for j in range(periods):
            rows.append({"outcome": name, "period": j, "start_day": PERIOD_DAYS * j,
                         "end_day": PERIOD_DAYS * (j + 1), "expected_mrr": expected[j],
                         "low": low[j], "high": high[j],
                         "cumulative_expected_mrr": c_expected[j],
                         "cumulative_low": c_low[j], "cumulative_high": c_high[j]})
    return pd.DataFrame(rows)
