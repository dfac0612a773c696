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

from churnml.jobs.actions import (
    Playbooks,
    expansion_gates,
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


def _predict_with_reasons(model, features: pd.DataFrame) -> tuple[np.ndarray, list[list[dict]]]:
    """Probabilities and top-3 reasons; one TreeSHAP pass when the model offers it."""
    n = len(features)
    if n == 0:
        return np.zeros(0), []
    if hasattr(model, "predict_with_reasons"):
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
    """feature -> health dimension, from the feature catalog (empty when it has none)."""
    try:
        from churnml.features.catalog import load_catalog
    except ModuleNotFoundError:
        return {}
    catalog = load_catalog()
    specs = getattr(catalog, "specs", None) or getattr(catalog, "features", None) or list(catalog)
    return {s.name: s.health_dimension for s in specs if getattr(s, "health_dimension", None)}


def _default_alerts(current, previous, history, health):
    from churnml.health.alerts import compute_alerts

    # The health score's own tiers (a calibrated weights version may re-place them).
    return compute_alerts(current, previous, history, config=getattr(health, "active_config", None))


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
    # alerts_fn(current, previous, history, health) -> one list of names per row; default
    # churnml.health.alerts.compute_alerts with the health score's configuration.
    # timer(stage) -> context manager around each stage (health, models_and_reasons, alerts,
    # actions, assemble): the benchmark's per-stage clock; nothing by default.
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
    for column in ("account_id", "as_of"):
        if column not in features.columns:
            from churnml.errors import SchemaError

            raise SchemaError(f"features: column '{column}' is required to score accounts")
    playbooks = playbooks if playbooks is not None else load_playbooks()
    if feature_dimensions is None:
        # the catalog's feature -> dimension map (as the weekly job and the service use),
        # else the one stored with the churn model
        feature_dimensions = _feature_dimensions() \
            or dict(getattr(churn_model, "dimensions", None) or {})
    alerts_fn = alerts_fn or _default_alerts
    features = features.reset_index(drop=True)
    n = len(features)

    timer = timer or (lambda stage: contextlib.nullcontext())
    with timer("health"):
        health_frame = health.score(features).reset_index(drop=True)
    if len(health_frame) != n or not (
        health_frame["account_id"].astype(str).to_numpy() == features["account_id"].astype(str).to_numpy()
    ).all():
        raise ValueError("health.score must return one row per input row, in input order")
    dimensions = list(getattr(health, "dimension_names", None) or [
        c[len("health_"):] for c in health_frame.columns
        if c.startswith("health_") and c not in _HEALTH_META])

    with timer("models_and_reasons"):
        churn_p, churn_reasons = _predict_with_reasons(churn_model, features)
        expansion_p, expansion_reasons = _predict_with_reasons(expansion_model, features)

    # Alerts and gating read health and features together (detractor, silence, champion...).
    current = pd.concat(
        [features.drop(columns=[c for c in health_frame.columns if c in features.columns
                                and c not in ("account_id", "as_of")]),
         health_frame.drop(columns=["account_id", "as_of"])],
        axis=1,
    )
    with timer("alerts"):
        alerts = alerts_fn(current, previous, history, health)
    alerts = [list(dict.fromkeys(str(a) for a in (x if x is not None else []))) for x in list(alerts)]
    if len(alerts) != n:
        raise ValueError("compute_alerts must return one list per input row")

    with timer("actions"):
        gates = expansion_gates(current, playbooks)
        readiness = expansion_readiness(expansion_p, gates.any(axis=1).to_numpy(), playbooks)
        actions = next_best_actions(current, churn_p, churn_reasons, readiness, gates, playbooks,
                                    feature_dimensions, previous=previous)

    mrr = (pd.to_numeric(features["mrr"], errors="coerce").fillna(0.0).to_numpy(dtype="float64")
           if "mrr" in features.columns else np.zeros(n))
    out = pd.DataFrame({
        "account_id": features["account_id"].astype(str).to_numpy(),
        "as_of": pd.to_datetime(features["as_of"]).to_numpy(dtype="datetime64[ns]"),
        "churn_probability": churn_p,
        "expansion_probability": expansion_p,
        "health_score": health_frame["health_score"].to_numpy(dtype="float64"),
        "health_tier": health_frame["health_tier"].astype(str).to_numpy(dtype=object),
    })
    for d in dimensions:
        out[f"health_{d}"] = pd.to_numeric(health_frame[f"health_{d}"]).to_numpy(dtype="float64")
    # As ``churnml health`` writes it: dimension names joined by "|".
    out["health_dimensions_used"] = (
        health_frame["health_dimensions_used"].astype(str).to_numpy(dtype=object)
        if "health_dimensions_used" in health_frame else "|".join(dimensions))
    out["churn_reasons"] = churn_reasons
    out["expansion_reasons"] = expansion_reasons
    out["alerts"] = alerts
    out["next_best_action"] = actions
    out["churn_model_version"] = str(churn_model.version)
    out["expansion_model_version"] = str(expansion_model.version)
    out["health_weights_version"] = (
        health_frame["health_weights_version"].astype(str).to_numpy(dtype=object)
        if "health_weights_version" in health_frame else _health_version(health))
    out["mrr"] = mrr
    out["mrr_at_risk"] = churn_p * mrr
    out["expected_expansion_mrr"] = expansion_p * mrr * playbooks.typical_expansion_share
    for column in _CATEGORY_COLUMNS:
        out[column] = (features[column].astype(object).where(features[column].notna(), None)
                       .to_numpy(dtype=object) if column in features.columns
                       else np.full(n, None, dtype=object))
    out["expansion_readiness"] = readiness
    out["schema_version"] = SCHEMA_VERSION
    return out[output_columns(dimensions)]
