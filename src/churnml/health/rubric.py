"""The health score's arithmetic: dimension sub-scores from banded signals, their weighted
mean over the dimensions with data, the overrides and the tiers.

Pure functions on arrays, shared by scoring (``churnml.health.score.HealthScore``) and weight
fitting (``churnml.health.fit``), so the two can never compute a score differently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.columns import FrameColumns
from churnml.errors import SchemaError, format_examples
from churnml.health.config import HealthConfig

#: Names of the overrides, in the order they are applied.
OVERRIDE_NAMES = ["nps_detractor_cap", "no_contact_penalty"]

#: The tier of an account whose known dimensions carry less than the configuration's
#: ``min_known_weight_share`` of the weight (its code is ``len(config.tiers)``).
INSUFFICIENT_DATA_TIER = "insufficient_data"

#: Separator of ``health_dimensions_used`` ("usage|engagement|payment"; "" when none).
DIMENSION_SEPARATOR = "|"


def _numeric_column(features: pd.DataFrame, name: str,
                    columns: FrameColumns | None = None) -> np.ndarray | None:
    """The column as float64 (NaN = no data), or None when the column is absent.

    A column that holds non-numeric values is a SchemaError (a wrong feature, not "no data").
    ``columns``: a FrameColumns of ``features`` (a float64 column is read from it as is)."""
    if columns is not None:
        fast = columns.float64(name, frame_only=True)
        if fast is not None:
            return fast
        if not columns.in_frame(name):
            return None
    elif name not in features.columns:
        return None
    col = features[name]
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=float, na_value=np.nan)
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        raise SchemaError(
            f"features: column {name!r} must be numeric for the health score; "
            f"{int(bad.sum())} bad values, e.g. {format_examples(col[bad].unique())}"
        )
    return converted.to_numpy(dtype=float, na_value=np.nan)


def dimension_subscores(features: pd.DataFrame, config: HealthConfig,
                        columns: FrameColumns | None = None) -> np.ndarray:
    """Sub-score (0-100) of each dimension for each row, shape ``(rows, dimensions)``.

    A signal whose feature is absent or NaN for a row is left out and the remaining signal
    weights of its dimension re-normalised; a dimension with no usable signal is NaN."""
    n = len(features)
    bands = config.compiled.bands  # every signal with weight > 0, as arrays
    values = np.full((n, len(bands.features)), np.nan)  # an absent feature: no data
    for k, feature in enumerate(bands.features):
        column = _numeric_column(features, feature, columns)
        if column is not None:
            values[:, k] = column
    have = ~np.isnan(values)
    with np.errstate(invalid="ignore"):  # NaN compares False: no band, and masked below
        # the band of each value: how many thresholds it reaches (np.searchsorted "right")
        band = (values[:, :, None] >= bands.upper[None, :, :]).sum(axis=2)
    score = bands.scores[bands.offsets[None, :] + band]
    # Appended: a zero column for dimensions with fewer signals than the longest one.
    part = np.zeros((n, len(bands.features) + 1))
    weight = np.zeros((n, len(bands.features) + 1))
    part[:, :-1] = np.where(have, score, 0.0) * bands.weights
    weight[:, :-1] = have * bands.weights
    num = np.zeros((n, len(config.dimensions)))
    den = np.zeros((n, len(config.dimensions)))
    for position in bands.positions:  # each dimension's signals in order: the same sums
        num += part[:, position]
        den += weight[:, position]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def combine(subscores: np.ndarray, weights: np.ndarray, neutral: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of the available sub-scores (weights re-normalised per row).

    Returns ``(score, used)``: ``used[i, j]`` is True when dimension j has data and weight > 0.
    Rows with no used dimension get ``neutral``."""
    used = ~np.isnan(subscores) & (weights > 0)[None, :]
    den = used @ weights
    num = np.where(used, subscores, 0.0) @ weights
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(den > 0, num / den, neutral)
    return score, used


def apply_overrides(score: np.ndarray, features: pd.DataFrame, config: HealthConfig,
                    columns: FrameColumns | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply the overrides (NPS detractor cap, then the no-contact penalty), clip to [0, 100].

    Returns ``(score, applied)`` where ``applied[:, k]`` says whether override k
    (:data:`OVERRIDE_NAMES`) held for the row."""
    n = len(score)
    applied = np.zeros((n, 2), dtype=bool)
    score = score.astype(float).copy()
    cap = config.overrides["nps_detractor_cap"]
    if cap.get("enabled", True):
        nps = _numeric_column(features, cap["feature"], columns)
        flag = _numeric_column(features, cap["flag_feature"], columns) if cap.get("flag_feature") else None
        detractor = np.zeros(n, dtype=bool)
        if flag is not None:
            detractor = np.nan_to_num(flag, nan=0.0) >= 0.5
        if nps is not None:
            # The latest response decides when known: a newer non-detractor lifts the cap.
            detractor = np.where(np.isnan(nps), detractor, nps <= cap["detractor_max"])
        score = np.where(detractor, np.minimum(score, cap["cap"]), score)
        applied[:, 0] = detractor
    pen = config.overrides["no_contact_penalty"]
    if pen.get("enabled", True):
        days = _numeric_column(features, pen["feature"], columns)
        if days is not None:
            silent = np.nan_to_num(days, nan=-np.inf) >= pen["min_days"]
            score = np.where(silent, score - pen["penalty"], score)
            applied[:, 1] = silent
    return np.clip(score, 0.0, 100.0), applied


def tier_codes(score: np.ndarray, config: HealthConfig) -> np.ndarray:
    """Index into ``config.tiers`` (0 = top) of each unrounded score; lower bounds inclusive."""
    mins = config.compiled.tier_mins_ascending
    idx = np.searchsorted(mins, score, side="right") - 1
    return len(mins) - 1 - np.clip(idx, 0, len(mins) - 1)


def known_weight_share(used: np.ndarray, config: HealthConfig) -> np.ndarray:
    """Per row, the share of the total dimension weight carried by dimensions with data."""
    weights = config.compiled.weights
    total = float(weights.sum())
    return (used @ weights) / total if total > 0 else np.zeros(len(used))


def tier_codes_known(score: np.ndarray, used: np.ndarray, config: HealthConfig) -> np.ndarray:
    """:func:`tier_codes`, with ``len(config.tiers)`` (:data:`INSUFFICIENT_DATA_TIER`) for rows
    whose known dimensions carry less than ``min_known_weight_share`` of the weight."""
    codes = tier_codes(score, config)
    short = known_weight_share(used, config) < config.min_known_weight_share - 1e-12
    return np.where(short, len(config.tiers), codes)


def assign_tiers(score: np.ndarray, config: HealthConfig) -> np.ndarray:
    """Tier name of each (unrounded) score; a tier starts at its ``min`` (inclusive)."""
    names = np.array([t.name for t in config.tiers], dtype=object)
    return names[tier_codes(score, config)]
