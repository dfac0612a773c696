"""``score_frame``: the one function that turns a feature frame into the output rows of the one
output schema (:mod:`churnml.scoring.schema`).

The weekly job (local engine, per chunk), the Spark engine (per account shard) and the HTTP
service all call :func:`score_frame`, so the same account with the same features gets the same
numbers everywhere. It never looks at the other rows of the frame except to align them: every
output row depends only on its own features (and its own earlier scores, for alerts).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Callable, Literal, Mapping, Sequence, overload

import numpy as np
import pandas as pd

from churnml.columns import FrameColumns
from churnml.errors import SchemaError, UsageError
from churnml.features.catalog import Catalog, load_catalog
from churnml.health.score import INSUFFICIENT_DATA_TIER
from churnml.models.model import TargetModel
from churnml.outcomes import OUTCOMES, Outcome
from churnml.scoring.actions import (
    Gates,
    Playbooks,
    expansion_readiness,
    load_playbooks,
    next_best_actions,
)
from churnml.scoring.alerts import alert_lists
from churnml.scoring.compare import health_week_before
from churnml.scoring.protocols import HealthScorer, OutcomeModel, TimeToEventModel
from churnml.scoring.queue import PRIOR, expected_values
from churnml.scoring.schema import (
    SCHEMA_VERSION,
    TIME_TO_EVENT_VERSION_COLUMN,
    output_columns,
    time_to_event_floats,
)

__all__ = ["SCHEMA_VERSION", "catalog_dimensions", "output_columns", "score_frame"]

_CATEGORY_COLUMNS = ("value_tier", "lifecycle_phase", "rfm_segment")


def _clean_reasons(reasons: Sequence[Sequence[Mapping[str, Any]]] | None, n: int) -> list[list[dict]]:
    """Normalise reason records to ``{feature: str, value: float|None, contribution: float,
    text: str}`` (a categorical feature's value is None in ``value``; the text names it)."""
    if reasons is None:
        return [[] for _ in range(n)]
    out = []
    for account in reasons:
        cleaned = []
        for r in account or []:
            value: Any = r.get("value")  # anything a model's explain gave; float or None below
            try:
                value = float(value)
                if math.isnan(value):
                    value = None
            except (TypeError, ValueError):
                value = None
            cleaned.append({
                "feature": str(r.get("feature")),
                "value": value,
                "contribution": float(r.get("contribution") or 0.0),
                "text": str(r.get("text") or ""),
            })
        out.append(cleaned)
    if len(out) != n:
        raise ValueError(f"explain returned {len(out)} reason lists for {n} accounts")
    return out


def _predict_with_reasons(model: OutcomeModel, features: pd.DataFrame,
                          columns: FrameColumns | None = None,
                          matrices: dict[Any, np.ndarray] | None = None
                          ) -> tuple[np.ndarray, list[list[dict]]]:
    """Probabilities and top-3 reasons in one TreeSHAP pass. ``matrices``: encoded matrices
    of ``features`` by ``encoding_key``, shared by the models of one call (filled here)."""
    n = len(features)
    if n == 0:
        return np.zeros(0), []
    reasons: Sequence[Sequence[Mapping[str, Any]]]
    if isinstance(model, TargetModel):  # reads the shared column view (same numbers)
        X = None
        if matrices is not None:
            X = matrices.get(model.encoding_key)
            if X is None:
                X = matrices[model.encoding_key] = model.matrix(features, columns)
                X.setflags(write=False)
        proba, reasons = model.predict_with_reasons(features, top_k=3, columns=columns, matrix=X)
    else:
        proba, reasons = model.predict_with_reasons(features, top_k=3)
    proba = np.asarray(proba, dtype="float64").reshape(-1)
    if len(proba) != n:
        raise ValueError(f"{model!r} returned {len(proba)} probabilities for {n} accounts")
    return proba, _clean_reasons(reasons, n)


def catalog_dimensions(catalog: Catalog | None = None) -> dict[str, str]:
    """feature -> health dimension, from the feature catalog (the default one when None; read
    once per version of the catalog file)."""
    if catalog is not None:
        return {s.name: s.health_dimension for s in catalog.specs if s.health_dimension}
    from churnml.features.catalog import default_catalog_path

    path = default_catalog_path()
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None
    if key is not None and key in _DIMENSIONS_CACHE:
        return dict(_DIMENSIONS_CACHE[key])
    dims = catalog_dimensions(load_catalog())
    if key is not None:
        _DIMENSIONS_CACHE.clear()
        _DIMENSIONS_CACHE[key] = dims
    return dict(dims)


_DIMENSIONS_CACHE: dict[tuple, dict[str, str]] = {}


def _object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-d object array holding each value as is (lists and dicts stay single cells)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _text_or_none(columns: FrameColumns, name: str) -> np.ndarray:
    """A text column as objects with missing values None (as ``astype(object).where(notna,
    None)``), through the shared view for a few text values, else pandas."""
    if columns.n <= _SMALL_ROWS:
        values = columns.objects([name]).get(name, [])
        if all(isinstance(v, str) or v is None or v is pd.NA or (isinstance(v, float) and v != v)
               for v in values):
            return _object_array([v if isinstance(v, str) else None for v in values])
    col = columns.frame[name]
    return col.astype(object).where(col.notna(), None).to_numpy(dtype=object)


def _account_ids(columns: FrameColumns) -> np.ndarray:
    """``features["account_id"].astype(str).to_numpy()``, from the shared view when the ids
    are text already (a request's few accounts)."""
    if columns.n <= _SMALL_ROWS:
        ids = columns.objects(["account_id"]).get("account_id", [])
        if all(isinstance(v, str) for v in ids):
            return _object_array(ids)
    return columns.frame["account_id"].astype(str).to_numpy()


# Rows up to which per-value Python is cheaper than a pandas operation (one HTTP request).
_SMALL_ROWS = 64


@overload
def score_frame(
    features: pd.DataFrame,
    models: Mapping[str, OutcomeModel],
    health: HealthScorer,
    previous: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    *,
    week_before: pd.DataFrame | None = None,
    playbooks: Playbooks | None = None,
    feature_dimensions: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
    timer: Callable[[str], Any] | None = None,
    columns: FrameColumns | None = None,
    output: Literal["frame"] = ...,
    outcomes: Sequence[Outcome] = ...,
    time_to_event: TimeToEventModel | None = ...,
) -> pd.DataFrame: ...


@overload
def score_frame(
    features: pd.DataFrame,
    models: Mapping[str, OutcomeModel],
    health: HealthScorer,
    previous: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    *,
    week_before: pd.DataFrame | None = None,
    playbooks: Playbooks | None = None,
    feature_dimensions: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
    timer: Callable[[str], Any] | None = None,
    columns: FrameColumns | None = None,
    output: Literal["records"],
    outcomes: Sequence[Outcome] = ...,
    time_to_event: TimeToEventModel | None = ...,
) -> list[dict[str, Any]]: ...


@overload
def score_frame(
    features: pd.DataFrame,
    models: Mapping[str, OutcomeModel],
    health: HealthScorer,
    previous: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    *,
    week_before: pd.DataFrame | None = None,
    playbooks: Playbooks | None = None,
    feature_dimensions: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
    timer: Callable[[str], Any] | None = None,
    columns: FrameColumns | None = None,
    output: str,
    outcomes: Sequence[Outcome] = ...,
    time_to_event: TimeToEventModel | None = ...,
) -> pd.DataFrame | list[dict[str, Any]]: ...


def score_frame(
    features: pd.DataFrame,
    models: Mapping[str, OutcomeModel],
    health: HealthScorer,
    previous: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    *,
    week_before: pd.DataFrame | None = None,
    playbooks: Playbooks | None = None,
    feature_dimensions: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
    timer: Callable[[str], Any] | None = None,
    columns: FrameColumns | None = None,
    output: str = "frame",
    outcomes: Sequence[Outcome] = OUTCOMES,
    time_to_event: TimeToEventModel | None = None,
) -> pd.DataFrame | list[dict[str, Any]]:
    """Score accounts: each outcome's probability and reasons, health, alerts, next best
    action, revenue columns.

    ``features``: one row per (account_id, as_of) as built by ``build_features`` (or sent to
    the HTTP service). ``models``: outcome name -> model (:class:`OutcomeModel`, e.g. a
    ``TargetModel``) for the outcomes that have one; an outcome without a model gets null
    probability, empty reasons and a null version. ``health``: a :class:`HealthScorer`
    (``HealthScore``).
    ``previous``: last week's output rows (``account_id, as_of, health_score, health_tier``)
    and ``history``: earlier weeks' rows, both optional (the score-based alerts need them).
    ``week_before``: the compared features (``churnml.scoring.compare``) of the same accounts
    a week before ``as_of``, read from the book point in time; a signal fires an action or an
    alert only when it changed since then, and a health score below ``risk.critical_health``
    is critical only when it was not a week before (the health score of those features).
    None (a lone request) counts every signal and every low health score as new.
    ``catalog``: the feature catalog of the actions' sentences (the default catalog when
    None, re-read when its file changes; the service passes the one it loaded).
    ``timer(stage)``: a context manager around each stage (the benchmark's clock).
    ``columns``: a FrameColumns of ``features`` its caller built along with the frame (the
    service does), else one is made here. ``output``: "frame" (a DataFrame) or "records" (the
    same rows as dicts: the service's JSON path; ``as_of`` a Timestamp, missing text None).
    ``time_to_event``: the competing-risk champion (``churnml-time-to-event``), which fills
    the ``*_probability_<d>d`` columns and the expected days to churn, and its timing reasons
    (``{outcome}_timing_reasons``, worded with ``catalog``); None leaves them null and the
    reasons empty (:func:`~churnml.scoring.schema.time_to_event_columns`). The 90-day ``*_probability``
    columns and everything computed from them stay the binary models'.

    Returns one row per input row, in input order, with the columns of
    :func:`~churnml.scoring.schema.output_columns` (probabilities in [0, 1] or NaN, reasons
    lists of up to 3 ``{feature, value, contribution, text}``, ``alerts`` a list of names,
    ``next_best_action`` a record, revenue columns per outcome, ``schema_version``).
    Small frames (a request's few accounts) and large ones (a chunk of the book) take the
    same steps on the same numbers.
    """
    names = set(features.columns.tolist())
    for column in ("account_id", "as_of"):
        if column not in names:
            raise SchemaError(f"features: column '{column}' is required to score accounts")
    unknown = sorted(set(models) - {o.name for o in outcomes})
    if unknown:
        raise UsageError(f"models for unknown outcomes {unknown}; known: "
                         f"{[o.name for o in outcomes]}")
    playbooks = playbooks if playbooks is not None else load_playbooks()
    if feature_dimensions is None:
        feature_dimensions = catalog_dimensions()
    if output not in ("frame", "records"):
        raise UsageError(f"The 'output' parameter must be 'frame' or 'records'. Got {output!r}.")
    given = columns if columns is not None and columns.frame is features else None
    index = features.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        features = features.reset_index(drop=True)
    n = len(features)
    # Every float64 feature column as a numpy array, taken once and read by every step below.
    columns = given.with_frame(features) if given is not None else FrameColumns(features)
    known_as_of = columns.get("as_of")  # the service adds the array it built the frame from
    if isinstance(known_as_of, np.ndarray) and known_as_of.dtype == "datetime64[ns]":
        as_of = known_as_of
    else:
        as_of_column = features["as_of"]
        if as_of_column.dtype == "datetime64[ns]":
            as_of = as_of_column.to_numpy()
        else:
            as_of = pd.to_datetime(as_of_column).to_numpy(dtype="datetime64[ns]")

    timer = timer or (lambda stage: contextlib.nullcontext())
    with timer("health"):
        parts = health.score_arrays(features, columns=columns)
        dimensions = list(parts.config.dimension_names)
        health_score = np.asarray(parts.score, dtype="float64")
        health_tier = parts.tier_names()
        health_dims = {d: parts.subscores[:, j] for j, d in enumerate(dimensions)}
        dimensions_used = parts.dimensions_used()
        weights_version = str(parts.config.version)
        # the same score a week before (from week_before's compared features): a health
        # score below risk.critical_health is critical only in the week it gets there
        health_before = health_week_before(health, _account_ids(columns), week_before)

    probability: dict[str, np.ndarray] = {}
    reasons: dict[str, list[list[dict]]] = {}
    matrices: dict[Any, np.ndarray] = {}  # models trained on the same features share one
    with timer("models_and_reasons"):
        for outcome in outcomes:
            model = models.get(outcome.name)
            if model is None:
                probability[outcome.name] = np.full(n, np.nan)
                reasons[outcome.name] = [[] for _ in range(n)]
            else:
                probability[outcome.name], reasons[outcome.name] = _predict_with_reasons(
                    model, features, columns, matrices)

    with timer("time_to_event"):
        incidences = _time_to_event_columns(time_to_event, features, outcomes, n)
    with timer("timing_reasons"):
        timing = _timing_reasons(time_to_event, features, columns, outcomes, n, catalog)

    # Alerts and gating read health and features together (detractor, silence, champion...):
    # the health outputs are added to the column view (they shadow same-named features).
    columns.add("health_score", health_score)
    columns.add("health_tier", health_tier)
    columns.add("as_of", as_of)

    with timer("alerts"):
        # The health score's own tiers (a calibrated weights version may re-place them).
        alerts = alert_lists(features, previous, history, config=parts.config,
                             columns=columns, week_before=week_before)
    if len(alerts) != n:
        raise ValueError("alert_lists must return one list per input row")

    with timer("actions"):
        # a score built from too little data is unknown to the gates (never a reason to block)
        unknown = np.asarray(health_tier, dtype=object) == INSUFFICIENT_DATA_TIER
        if unknown.any():
            columns.add("health_score", np.where(unknown, np.nan, health_score))
        gates = Gates.of(features, playbooks, columns)
        expansion_p = probability.get("expansion", np.full(n, np.nan))
        readiness = expansion_readiness(expansion_p, gates.blocked(), playbooks)
        actions = next_best_actions(features, probability, reasons, readiness, gates, playbooks,
                                    feature_dimensions, week_before=week_before,
                                    columns=columns, health_tier=health_tier, catalog=catalog,
                                    health_before=health_before)

    with timer("assemble"):
        mrr_values = columns.float64("mrr", frame_only=True)
        if mrr_values is not None:
            mrr = np.where(np.isnan(mrr_values), 0.0, mrr_values)
        elif "mrr" in names:
            mrr = pd.to_numeric(features["mrr"], errors="coerce").fillna(0.0).to_numpy(dtype="float64")
        else:
            mrr = np.zeros(n)
        data: dict[str, Any] = {"account_id": _account_ids(columns), "as_of": as_of}
        for outcome in outcomes:
            data[outcome.probability_column] = probability[outcome.name]
        data.update(incidences)
        data["health_score"] = health_score
        data["health_tier"] = _object_array(health_tier)
        for d in dimensions:
            data[f"health_{d}"] = health_dims[d]
        # As ``churnml health`` writes it: dimension names joined by "|".
        data["health_dimensions_used"] = _object_array(dimensions_used)
        for outcome in outcomes:
            data[outcome.reasons_column] = _object_array(reasons[outcome.name])
        for outcome in outcomes:
            data[outcome.timing_reasons_column] = _object_array(timing[outcome.name])
        data["alerts"] = _object_array(alerts)
        data["next_best_action"] = _object_array(actions)
        # this week's queue is book-wide (churnml.scoring.queue.assign_queue, run by the
        # weekly job on the whole week): here only what one row gives
        expected_value, expected_text = expected_values(
            [str(a["playbook"]) for a in actions], mrr, probability, playbooks)
        data["expected_value"] = expected_value
        effect_source = np.full(n, PRIOR, dtype=object)
        effect_source[np.isnan(expected_value)] = None
        data["effect_source"] = effect_source
        data["queue_status"] = np.full(n, None, dtype=object)
        data["queue_rank"] = np.full(n, None, dtype=object)
        data["queue_reason"] = expected_text
        data["holdout"] = np.full(n, None, dtype=object)
        data["policy_version"] = playbooks.policy_version
        for outcome in outcomes:
            model = models.get(outcome.name)
            data[outcome.version_column] = None if model is None else str(model.version)
        data[TIME_TO_EVENT_VERSION_COLUMN] = (None if time_to_event is None
                                              else str(time_to_event.version))
        data["health_weights_version"] = weights_version
        data["mrr"] = mrr
        for outcome in outcomes:
            share = playbooks.typical_share.get(outcome.name, 1.0)
            data[outcome.value_column] = probability[outcome.name] * mrr * share
        for column in _CATEGORY_COLUMNS:
            data[column] = (_text_or_none(columns, column) if column in names
                            else np.full(n, None, dtype=object))
        data["expansion_readiness"] = readiness
        data["schema_version"] = SCHEMA_VERSION
        expected = output_columns(dimensions, outcomes)
        if list(data) != expected:  # a column added here must be declared in the schema
            raise ValueError(f"score_frame columns {list(data)} differ from the declared "
                             f"output schema {expected}")
        if output == "records":
            return _records(data, n)
        out = pd.DataFrame(data)
        # text with gaps: one dtype whether or not the frame's rows happen to all be null
        out["queue_reason"] = pd.Series(expected_text, dtype="str")
        out["effect_source"] = pd.Series(data["effect_source"], dtype="str")
    return out


@functools.lru_cache(maxsize=8)
def _time_to_event_floats(outcomes: tuple[Outcome, ...]) -> list[str]:
    """The time-to-event model's float columns (declared once; cached: a request's path)."""
    return time_to_event_floats(outcomes)


def _time_to_event_columns(model: TimeToEventModel | None, features: pd.DataFrame,
                           outcomes: Sequence[Outcome], n: int) -> dict[str, np.ndarray]:
    """The time-to-event model's float columns (all NaN without the model), in schema order."""
    names = _time_to_event_floats(tuple(outcomes))
    if model is None or n == 0:
        return {name: np.full(n, np.nan) for name in names}
    predicted = model.predict(features)
    missing = [name for name in names if name not in predicted.columns]
    if missing or len(predicted) != n:
        raise ValueError(f"{model!r} returned {len(predicted)} rows without columns {missing} "
                         f"for {n} accounts")
    return {name: predicted[name].to_numpy(dtype="float64") for name in names}


def _timing_reasons(model: TimeToEventModel | None, features: pd.DataFrame,
                    columns: FrameColumns, outcomes: Sequence[Outcome], n: int,
                    catalog: Catalog | None) -> dict[str, list[list[dict]]]:
    """Per outcome, the time-to-event model's reasons for its hazard in the current period
    (``TimeToEventModel.timing_reasons``), cleaned as the outcome models' reasons; no reasons
    without the model."""
    if model is None or n == 0:
        return {o.name: [[] for _ in range(n)] for o in outcomes}
    given = model.timing_reasons(features, 3, catalog=catalog, columns=columns)
    missing = [o.name for o in outcomes if o.name not in given]
    if missing:
        raise ValueError(f"{model!r} gave no timing reasons for outcomes {missing}")
    return {o.name: _clean_reasons(given[o.name], n) for o in outcomes}


def _records(data: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """The rows of ``pd.DataFrame(data)`` as dicts (Python values; ``as_of`` Timestamps)."""
    values = {}
    for name, column in data.items():
        if name == "as_of":
            values[name] = [pd.Timestamp(v) for v in column]
        elif isinstance(column, np.ndarray):
            values[name] = column.tolist()
        else:  # a scalar the frame would repeat on every row
            values[name] = [column] * n
    names = list(values)
    return [{name: values[name][i] for name in names} for i in range(n)]
