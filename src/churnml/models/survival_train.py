"""Training and honest evaluation of the competing-risk model (``churnml train --target time_to_event``).

Protocol (docs/models.md, "Time to event"):

- **landmarks**: as_of dates every ``cadence_days`` (30) counted back from 30 days before the
  data's end, the first ``min_history_days`` after every table has started recording
  (``dataset.observed_start``); features at each landmark from the feature engine;
- **test**: the landmarks from ``test_span_days`` (270) before the data's end on. Their
  follow-up is censored at the data's end (30 to 270 days), which the IPCW metrics take into
  account (``models.survival_metrics``);
- **training**: the person-period rows of the earlier landmarks whose period *ends by the first
  test landmark* (``survival.person_period_rows`` with that cutoff): no label the model learns
  from lies on or after the test window's start; early stopping on the rows whose period ends in
  the last ``validation_days`` before it, the rest trains;
- **baselines on the same test rows**: the Aalen-Johansen incidence of the training landmarks
  (the null of the integrated Brier score), a binary LightGBM for 90-day churn with the churn
  model's parameters on the same landmark features and the same cutoff, and on a simulated book
  the oracle's 90-day churn probability;
- **registered model**: refitted on every person-period row that ends by the data's end with
  the protocol's number of rounds (``refit``); the metrics are the protocol model's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

from churnml.errors import ConfigError, InsufficientDataError, LeakageError
from churnml.models import survival as S
from churnml.models import survival_metrics as SM
from churnml.outcomes import TIME_TO_EVENT

#: the metric the champion gate compares (lower is better: an integrated Brier score)
PROMOTION_METRIC = "test_ibs_churn"
#: days the integrated Brier score averages over (period ends up to 180 days)
IBS_DAYS: tuple[int, ...] = tuple(range(S.PERIOD_DAYS, 181, S.PERIOD_DAYS))
CALIBRATION_DAYS = 90
#: the categorical features a baseline stratum crosses the renewal state with, unless the
#: config's ``baseline.by`` says otherwise
DEFAULT_BASELINE_BY: tuple[str, ...] = ("contract_type",)


@dataclass
class SurvivalConfig:
    """``models/time_to_event.yaml`` (see the file for meanings)."""

    target: str = TIME_TO_EVENT
    description: str = ""
    cadence_days: int = 30
    min_history_days: int = 30
    test_span_days: int = 270
    validation_days: int = 90
    expansion_min_share: float = 0.0
    lgb_params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 400
    early_stopping_rounds: int = 30
    refit: bool = True
    #: shift each class's raw score on the validation rows (``survival.fit_class_bias``)
    recalibrate: bool = False
    #: keep the rounds best calibrated per decile on the calibration window (``fit_protocol``)
    select_rounds: bool = True
    #: scale each outcome's "outcome vs none" hazard logit, fitted on the calibration window's
    #: person-period rows (``survival.fit_hazard_scaling``; ``fit_protocol``)
    hazard_scaling: bool = True
    #: with ``hazard_scaling``, also a slope in the period index per outcome
    hazard_scaling_period: bool = False
    #: start the booster from a baseline hazard per renewal state and level of these
    #: categorical features (``survival.HazardBaseline``); None: from one rate per class
    #: (``baseline.enabled: false``, the shipped setting)
    baseline_by: tuple[str, ...] | None = None
    #: pseudo-rows that shrink a stratum's class shares towards the overall ones
    baseline_prior_rows: float = 20.0
    promotion_min_improvement: float = 0.0
    bootstrap_resamples: int = 200
    seed: int = 7

    @property
    def registered_name(self) -> str:
        from churnml.outcomes import model_name_of

        return model_name_of(self.target)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_survival_config(path: str | Path | None = None) -> SurvivalConfig:
    """``models/time_to_event.yaml`` (or ``path``) as a :class:`SurvivalConfig`; a bad value is a
    :class:`ConfigError` naming it."""
    from churnml.config import models_dir

    path = Path(path) if path is not None else models_dir() / f"{TIME_TO_EVENT}.yaml"
    if not path.is_file():
        raise ConfigError(f"model config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if raw.get("target", TIME_TO_EVENT) != TIME_TO_EVENT:
        raise ConfigError(f"{path} configures target {raw.get('target')!r}, not {TIME_TO_EVENT!r}.")
    obs, split, lgb = raw.get("observations", {}), raw.get("split", {}), raw.get("lightgbm", {})
    baseline = raw.get("baseline", {}) or {}
    if not isinstance(baseline, dict):
        raise ConfigError(f"{path}: 'baseline' must be a mapping (enabled, by, prior_rows). Got {baseline!r}.")
    by = baseline.get("by", list(DEFAULT_BASELINE_BY))
    if not isinstance(by, list) or not all(isinstance(b, str) for b in by):
        raise ConfigError(f"{path}: 'baseline.by' must be a list of categorical feature names. Got {by!r}.")
    prior_rows = baseline.get("prior_rows", SurvivalConfig.baseline_prior_rows)
    if isinstance(prior_rows, bool) or not isinstance(prior_rows, (int, float)) or prior_rows < 0:
        raise ConfigError(f"{path}: 'baseline.prior_rows' must be a number >= 0. Got {prior_rows!r}.")
    config = SurvivalConfig(
        description=str(raw.get("description", "")),
        cadence_days=obs.get("cadence_days", 30), min_history_days=obs.get("min_history_days", 30),
        expansion_min_share=float(raw.get("label", {}).get("expansion_min_share", 0.0)),
        test_span_days=split.get("test_span_days", 270), validation_days=split.get("validation_days", 90),
        lgb_params=dict(lgb.get("params", {})), num_boost_round=lgb.get("num_boost_round", 400),
        early_stopping_rounds=lgb.get("early_stopping_rounds", 30),
        refit=bool(raw.get("refit", {}).get("enabled", True)),
        recalibrate=bool(raw.get("calibration", {}).get("class_bias", False)),
        select_rounds=bool(raw.get("calibration", {}).get("select_rounds", True)),
        hazard_scaling=bool(raw.get("calibration", {}).get("hazard_scaling", True)),
        hazard_scaling_period=bool(raw.get("calibration", {}).get("hazard_scaling_period", False)),
        baseline_by=tuple(by) if bool(baseline.get("enabled", False)) else None,
        baseline_prior_rows=float(prior_rows),
        promotion_min_improvement=float(raw.get("promotion", {}).get("min_improvement", 0.0)),
        bootstrap_resamples=raw.get("evaluation", {}).get("bootstrap_resamples", 200),
        seed=raw.get("evaluation", {}).get("seed", 7))
    for name in ("cadence_days", "min_history_days", "test_span_days", "validation_days",
                 "num_boost_round", "early_stopping_rounds"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"The '{name}' parameter must be a positive integer. Got {value!r}.")
    if config.test_span_days < S.PERIOD_DAYS * 2:
        raise ConfigError(f"The 'test_span_days' parameter must be at least {2 * S.PERIOD_DAYS}. "
                          f"Got {config.test_span_days!r}.")
    return config


@dataclass
class SurvivalTrainingResult:
    """What a time-to-event training run produced (the counterpart of ``TrainingResult``).

    ``predictions``: one row per test observation: ``account_id, as_of, event, time_days,
    censor_days``, the model's ``SurvivalModel.predict`` columns, the 90-day churn label where
    the 90 days are observed (``label_churn_90d``, NaN otherwise), ``binary_probability`` and
    ``oracle_probability`` (simulated books). ``calibration``: per outcome, the per-decile
    table at :data:`CALIBRATION_DAYS` days.
    """

    model: S.SurvivalModel
    protocol_model: S.SurvivalModel
    config: SurvivalConfig
    metrics: dict[str, float]
    predictions: pd.DataFrame
    calibration: dict[str, pd.DataFrame]
    split: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    #: the test landmarks' features (the champion gate re-scores the champion on them)
    test_features: pd.DataFrame | None = None


def landmark_dates(book, config: SurvivalConfig) -> pd.DatetimeIndex:
    """Landmarks every ``cadence_days`` back from one period before the data's end."""
    from churnml.features.windows import to_as_of
    from churnml.models.dataset import observed_start

    if pd.isna(book.data_end):
        raise InsufficientDataError("the book has no dated rows: cannot place any landmark.")
    latest = to_as_of(book.data_end) - pd.Timedelta(days=S.PERIOD_DAYS)
    first = observed_start(book) + pd.Timedelta(days=config.min_history_days)
    if latest < first:
        raise InsufficientDataError(f"time_to_event: the book ends {to_as_of(book.data_end).date()}; "
                                    f"no landmark has {config.min_history_days} days of history and "
                                    f"one {S.PERIOD_DAYS}-day period of follow-up.")
    count = int((latest - first).days // config.cadence_days) + 1
    return pd.DatetimeIndex([latest - pd.Timedelta(days=config.cadence_days * k)
                             for k in range(count - 1, -1, -1)]).as_unit("ns")


def truncate_events(events: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """``events`` as they were known at ``cutoff``: follow-up censored at the last period end
    by then, an event later than that unseen."""
    out = events.copy()
    days = (pd.Timestamp(cutoff) - pd.to_datetime(out["as_of"])).dt.days.to_numpy()
    observed = np.clip(days // S.PERIOD_DAYS, 0, out["observed_periods"].to_numpy())
    seen = (out["event_period"].to_numpy() >= 0) & (out["event_period"].to_numpy() < observed)
    out["observed_periods"] = observed
    out["censor_days"] = S.PERIOD_DAYS * observed
    out["event"] = np.where(seen, out["event"], 0)
    out["event_period"] = np.where(seen, out["event_period"], -1)
    out["time_days"] = np.where(seen, out["time_days"], out["censor_days"])
    return out


def _feature_columns(features: pd.DataFrame, rows: pd.DataFrame) -> tuple[list[str], list[str], dict[str, str]]:
    from churnml.models.dataset import select_features

    candidates = [c for c in features.columns if c not in ("account_id", "as_of")] + list(S.TIME_FEATURES)
    return select_features(rows, candidates, np.ones(len(rows), dtype=bool))


def _binary_model(features: pd.DataFrame, book, landmarks, cutoff: pd.Timestamp, test: pd.DataFrame,
                  names: list[str], categorical: list[str], config: SurvivalConfig,
                  outcome: str | None = None) -> np.ndarray:
    """The 90-day probability of ``outcome`` (default churn) of a binary LightGBM with that
    outcome's model parameters (``models/<outcome>.yaml``) on the same landmark features, trained
    on the landmarks whose 90-day window ends by ``cutoff`` (early stopping on the last
    ``validation_days`` of them). Ranking only: uncalibrated."""
    import lightgbm as lgb

    from churnml.features.labels import observation_grid
    from churnml.models.config import load_config
    from churnml.models.model import FeatureEncoder

    churn = outcome or S.TIE_ORDER[0]
    churn_config = load_config(churn)
    grid = observation_grid(book, landmarks, 90, config.expansion_min_share)
    frame = features.merge(grid[["account_id", "as_of", churn]], on=["account_id", "as_of"])
    end = pd.to_datetime(frame["as_of"]) + pd.Timedelta(days=90)
    usable = frame[(end <= cutoff) & frame[churn].notna()]
    valid = (end[usable.index] > cutoff - pd.Timedelta(days=config.validation_days)).to_numpy()
    plain = [n for n in names if n not in S.TIME_FEATURES]
    cats = [c for c in categorical if c in plain]
    categories = {c: sorted(str(v) for v in usable[c].dropna().unique()) for c in cats}
    encoder = FeatureEncoder(plain, categories, label=churn)
    params = dict(churn_config.lgb_params)
    params.update({"objective": "binary", "verbose": -1})
    if "num_threads" in config.lgb_params:  # the same threads as the hazard model: a fair cost
        params["num_threads"] = config.lgb_params["num_threads"]
    cat_idx = [plain.index(c) for c in cats]
    d_train = lgb.Dataset(encoder.matrix(usable[~valid]), usable.loc[~valid, churn].to_numpy(),
                          categorical_feature=cat_idx)
    d_valid = lgb.Dataset(encoder.matrix(usable[valid]), usable.loc[valid, churn].to_numpy(),
                          reference=d_train, categorical_feature=cat_idx)
    booster = lgb.train(params, d_train, num_boost_round=churn_config.num_boost_round, valid_sets=[d_valid],
                        callbacks=[lgb.early_stopping(churn_config.early_stopping_rounds, verbose=False)])
    return np.asarray(booster.predict(encoder.matrix(test), num_iteration=booster.best_iteration))


def incidence_metrics(incidence: np.ndarray, time_days, event, censor_days, groups, train_events: pd.DataFrame,
                      resamples: int = 0, seed: int = 0) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """The censoring-aware metrics of cumulative incidences ``incidence`` (n, outcomes, period
    ends; :func:`~churnml.models.survival.curves_from_hazards`) of the test rows ``time_days``,
    ``event``, ``censor_days`` (``groups``: each row's account): per outcome the time-dependent
    AUC at :data:`~churnml.models.survival.REPORT_DAYS`, Uno's concordance by 180 days, the
    integrated Brier score over :data:`IBS_DAYS` and the same for the Aalen-Johansen null of
    ``train_events``, and the calibration per decile at :data:`CALIBRATION_DAYS` days, its
    intervals from ``resamples`` bootstrap resamples of the accounts (seeded; 0: the
    independent-rows log-log interval). Any model's incidences (``benchmarks/survival_library.py``
    scores scikit-survival's with it). Returns ``(metrics, calibration)``."""
    t, c = (np.asarray(v, dtype="float64") for v in (time_days, censor_days))
    e = np.asarray(event, dtype=np.int64)
    n_causes = len(S.CLASSES) - 1
    ibs_grid = np.asarray(IBS_DAYS, dtype="float64")
    ibs_j = [S.report_period(d) for d in IBS_DAYS]
    null = SM.aalen_johansen(train_events["time_days"], train_events["event"], ibs_grid, n_causes)
    metrics: dict[str, float] = {}
    calibration = {}
    for k, name in enumerate(S.CLASSES[1:]):
        cause = k + 1
        for days in S.REPORT_DAYS:
            risk = incidence[:, k, S.report_period(days)]
            metrics[f"test_td_auc_{name}_{days}d"] = SM.td_auc(t, e, c, cause, risk, float(days))
        metrics[f"test_cindex_{name}"] = SM.concordance(t, e, c, cause, incidence[:, k, S.report_period(180)], 180.0)
        model_cif = incidence[:, k, ibs_j]
        null_cif = np.broadcast_to(null[k], model_cif.shape)
        metrics[f"test_ibs_{name}"] = SM.integrated_brier(t, e, c, cause, model_cif, ibs_grid)
        metrics[f"null_test_ibs_{name}"] = SM.integrated_brier(t, e, c, cause, null_cif, ibs_grid)
        table = SM.calibration_by_decile(t, e, cause, n_causes,
                                         incidence[:, k, S.report_period(CALIBRATION_DAYS)],
                                         float(CALIBRATION_DAYS), groups=groups,
                                         resamples=resamples, seed=seed)
        calibration[name] = table
        metrics[f"test_calibration_within_{name}_{CALIBRATION_DAYS}d"] = float(table["within"].mean())
    return metrics, calibration


def evaluate_survival(model: S.SurvivalModel, test_features: pd.DataFrame, test_events: pd.DataFrame,
                      train_events: pd.DataFrame, resamples: int = 0,
                      seed: int = 0) -> tuple[dict[str, float], pd.DataFrame, dict[str, pd.DataFrame]]:
    """Censoring-aware metrics of ``model`` on the test landmarks (:func:`incidence_metrics`).
    Returns ``(metrics, predictions, calibration)``."""
    frame = S.join_features(test_events, test_features)
    survival, incidence = model.curves(frame)
    predicted = model.predict(frame)
    keep = ["account_id", "as_of", "event", "event_period", "time_days", "censor_days"]
    predictions = pd.concat([frame[keep].reset_index(drop=True),
                             predicted.drop(columns=["account_id", "as_of"])], axis=1)
    metrics: dict[str, float] = {"test_rows": float(len(frame)),
                                 "test_landmarks": float(frame["as_of"].nunique())}
    scores, calibration = incidence_metrics(incidence, frame["time_days"], frame["event"], frame["censor_days"],
                                            frame["account_id"].to_numpy(), train_events, resamples, seed)
    metrics.update(scores)
    sums = survival[:, 1:] + incidence[:, :, 1:].sum(axis=1)
    metrics["test_max_sum_error"] = float(np.abs(sums - 1.0).max())
    return metrics, predictions, calibration


def calibration_window(past: pd.DataFrame, features: pd.DataFrame, cutoff: pd.Timestamp,
                       config: SurvivalConfig) -> pd.DataFrame:
    """The landmarks of the last ``validation_days`` before ``cutoff`` with their features and
    their follow-up censored at ``cutoff`` (:func:`truncate_events`): every person-period row
    they have ends in the validation window, so the protocol model never trains on them."""
    start = cutoff - pd.Timedelta(days=config.validation_days)
    window = truncate_events(past[(past["as_of"] >= start) & (past["as_of"] < cutoff)], cutoff)
    return S.join_features(window[window["observed_periods"] > 0], features)


def calibration_rows(past: pd.DataFrame, features: pd.DataFrame, cutoff: pd.Timestamp,
                     config: SurvivalConfig) -> pd.DataFrame:
    """The person-period rows of the calibration window (:func:`calibration_window`'s
    landmarks, follow-up censored at ``cutoff``): every one ends by ``cutoff``, before the
    first test landmark, and none is a training row. :func:`fit_protocol` fits the hazard's
    scaling (``calibration.hazard_scaling``) on them."""
    start = cutoff - pd.Timedelta(days=config.validation_days)
    window = truncate_events(past[(past["as_of"] >= start) & (past["as_of"] < cutoff)], cutoff)
    return S.person_period_rows(window[window["observed_periods"] > 0], features, cutoff=cutoff)


def rounds_by_calibration(window: pd.DataFrame) -> Callable[[S.SurvivalModel, int, int], int]:
    """``select_rounds`` of :func:`~churnml.models.survival.fit_hazard`: among the rounds from
    early stopping's to the last trained, the one whose :data:`CALIBRATION_DAYS`-day incidences
    are best calibrated per decile on the calibration ``window`` (the sum over outcomes of
    :func:`~churnml.models.survival_metrics.decile_calibration_statistic`; ties: fewer rounds).
    Early stopping on the log loss stops while the low deciles are still shrunk towards the
    average (docs/models.md, "Calibration per decile")."""
    t = window["time_days"].to_numpy(dtype="float64")
    e = window["event"].to_numpy(dtype=np.int64)
    j = S.report_period(CALIBRATION_DAYS)
    n_causes = len(S.CLASSES) - 1

    def select(model: S.SurvivalModel, best: int, last: int) -> int:
        if not len(window) or not (e > 0).any():
            return best
        scores = []
        for rounds in range(best, last + 1):
            incidence = S.curves_from_hazards(model.hazards(window, periods=j, num_iteration=rounds))[1]
            scores.append(sum(SM.decile_calibration_statistic(t, e, k + 1, n_causes, incidence[:, k, j],
                                                              float(CALIBRATION_DAYS))
                              for k in range(n_causes)))
        return best + int(np.argmin(scores))

    return select


def fit_protocol(rows: pd.DataFrame, names: list[str], categorical: list[str], cutoff: pd.Timestamp,
                 config: SurvivalConfig, window: pd.DataFrame | None = None,
                 window_rows: pd.DataFrame | None = None) -> S.SurvivalModel:
    """The protocol model on the person-period rows that end by ``cutoff``: early stopping on
    those whose period ends in the last ``validation_days`` before it, the rest trains. With
    ``config.select_rounds`` and a calibration ``window`` (:func:`calibration_window`), the
    rounds kept are chosen on it (:func:`rounds_by_calibration`). With
    ``config.hazard_scaling`` and the window's person-period rows ``window_rows``
    (:func:`calibration_rows`), the hazard's scaling is then fitted on them
    (``SurvivalModel.fit_scaling``; ``info["hazard_scaling_rows"]`` counts them); a row that
    ends after ``cutoff`` is refused."""
    in_valid = (rows["period_end"] > cutoff - pd.Timedelta(days=config.validation_days)).to_numpy()
    select = rounds_by_calibration(window) if config.select_rounds and window is not None else None
    model = S.fit_hazard(rows[~in_valid], rows[in_valid], names, categorical, config.lgb_params,
                         config.num_boost_round, config.early_stopping_rounds,
                         recalibrate=config.recalibrate, select_rounds=select,
                         baseline_by=config.baseline_by, baseline_prior_rows=config.baseline_prior_rows)
    if config.hazard_scaling and window_rows is not None and len(window_rows):
        late = window_rows["period_end"] > cutoff
        if late.any():
            raise LeakageError(f"calibration rows must end by the cutoff {cutoff.date()}: {int(late.sum())} "
                             f"end later (e.g. {window_rows.loc[late, 'period_end'].iloc[0].date()})")
        scaling = model.fit_scaling(window_rows, config.hazard_scaling_period)
        model.info["hazard_scaling"] = scaling.to_dict()
        model.info["hazard_scaling_rows"] = int(len(window_rows))
    return model


def train_time_to_event(book, config: SurvivalConfig | str | Path | None = None, *, truth=None, catalog=None,
                        progress=None) -> SurvivalTrainingResult:
    """Train and evaluate the competing-risk model on ``book`` (a ``Book`` or a data folder)
    with the protocol of the module docstring."""
    from churnml.features.build import build_features
    from churnml.features.catalog import load_catalog
    from churnml.features.windows import to_as_of
    from churnml.models import metrics as M
    from churnml.models.baselines import find_truth, oracle_baseline

    if isinstance(book, (str, Path)):
        from churnml.data.io import load_book

        source = Path(book)
        book, _ = load_book(source)
        truth = truth if truth is not None else find_truth(source)
    if not isinstance(config, SurvivalConfig):
        config = load_survival_config(config)
    catalog = catalog if catalog is not None else load_catalog()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    landmarks = landmark_dates(book, config)
    test_start = to_as_of(book.data_end) - pd.Timedelta(days=config.test_span_days)
    test_dates = landmarks[landmarks >= test_start]
    train_dates = landmarks[landmarks < test_start]
    if len(train_dates) < 3 or not len(test_dates):
        raise InsufficientDataError(
            f"time_to_event: {len(landmarks)} landmarks every {config.cadence_days} days "
            f"({landmarks[0].date()} to {landmarks[-1].date()}); the test window (from "
            f"{test_start.date()}) needs at least 3 earlier landmarks to train on: a longer book or "
            f"a shorter split.test_span_days.")
    cutoff = pd.Timestamp(test_dates[0])
    events = S.first_events(book, landmarks, config.expansion_min_share)
    timings["labels_seconds"] = time.perf_counter() - clock
    if progress is not None:
        progress.note(f"time_to_event: features for {len(landmarks)} landmarks")
    clock = time.perf_counter()
    features = build_features(book, landmarks, catalog=catalog)
    timings["features_seconds"] = time.perf_counter() - clock

    clock = time.perf_counter()
    past = events[events["as_of"] < cutoff]
    rows = S.person_period_rows(past, features, cutoff=cutoff)
    names, categorical, dropped = _feature_columns(features, rows)
    in_valid = (rows["period_end"] > cutoff - pd.Timedelta(days=config.validation_days)).to_numpy()
    protocol = fit_protocol(rows, names, categorical, cutoff, config,
                            calibration_window(past, features, cutoff, config),
                            calibration_rows(past, features, cutoff, config))
    timings["fit_seconds"] = time.perf_counter() - clock
    if progress is not None:
        progress.advance()
        progress.note("time_to_event: evaluating on the test landmarks")
    clock = time.perf_counter()
    test_events = events[events["as_of"] >= cutoff]
    test_events = test_events[test_events["observed_periods"] > 0]
    metrics, predictions, calibration = evaluate_survival(protocol, features, test_events,
                                                          truncate_events(past, cutoff),
                                                          config.bootstrap_resamples, config.seed)
    timings["evaluate_seconds"] = time.perf_counter() - clock

    # the 90-day churn incidence against the binary question, where 90 days are observed
    clock = time.perf_counter()
    churn = S.TIE_ORDER[0]
    from churnml.features.labels import observation_grid

    grid = observation_grid(book, test_dates, 90, config.expansion_min_share)
    predictions = predictions.merge(grid[["account_id", "as_of", churn]].rename(
        columns={churn: "label_churn_90d"}), on=["account_id", "as_of"], how="left")
    test_features = predictions[["account_id", "as_of"]].merge(features, on=["account_id", "as_of"])
    predictions["binary_probability"] = _binary_model(features, book, landmarks, cutoff, test_features,
                                                      names, categorical, config)
    labeled = predictions["label_churn_90d"].notna().to_numpy()
    y = predictions.loc[labeled, "label_churn_90d"].to_numpy(dtype="float64")
    accounts = predictions.loc[labeled, "account_id"]
    for key, column in (("test", S.incidence_column(churn, 90)), ("binary_test", "binary_probability")):
        score = predictions.loc[labeled, column].to_numpy(dtype="float64")
        metrics[f"{key}_roc_auc_churn_90d"] = M.roc_auc(y, score)
        low, high = M.bootstrap_auc_interval(y, score, accounts, config.bootstrap_resamples, config.seed)
        metrics[f"{key}_roc_auc_churn_90d_ci_low"], metrics[f"{key}_roc_auc_churn_90d_ci_high"] = low, high
    metrics["test_rows_churn_90d"] = float(labeled.sum())
    if truth is not None:
        oracle = oracle_baseline(truth, predictions[["account_id", "as_of"]], 90, churn)
        predictions["oracle_probability"] = oracle
        ok = labeled & np.isfinite(oracle)
        metrics["oracle_test_roc_auc_churn_90d"] = M.roc_auc(
            predictions.loc[ok, "label_churn_90d"].to_numpy(dtype="float64"), oracle[ok])
        metrics["oracle_test_coverage"] = float(ok.sum() / max(labeled.sum(), 1))
    timings["baselines_seconds"] = time.perf_counter() - clock

    notes = [f"landmarks every {config.cadence_days} days; test landmarks {test_dates[0].date()} to "
             f"{test_dates[-1].date()} (follow-up censored at the data's end); training rows end by "
             f"{cutoff.date()}"]
    if dropped:
        notes.append("features left out: " + ", ".join(f"{k} ({v})" for k, v in dropped.items()))
    model = protocol
    train_end = cutoff
    if config.refit:
        clock = time.perf_counter()
        all_rows = S.person_period_rows(events, features)
        model = S.fit_hazard(all_rows, None, names, categorical, config.lgb_params, config.num_boost_round,
                             config.early_stopping_rounds, rounds=protocol.info["best_iteration"],
                             class_bias=protocol.class_bias, baseline_by=config.baseline_by,
                             baseline_prior_rows=config.baseline_prior_rows)
        # the protocol's calibration, fitted on rows the protocol model never trained on (the
        # refit has no held-out row left to fit its own)
        model.hazard_scaling = protocol.hazard_scaling
        if protocol.hazard_scaling is not None:
            model.info["hazard_scaling"] = protocol.hazard_scaling
        timings["refit_seconds"] = time.perf_counter() - clock
        train_end = pd.Timestamp(all_rows["period_end"].max())
        notes.append(f"registered model refitted on all {len(all_rows):,} person-period rows with "
                     f"{protocol.info['best_iteration']} rounds; the test metrics are the protocol model's")
    if protocol.hazard_scaling is not None:
        fitted = protocol.hazard_scaling
        notes.append(f"hazard scaling (per outcome {', '.join(S.CLASSES[1:])}) fitted on "
                     f"{protocol.info.get('hazard_scaling_rows', 0):,} calibration-window person-period rows: "
                     f"scale {', '.join(f'{v:.3f}' for v in fitted['scale'])}; offset "
                     f"{', '.join(f'{v:.3f}' for v in fitted['offset'])}"
                     + (f"; period slope {', '.join(f'{v:.3f}' for v in fitted['period_slope'])}"
                        if any(fitted["period_slope"]) else ""))
    if protocol.baseline is not None:
        fitted_baseline = protocol.hazard_baseline
        assert fitted_baseline is not None
        by = " x ".join(fitted_baseline.by) or "nothing else"
        due = np.exp(fitted_baseline.log_rates[S.RENEWAL_STATES.index("due")][..., S.class_code("churn")])
        later = np.exp(fitted_baseline.log_rates[S.RENEWAL_STATES.index("later")][..., S.class_code("churn")])
        notes.append(f"baseline hazard per renewal state x {by} (prior {fitted_baseline.prior_rows:g} rows): "
                     f"churn per period when the renewal is due {np.array2string(due, precision=4)}, "
                     f"before it {np.array2string(later, precision=4)}"
                     + (f" (levels {', '.join(fitted_baseline.levels[0])})" if fitted_baseline.by else ""))
    if protocol.info.get("early_stopping_iteration") != protocol.info["best_iteration"]:
        notes.append(f"rounds: {protocol.info['best_iteration']} (best calibrated per decile on the "
                     f"calibration window), early stopping's {protocol.info['early_stopping_iteration']}")
    split = {"landmarks": len(landmarks), "first_landmark": landmarks[0].date().isoformat(),
             "train_cutoff": cutoff.date().isoformat(), "test_start": test_dates[0].date().isoformat(),
             "test_end": test_dates[-1].date().isoformat(), "test_landmarks": len(test_dates),
             "train_rows": int((~in_valid).sum()), "validation_rows": int(in_valid.sum())}
    model.info.update({"train_end": train_end.date().isoformat(), "split": split,
                       "metrics": {k: v for k, v in metrics.items() if np.isfinite(v)},
                       "dropped_features": dropped, "period_days": S.PERIOD_DAYS,
                       "periods": S.N_PERIODS, "classes": list(S.CLASSES)})
    fingerprint = {"accounts": int(events["account_id"].nunique()), "observations": int(len(events)),
                   "person_period_rows": int(len(rows)),
                   "events": {c: int((events["event"] == i).sum()) for i, c in enumerate(S.CLASSES)}}
    return SurvivalTrainingResult(model, protocol, config, metrics, predictions, calibration, split, notes,
                                  timings, fingerprint, test_features)


def _fmt(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def model_card(result: SurvivalTrainingResult, version: str | None = None, run_id: str | None = None) -> str:
    """The model card (markdown) of a time-to-event version: what it predicts, how it was
    evaluated, the figures against the null and the binary model, and its limits."""
    m, split = result.metrics, result.split
    name = result.config.registered_name
    lines = [f"# Model card: {name}" + (f" version {version}" if version else ""), ""]
    if run_id:
        lines += [f"MLflow run `{run_id}`.", ""]
    lines += [
        "## What it predicts",
        f"For an active account at as_of: which of {', '.join(S.CLASSES[1:])} happens *first* and in which "
        f"of the next {S.N_PERIODS} periods of {S.PERIOD_DAYS} days (a discrete-time competing-risk model: "
        "LightGBM multiclass hazard on person-period rows). Outputs: the cumulative incidence of each "
        f"outcome by {', '.join(str(d) for d in S.REPORT_DAYS)} days, survival (no event) at those days "
        f"and `{S.EXPECTED_DAYS_COLUMN}`. Survival plus the incidences is 1; incidences rise with time.",
        "",
        "## Evaluation (protocol model, test landmarks)",
        f"Landmarks every {result.config.cadence_days} days from {split['first_landmark']}; training rows "
        f"end by {split['train_cutoff']}; test landmarks {split['test_start']} to {split['test_end']} "
        f"({split['test_landmarks']}), their follow-up censored at the data's end (IPCW metrics).",
        "",
        "| outcome | AUC 30d | AUC 90d | AUC 180d | C-index (180d) | IBS | IBS null (Aalen-Johansen) | "
        "deciles calibrated at 90d |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name_ in S.CLASSES[1:]:
        lines.append(f"| {name_} | {_fmt(m.get(f'test_td_auc_{name_}_30d'))} | "
                     f"{_fmt(m.get(f'test_td_auc_{name_}_90d'))} | {_fmt(m.get(f'test_td_auc_{name_}_180d'))} | "
                     f"{_fmt(m.get(f'test_cindex_{name_}'))} | {_fmt(m.get(f'test_ibs_{name_}'))} | "
                     f"{_fmt(m.get(f'null_test_ibs_{name_}'))} | "
                     f"{m.get(f'test_calibration_within_{name_}_{CALIBRATION_DAYS}d', float('nan')):.0%} |")
    lines += [
        "",
        f"90-day churn on the {int(m.get('test_rows_churn_90d', 0)):,} test rows whose 90 days are observed "
        f"(ROC AUC, 95% bootstrap by account): this model {_fmt(m.get('test_roc_auc_churn_90d'))} "
        f"({_fmt(m.get('test_roc_auc_churn_90d_ci_low'))}-{_fmt(m.get('test_roc_auc_churn_90d_ci_high'))}), "
        f"binary LightGBM on the same rows {_fmt(m.get('binary_test_roc_auc_churn_90d'))} "
        f"({_fmt(m.get('binary_test_roc_auc_churn_90d_ci_low'))}-"
        f"{_fmt(m.get('binary_test_roc_auc_churn_90d_ci_high'))})"
        + (f", simulator oracle {_fmt(m.get('oracle_test_roc_auc_churn_90d'))}"
           if "oracle_test_roc_auc_churn_90d" in m else "") + ".",
        "",
        "## Limits",
        "- Features are those of the landmark; only the period index, days since signup and days to "
        "the renewal date in force move with the period. Later periods rest on older information.",
        f"- Two outcomes first seen in the same {S.PERIOD_DAYS}-day period count in the order "
        f"{', '.join(S.TIE_ORDER)}.",
        "- Contraction and expansion end the follow-up (first event): the churn incidence is that of "
        "churn *before* any other event, a little below the binary model's 'churn within 90 days'.",
        "- Snapshot tables (`churnml convert snapshot`) give one landmark with tenure-based curves; "
        "accounts that churned before the snapshot are absent (left truncation), so incidence by "
        "tenure is biased downward for young cohorts.",
        "",
        "## Notes",
        *[f"- {note}" for note in result.notes],
        "",
        "Time: " + ", ".join(f"{k.removesuffix('_seconds')} {v:.1f} s" for k, v in result.timings.items()),
        "",
    ]
    return "\n".join(lines)


def gate_scores(result: SurvivalTrainingResult, champion: S.SurvivalModel) -> tuple[float, float, int, str]:
    """The champion gate's figures: :data:`PROMOTION_METRIC` (integrated Brier of churn, lower is
    better) of the new protocol model and of ``champion`` on the same test landmarks, those
    after the champion's training span (``info["train_end"]``). Returns ``(new, champion,
    rows, span)``; NaN scores when no landmark is left."""
    preds = result.predictions.reset_index(drop=True)
    features = result.test_features
    if features is None:
        return float("nan"), float("nan"), 0, "no test features kept"
    since = champion.info.get("train_end")
    keep = np.ones(len(preds), dtype=bool) if not since else (
        pd.to_datetime(preds["as_of"]) > pd.Timestamp(since)).to_numpy()
    span = (f"the test landmarks after champion's training span (ending {since})" if since
            else "every test landmark (champion's training span unknown)")
    rows = preds[keep]
    if not len(rows) or not (rows["event"] == S.class_code(S.TIE_ORDER[0])).any():
        return float("nan"), float("nan"), int(len(rows)), span
    frame = rows[["account_id", "as_of"]].merge(features, on=["account_id", "as_of"], how="left")
    t, e, c = (rows[k].to_numpy(dtype="float64") for k in ("time_days", "event", "censor_days"))
    grid = np.asarray(IBS_DAYS, dtype="float64")
    j = [S.report_period(d) for d in IBS_DAYS]
    k = S.class_code(S.TIE_ORDER[0])
    scores = []
    for model in (result.protocol_model, champion):
        _, incidence = model.curves(frame)
        scores.append(SM.integrated_brier(t, e.astype(np.int64), c, k, incidence[:, k - 1, j], grid))
    return scores[0], scores[1], int(len(rows)), span
