"""``score_frame``: the one function that turns a feature frame into DESIGN.md's output rows.

The weekly job (local engine, per chunk), the Spark engine (per account shard) and the HTTP
service all call :func:`score_frame`, so the same account with the same features gets the same
numbers everywhere. It never looks at the other rows of the frame except to align them: every
output row depends only on its own features (and its own earlier scores, for alerts).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from churnml.columns import FrameColumns
from churnml.jobs.actions import (
    Gates,
    Playbooks,
    expansion_readiness,
    load_playbooks,
    next_best_actions,
)

SCHEMA_VERSION = 1

# Output columns in order; ``health_<dimension>`` columns go where HEALTH_DIMENSIONS_AT is.
LEADING_COLUMNS = ["account_id", "as_of", "churn_probability", "expansion_probability",
                   "health_score", "health_tier"]
TRAILING_COLUMNS = ["health_dimensions_used", "churn_reasons", "expansion_reasons", "alerts",
                    "next_best_action", "churn_model_version", "expansion_model_version",
                    "health_weights_version", "mrr", "mrr_at_risk", "expected_expansion_mrr",
                    "value_tier", "lifecycle_phase", "rfm_segment", "expansion_readiness",
                    "schema_version"]
_CATEGORY_COLUMNS = ("value_tier", "lifecycle_phase", "rfm_segment")
_HEALTH_META = ("health_score", "health_tier", "health_dimensions_used", "health_overrides",
                "health_weights_version")


def output_columns(dimensions: Sequence[str]) -> list[str]:
    """The output columns for a health score with these dimensions, in order."""
    return LEADING_COLUMNS + [f"health_{d}" for d in dimensions] + TRAILING_COLUMNS


def _clean_reasons(reasons: Sequence[Sequence[Mapping[str, Any]]] | None, n: int) -> list[list[dict]]:
    """Normalise reason records to ``{feature: str, value: float|None, contribution: float,
    text: str}`` (a categorical feature's value is None in ``value``; the text names it)."""
    if reasons is None:
        return [[] for _ in range(n)]
    out = []
    for account in reasons:
        cleaned = []
        for r in account or []:
            value = r.get("value")
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


def _predict_with_reasons(model, features: pd.DataFrame,
                          columns: FrameColumns | None = None) -> tuple[np.ndarray, list[list[dict]]]:
    """Probabilities and top-3 reasons; one TreeSHAP pass when the model offers it."""
    n = len(features)
    if n == 0:
        return np.zeros(0), []
    from churnml.models.model import TargetModel

    if isinstance(model, TargetModel):  # reads the shared column view (same numbers)
        proba, reasons = model.predict_with_reasons(features, top_k=3, columns=columns)
    elif hasattr(model, "predict_with_reasons"):
        proba, reasons = model.predict_with_reasons(features, top_k=3)
    else:
        proba, reasons = model.predict_proba(features), model.explain(features, top_k=3)
    proba = np.asarray(proba, dtype="float64").reshape(-1)
    if len(proba) != n:
        raise ValueError(f"{model!r} returned {len(proba)} probabilities for {n} accounts")
    return proba, _clean_reasons(reasons, n)


def _health_version(health) -> str:
    for attr in ("version_", "version", "weights_version"):
        value = getattr(health, attr, None)
        if value is not None and not callable(value):
            return str(value)
    config = getattr(health, "config", None)
    if isinstance(config, Mapping) and config.get("version") is not None:
        return str(config["version"])
    version = getattr(config, "version", None)
    return str(version) if version is not None else "default"


def _feature_dimensions() -> dict[str, str]:
    """feature -> health dimension, from the feature catalog (empty when it has none); read
    once per version of the catalog file."""
    try:
        from churnml.features.catalog import load_catalog
    except ModuleNotFoundError:
        return {}
    from churnml.config import features_dir

    path = features_dir() / "catalog.yaml"
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None
    if key is not None and key in _DIMENSIONS_CACHE:
        return dict(_DIMENSIONS_CACHE[key])
    catalog = load_catalog()
    specs = getattr(catalog, "specs", None) or getattr(catalog, "features", None) or list(catalog)
    dims = {s.name: s.health_dimension for s in specs if getattr(s, "health_dimension", None)}
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


def score_frame(
    features: pd.DataFrame,
    churn_model,
    expansion_model,
    health,
    previous: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    *,
    playbooks: Playbooks | None = None,
    feature_dimensions: Mapping[str, str] | None = None,
    alerts_fn: Callable | None = None,
    timer: Callable[[str], Any] | None = None,
    columns: FrameColumns | None = None,
    output: str = "frame",
    # alerts_fn(current, previous, history, health) -> one list of names per row; default
    # churnml.health.alerts.compute_alerts with the health score's configuration.
    # timer(stage) -> context manager around each stage (health, models_and_reasons, alerts,
    # actions, assemble): the benchmark's per-stage clock; nothing by default.
    # columns: a FrameColumns of ``features`` its caller built along with the frame (the
    # service does), else one is made here. output: "frame" (a DataFrame, the contract) or
    # "records" (the same rows as a list of {column: value} dicts, no DataFrame: the
    # service's JSON path; ``as_of`` a Timestamp, missing text None).
    # Small frames (a request's few accounts) and large ones (a chunk of the book) take the
    # same steps on the same numbers: float64 columns are read once as arrays (FrameColumns),
    # and the health score, models, alerts and actions read those instead of pandas Series.
) -> pd.DataFrame:
    """Score accounts: probabilities, health, reasons, alerts, next best action, revenue.

    ``features``: one row per (account_id, as_of) as built by ``build_features`` (or sent to the
    HTTP service). ``churn_model`` / ``expansion_model``: ``TargetModel``-like objects
    (``predict_proba``, ``explain``, ``version``). ``health``: a ``HealthScore``.
    ``previous``: last week's output rows (the latest earlier partition), ``history``: all
    earlier output rows (``account_id, as_of, health_score, ...``), both optional; alerts that
    need them are simply not raised without them.

    Returns one row per input row, in input order, with the columns of :func:`output_columns`:
    probabilities in [0, 1]; ``health_score`` 0-100; ``churn_reasons``/``expansion_reasons``
    lists of up to 3 ``{feature, value, contribution, text}`` records; ``alerts`` a list of
    alert names; ``next_best_action`` a record (see ``actions.next_best_actions``); ``mrr`` the
    current MRR (0 when the frame has none); ``mrr_at_risk = churn_probability * mrr``;
    ``expected_expansion_mrr = expansion_probability * mrr * typical_expansion_share``
    (``playbooks.yaml``); ``expansion_readiness`` one of ready_now, ready_soon, needs_nurture,
    not_ready; ``schema_version`` :data:`SCHEMA_VERSION`.
    """
    names = set(features.columns.tolist())
    for column in ("account_id", "as_of"):
        if column not in names:
            from churnml.errors import SchemaError

            raise SchemaError(f"features: column '{column}' is required to score accounts")
    playbooks = playbooks if playbooks is not None else load_playbooks()
    if feature_dimensions is None:
        # the catalog's feature -> dimension map (as the weekly job and the service use),
        # else the one stored with the churn model
        feature_dimensions = _feature_dimensions() \
            or dict(getattr(churn_model, "dimensions", None) or {})
    if output not in ("frame", "records"):
        from churnml.errors import UsageError

        raise UsageError(f"The 'output' parameter must be 'frame' or 'records'. Got {output!r}.")
    given = columns if columns is not None and columns.frame is features else None
    features = features.reset_index(drop=True)
    n = len(features)
    # Every float64 feature column as a numpy array, taken once and read by every step below.
    columns = given.with_frame(features) if given is not None else FrameColumns(features)
    as_of = pd.to_datetime(features["as_of"]).to_numpy(dtype="datetime64[ns]")

    timer = timer or (lambda stage: contextlib.nullcontext())
    health_frame = None
    with timer("health"):
        if hasattr(health, "score_arrays"):
            parts = health.score_arrays(features, columns=columns)
            dimensions = list(parts.config.dimension_names)
            health_score = np.asarray(parts.score, dtype="float64")
            health_tier = parts.tier_names()
            health_dims = {d: parts.subscores[:, j] for j, d in enumerate(dimensions)}
            dimensions_used = parts.dimensions_used()
            weights_version = str(parts.config.version)
            health_extra = {}
        else:  # any other health score: its frame, checked
            health_frame = health.score(features).reset_index(drop=True)
            if len(health_frame) != n or not (
                health_frame["account_id"].astype(str).to_numpy()
                == features["account_id"].astype(str).to_numpy()
            ).all():
                raise ValueError("health.score must return one row per input row, in input order")
            dimensions = list(getattr(health, "dimension_names", None) or [
                c[len("health_"):] for c in health_frame.columns
                if c.startswith("health_") and c not in _HEALTH_META])
            health_score = health_frame["health_score"].to_numpy(dtype="float64")
            health_tier = health_frame["health_tier"].astype(str).tolist()
            health_dims = {d: pd.to_numeric(health_frame[f"health_{d}"]).to_numpy(dtype="float64")
                           for d in dimensions}
            dimensions_used = (health_frame["health_dimensions_used"].astype(str).tolist()
                               if "health_dimensions_used" in health_frame
                               else "|".join(dimensions))
            weights_version = (health_frame["health_weights_version"].astype(str).tolist()
                               if "health_weights_version" in health_frame
                               else _health_version(health))
            health_extra = {c: health_frame[c] for c in health_frame.columns
                            if c not in ("account_id", "as_of")}

    with timer("models_and_reasons"):
        churn_p, churn_reasons = _predict_with_reasons(churn_model, features, columns)
        expansion_p, expansion_reasons = _predict_with_reasons(expansion_model, features, columns)

    # Alerts and gating read health and features together (detractor, silence, champion...):
    # the health outputs are added to the column view (they shadow same-named features).
    for name, values in health_extra.items():
        columns.add(name, values.to_numpy() if values.dtype == "float64" else values)
    columns.add("health_score", health_score)
    columns.add("health_tier", health_tier)
    columns.add("as_of", as_of)

    with timer("alerts"):
        if alerts_fn is None:
            from churnml.health.alerts import compute_alerts

            # The health score's own tiers (a calibrated weights version may re-place them).
            alerts = compute_alerts(features, previous, history,
                                    config=getattr(health, "active_config", None),
                                    columns=columns)
        else:  # a caller's function gets the frame of features and health together
            if health_frame is None:
                health_frame = health.score(features).reset_index(drop=True)
            current = pd.concat(
                [features.drop(columns=[c for c in health_frame.columns if c in features.columns
                                        and c not in ("account_id", "as_of")]),
                 health_frame.drop(columns=["account_id", "as_of"])],
                axis=1,
            )
            alerts = alerts_fn(current, previous, history, health)
    alerts = [list(dict.fromkeys(str(a) for a in (x if x is not None else []))) for x in list(alerts)]
    if len(alerts) != n:
        raise ValueError("compute_alerts must return one list per input row")

    with timer("actions"):
        gates = Gates.of(features, playbooks, columns)
        readiness = expansion_readiness(expansion_p, gates.blocked(), playbooks)
        actions = next_best_actions(features, churn_p, churn_reasons, readiness, gates, playbooks,
                                    feature_dimensions, previous=previous, columns=columns)

    with timer("assemble"):
        mrr_values = columns.float64("mrr", frame_only=True)
        if mrr_values is not None:
            mrr = np.where(np.isnan(mrr_values), 0.0, mrr_values)
        elif "mrr" in names:
            mrr = pd.to_numeric(features["mrr"], errors="coerce").fillna(0.0).to_numpy(dtype="float64")
        else:
            mrr = np.zeros(n)
        data: dict[str, Any] = {
            "account_id": _account_ids(columns),
            "as_of": as_of,
            "churn_probability": churn_p,
            "expansion_probability": expansion_p,
            "health_score": health_score,
            "health_tier": _object_array(health_tier),
        }
        for d in dimensions:
            data[f"health_{d}"] = health_dims[d]
        # As ``churnml health`` writes it: dimension names joined by "|".
        data["health_dimensions_used"] = (_object_array(dimensions_used)
                                          if isinstance(dimensions_used, list) else dimensions_used)
        data["churn_reasons"] = _object_array(churn_reasons)
        data["expansion_reasons"] = _object_array(expansion_reasons)
        data["alerts"] = _object_array(alerts)
        data["next_best_action"] = _object_array(actions)
        data["churn_model_version"] = str(churn_model.version)
        data["expansion_model_version"] = str(expansion_model.version)
        data["health_weights_version"] = (_object_array(weights_version)
                                          if isinstance(weights_version, list) else weights_version)
        data["mrr"] = mrr
        data["mrr_at_risk"] = churn_p * mrr
        data["expected_expansion_mrr"] = expansion_p * mrr * playbooks.typical_expansion_share
        for column in _CATEGORY_COLUMNS:
            data[column] = (_text_or_none(columns, column) if column in names
                            else np.full(n, None, dtype=object))
        data["expansion_readiness"] = readiness
        data["schema_version"] = SCHEMA_VERSION
        if output == "records":
            return _records(data, n)
        out = pd.DataFrame(data)
    return out


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
