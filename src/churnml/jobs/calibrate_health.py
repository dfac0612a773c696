"""``churnml calibrate-health``: re-fit the health score's weights from matured outcomes.

Versioned weight files live under the data home (``churnml.config.home()``)::

    .churnml/health/weights-v1.yaml, weights-v2.yaml, ...   never overwritten
    .churnml/health/adopted                                  the file name in use ("weights-v2.yaml")

Procedure (:func:`calibrate_health`):

1. Observations: weekly as_of dates whose label window ``[as_of, as_of + horizon)`` has matured
   (ends by the data's end, or by ``as_of`` when given: nothing after it is used), with the
   churn label of ``churnml.features.labels.observation_grid``.
2. Split in time: the latest ``test_weeks`` dates are the held-out later window; the fit uses
   the dates at least one horizon before the first test date (so no label window of the fit
   overlaps the test's).
3. ``HealthScore.fit`` on the fit window, starting from (and shrunk toward) the adopted weights
   (``shrinkage``); it refuses with InsufficientDataError below its minimum of churn events.
4. ROC AUC of ``-health_score`` against churn on the test window for the adopted and the
   candidate weights, logged to the MLflow experiment ``churnml-health`` as
   ``current_health_test_roc_auc`` / ``candidate_health_test_roc_auc``.
5. The candidate is written as the next ``weights-v<N>.yaml`` whatever the outcome (the record
   of what was tried) and adopted only when its test AUC is higher.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from churnml.errors import ConfigError, InsufficientDataError, UsageError
from churnml.health.adopted import (  # noqa: F401  (re-exported: the command uses them here)
    ADOPTED_POINTER,
    adopt,
    adopted_path,
    health_dir,
    load_adopted_health,
    weights_files,
)

HEALTH_EXPERIMENT = "churnml-health"
DEFAULT_TEST_WEEKS = 13
DEFAULT_HORIZON_DAYS = 90


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, -score))  # lower health = higher churn risk


@dataclass
class CalibrationResult:
    current_version: str
    candidate_version: str
    current_auc: float
    candidate_auc: float
    adopted: bool
    weights_before: dict[str, float]
    weights_after: dict[str, float]
    weights_path: Path
    fit_dates: tuple[pd.Timestamp, pd.Timestamp]
    test_dates: tuple[pd.Timestamp, pd.Timestamp]
    fit_report: dict = field(default_factory=dict)
    run_id: str | None = None


def split_dates(dates: pd.DatetimeIndex, horizon_days: int, test_weeks: int
                ) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """(fit dates, test dates): the latest ``test_weeks`` dates are the test window; fit dates
    end at least ``horizon_days`` before the first test date."""
    dates = pd.DatetimeIndex(sorted(dates))
    if len(dates) <= test_weeks:
        raise InsufficientDataError(
            f"calibrate-health needs more than {test_weeks} weekly as_of dates with matured "
            f"labels (a {test_weeks}-week held-out window plus a fit window one horizon earlier); "
            f"the book has {len(dates)}.")
    test = dates[-test_weeks:]
    fit = dates[dates <= test[0] - pd.Timedelta(days=horizon_days)]
    if len(fit) == 0:
        raise InsufficientDataError(
            f"calibrate-health: no as_of dates left for fitting one horizon ({horizon_days} days) "
            f"before the held-out window starting {test[0].date()}; the book's labeled history "
            f"spans {dates[0].date()} to {dates[-1].date()}.")
    return fit, test


def calibrate_health(
    book,
    as_of=None,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    test_weeks: int = DEFAULT_TEST_WEEKS,
    shrinkage: float | None = None,
    refit_tiers: bool | None = None,
    min_churn_events: int | None = None,
    log_to_mlflow: bool = True,
    build_features: Callable | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> CalibrationResult:
    """Fit candidate health weights, compare them with the adopted ones on a later held-out
    window, write ``weights-v<N>.yaml`` and adopt it only if its test AUC is higher.

    ``book``: a Book or a data folder. ``as_of``: use only outcomes known by this date (default:
    the data's end). Raises InsufficientDataError when the history or the churn events are too
    few (the adopted weights then stay in use).
    """
    from churnml.features.labels import default_as_of_dates, observation_grid
    from churnml.features.windows import to_as_of
    from churnml.health.score import HealthScore

    stage = on_stage or (lambda name: None)
    if isinstance(book, (str, Path)):
        from churnml.data.io import load_book

        book, _ = load_book(book)
    if build_features is None:
        from churnml.features.build import build_features as default_build_features

        build_features = default_build_features
    if as_of is not None:
        as_of = to_as_of(as_of)
        book = _cut_book(book, as_of)
    stage("placing observations")
    dates = default_as_of_dates(book, horizon_days)
    fit_dates, test_dates = split_dates(dates, horizon_days, test_weeks)
    grid = observation_grid(book, fit_dates.append(test_dates), horizon_days)
    grid = grid[grid["labeled"]].reset_index(drop=True)
    stage(f"building features for {len(grid):,} observations")
    features = build_features(book, fit_dates.append(test_dates))
    features = features.merge(grid[["account_id", "as_of", "churn"]], on=["account_id", "as_of"],
                              how="inner", validate="one_to_one")
    in_test = features["as_of"].isin(test_dates).to_numpy()
    train, test = features[~in_test].reset_index(drop=True), features[in_test].reset_index(drop=True)
    y_test = test["churn"].to_numpy(dtype=float)
    if len(np.unique(y_test)) < 2:
        raise InsufficientDataError(
            f"calibrate-health: the held-out window ({test_dates[0].date()} to "
            f"{test_dates[-1].date()}, {len(test):,} observations) has "
            f"{int(y_test.sum())} churn events; both outcomes are needed to compare weights.")

    current = load_adopted_health()
    stage("fitting candidate weights")
    folder = health_dir()
    n_next = (weights_files(folder)[-1][0] + 1) if weights_files(folder) else 1
    candidate = HealthScore(config=current.to_dict()).fit(
        train.drop(columns=["churn"]), train["churn"].to_numpy(dtype=float),
        shrinkage=shrinkage, refit_tiers=refit_tiers, min_churn_events=min_churn_events,
        version=f"v{n_next}",
    )
    stage("comparing on the held-out window")
    test_features = test.drop(columns=["churn"])
    current_auc = _auc(y_test, current.score(test_features)["health_score"].to_numpy())
    candidate_auc = _auc(y_test, candidate.score(test_features)["health_score"].to_numpy())
    adopted = candidate_auc > current_auc

    path = folder / f"weights-v{n_next}.yaml"
    if path.exists():  # never overwrite a version (a concurrent run took the number)
        raise ConfigError(f"{path} already exists; rerun calibrate-health")
    candidate.save(path)
    if adopted:
        adopt(path.name, folder)
    result = CalibrationResult(
        current_version=str(current.version), candidate_version=str(candidate.version),
        current_auc=current_auc, candidate_auc=candidate_auc, adopted=adopted,
        weights_before={d.name: float(d.weight) for d in current.active_config.dimensions},
        weights_after=dict(candidate.weights_), weights_path=path,
        fit_dates=(fit_dates[0], fit_dates[-1]), test_dates=(test_dates[0], test_dates[-1]),
        fit_report=dict(candidate.fit_report_),
    )
    if log_to_mlflow:
        from churnml.models import registry

        stage("logging to MLflow")
        result.run_id = registry.log_job_run(
            HEALTH_EXPERIMENT,
            params={"current_version": result.current_version,
                    "candidate_version": result.candidate_version,
                    "adopted": adopted, "horizon_days": horizon_days, "test_weeks": test_weeks,
                    "shrinkage": result.fit_report.get("shrinkage"),
                    "fit_window": f"{fit_dates[0].date()}..{fit_dates[-1].date()}",
                    "test_window": f"{test_dates[0].date()}..{test_dates[-1].date()}",
                    **{f"weight_{k}": v for k, v in result.weights_after.items()}},
            metrics={"current_health_test_roc_auc": current_auc,
                     "candidate_health_test_roc_auc": candidate_auc,
                     "fit_churn_events": float(result.fit_report.get("churn_events", 0)),
                     "test_observations": float(len(test)),
                     "test_churn_events": float(y_test.sum())},
            artifacts={"weights": path},
            tags={"churnml.job": "calibrate-health", "adopted": str(adopted).lower()},
            run_name=f"calibrate-health {result.candidate_version}",
        )
    return result


def _cut_book(book, as_of: pd.Timestamp):
    """The book as it was known on ``as_of``: rows dated strictly before it (the time column of
    each table; accounts created before it)."""
    from churnml.data.tables import TABLES, Book

    tables = {}
    for name, frame in book.tables.items():
        spec = TABLES.get(name)
        column = spec.time_column if spec is not None else None
        if name == "accounts":
            column = "created_at"
        if column and column in frame.columns:
            frame = frame[frame[column] < as_of].reset_index(drop=True)
        if name == "invoices" and "paid_at" in frame.columns:  # a later payment is not known yet
            frame = frame.assign(paid_at=frame["paid_at"].where(frame["paid_at"] < as_of))
        tables[name] = frame
    return Book(tables=tables, source=book.source, meta=dict(book.meta))
