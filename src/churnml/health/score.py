"""The rule-based health score: dimension sub-scores, re-normalisation, overrides and tiers.

:class:`HealthScore` is a scikit-learn-style estimator. Its constructor only stores the
configuration; :meth:`HealthScore.score` turns a feature frame (``churnml features`` output:
``account_id, as_of`` then feature columns) into the output of DESIGN.md; :meth:`HealthScore.fit`
re-learns the dimension weights (``weights_``) from observed churn (see ``churnml.health.fit``).

Everything is vectorised over rows (one ``searchsorted`` per signal), and a row's score depends
only on that row, so batch, HTTP and Spark give the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np
import pandas as pd
import yaml

from churnml.columns import FrameColumns
from churnml.errors import ConfigError, NotFittedError, SchemaError, format_examples
from churnml.health.config import HealthConfig, load_health_config

#: Names of the overrides, in the order they are applied.
OVERRIDE_NAMES = ["nps_detractor_cap", "no_contact_penalty"]

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
    out = np.full((n, len(config.dimensions)), np.nan)
    for j, signals in enumerate(config.compiled.signals):  # signals with weight > 0
        num = np.zeros(n)
        den = np.zeros(n)
        for feature, weight, sig in signals:
            values = _numeric_column(features, feature, columns)
            if values is None:
                continue
            band = sig.band_scores(values)
            have = ~np.isnan(band)
            num += np.where(have, band, 0.0) * weight
            den += have * weight
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(den > 0, num / den, np.nan)
    return out


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


def assign_tiers(score: np.ndarray, config: HealthConfig) -> np.ndarray:
    """Tier name of each (unrounded) score; a tier starts at its ``min`` (inclusive)."""
    names = np.array([t.name for t in config.tiers], dtype=object)
    return names[tier_codes(score, config)]


def _codes_to_str(codes: np.ndarray, labels: list[str]) -> pd.Series:
    """A ``str`` Series taking ``labels[code]`` per row (fast: a take on a tiny array)."""
    lookup = pd.array(labels, dtype="str")
    return pd.Series(lookup.take(codes))


def _joined(used: np.ndarray, names: list[str]) -> pd.Series:
    """'|'-joined names of the True columns per row, through a bitmask code per row."""
    codes = (used.astype(np.int64) << np.arange(used.shape[1], dtype=np.int64)).sum(axis=1)
    labels = [DIMENSION_SEPARATOR.join(n for j, n in enumerate(names) if c >> j & 1)
              for c in range(1 << used.shape[1])]
    return _codes_to_str(codes, labels)


class HealthArrays(NamedTuple):
    """What :meth:`HealthScore.score_arrays` returns (see there)."""

    config: HealthConfig
    score: np.ndarray
    tier_codes: np.ndarray
    subscores: np.ndarray
    used: np.ndarray
    overrides: np.ndarray

    def dimensions_used(self) -> list[str]:
        """``health_dimensions_used`` per row ('|'-joined, as :meth:`HealthScore.score`)."""
        return _joined_list(self.used, self.config.dimension_names)

    def tier_names(self) -> list[str]:
        names = self.config.compiled.tier_names
        return [names[c] for c in self.tier_codes.tolist()]


def _joined_list(used: np.ndarray, names: list[str]) -> list[str]:
    codes = (used.astype(np.int64) << np.arange(used.shape[1], dtype=np.int64)).sum(axis=1)
    labels: dict[int, str] = {}
    out = []
    for c in codes.tolist():
        label = labels.get(c)
        if label is None:
            label = labels[c] = DIMENSION_SEPARATOR.join(n for j, n in enumerate(names) if c >> j & 1)
        out.append(label)
    return out


class HealthScore:
    """Rule-based account health score, 0-100, with tiers (scikit-learn style).

    ``config``: None (``features/health_score.yaml``), a YAML path, a dict or a HealthConfig;
    ``preset``: a named alternative weighting of the file's ``presets`` section. The
    constructor only stores them; they are validated on first use (ConfigError).

    Unfitted, the score uses the configuration's weights; after :meth:`fit` it uses the
    re-learned ``weights_`` (and ``tiers_``), and ``weights_version_`` names them.
    """

    def __init__(self, config: Any = None, preset: str | None = None) -> None:
        self.config = config
        self.preset = preset

    # -- parameters (scikit-learn protocol) --------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"config": self.config, "preset": self.preset}

    def set_params(self, **params: Any) -> "HealthScore":
        for key, value in params.items():
            if key not in ("config", "preset"):
                raise ConfigError(f"Invalid parameter {key!r} for HealthScore; valid: ['config', 'preset'].")
            setattr(self, key, value)
        self.__dict__.pop("_base", None)
        return self

    # -- configuration -----------------------------------------------------------------------
    @property
    def base_config(self) -> HealthConfig:
        """The validated configuration given to the constructor (cached)."""
        cached = self.__dict__.get("_base")
        key = (id(self.config), self.preset)
        if cached is None or cached[0] != key:
            cached = (key, load_health_config(self.config, preset=self.preset))
            self.__dict__["_base"] = cached
        return cached[1]

    @property
    def active_config(self) -> HealthConfig:
        """The configuration the score uses: the fitted one after ``fit``, else the base."""
        fitted = self.__dict__.get("_fitted")
        return fitted if fitted is not None else self.base_config

    @property
    def version(self) -> str:
        """Version of the weights in use (the config version, or the fitted weights' version)."""
        return self.active_config.version

    @property
    def dimension_names(self) -> list[str]:
        return self.active_config.dimension_names

    def _check_fitted(self) -> HealthConfig:
        fitted = self.__dict__.get("_fitted")
        if fitted is None:
            raise NotFittedError(
                "This HealthScore is not fitted yet: call fit(features, churned) first "
                "(score() works unfitted with the configured weights)."
            )
        return fitted

    @property
    def weights_(self) -> dict[str, float]:
        """Fitted dimension weights (non-negative, summing to 100)."""
        return self._check_fitted().weights

    @property
    def tiers_(self) -> list[tuple[str, float]]:
        """Tier cut points after fit (re-placed when ``refit_tiers``)."""
        return [(t.name, t.min) for t in self._check_fitted().tiers]

    @property
    def weights_version_(self) -> str:
        return self._check_fitted().version

    @property
    def fit_report_(self) -> dict[str, Any]:
        self._check_fitted()
        return self.__dict__["_fit_report"]

    # -- scoring -----------------------------------------------------------------------------
    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """Score every row of a feature frame.

        Returns one row per input row (same order, fresh index): ``account_id, as_of,
        health_score`` (float 0-100, never null, unrounded), ``health_tier`` (from the
        unrounded score, lower bounds inclusive), ``health_<dimension>`` (0-100, NaN when the
        dimension had no data), ``health_dimensions_used`` ('|'-joined dimension names in
        configuration order, "" when none: the score is then ``neutral_score`` before
        overrides), ``health_overrides`` ('|'-joined overrides applied) and
        ``health_weights_version``.
        """
        parts = self.score_arrays(features)
        cfg = parts.config
        n = len(features)
        out = {
            "account_id": features["account_id"].reset_index(drop=True),
            "as_of": features["as_of"].reset_index(drop=True),
            "health_score": parts.score,
            "health_tier": _codes_to_str(parts.tier_codes, [t.name for t in cfg.tiers]),
        }
        for j, name in enumerate(cfg.dimension_names):
            out[f"health_{name}"] = parts.subscores[:, j]
        out["health_dimensions_used"] = _joined(parts.used, cfg.dimension_names)
        out["health_overrides"] = _joined(parts.overrides, OVERRIDE_NAMES)
        out["health_weights_version"] = _codes_to_str(np.zeros(n, dtype=np.int64), [cfg.version])
        return pd.DataFrame(out)

    def score_arrays(self, features: pd.DataFrame,
                     columns: FrameColumns | None = None) -> "HealthArrays":
        """The numbers of :meth:`score` as arrays, without building a frame (what
        ``score_frame`` reads): ``score`` (n,), ``tier_codes`` (n,) into the configuration's
        tiers (0 = top), ``subscores`` (n, dimensions), ``used`` (n, dimensions) and
        ``overrides`` (n, 2) booleans, and the configuration they came from.

        ``columns``: a FrameColumns of ``features`` (the same numbers, less pandas work)."""
        cfg = self.active_config
        present = columns if columns is not None else features.columns
        missing = [c for c in ("account_id", "as_of") if c not in present]
        if missing:
            raise SchemaError(f"features: missing column(s) {missing} needed by the health score.")
        sub = dimension_subscores(features, cfg, columns)
        raw, used = combine(sub, cfg.compiled.weights, cfg.neutral_score)
        final, applied = apply_overrides(raw, features, cfg, columns)
        return HealthArrays(config=cfg, score=final, tier_codes=tier_codes(final, cfg),
                            subscores=sub, used=used, overrides=applied)

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, features: pd.DataFrame, churned, *, shrinkage: float | None = None,
            min_churn_events: int | None = None, min_retained: int | None = None,
            refit_tiers: bool | None = None, version: str | None = None) -> "HealthScore":
        """Re-learn the dimension weights from observed churn; see ``churnml.health.fit``.

        ``churned``: one value per feature row (1 churned in the horizon, 0 not, NaN
        unlabeled: skipped). Parameters left None come from the config's ``fitting`` section.
        Raises InsufficientDataError when fewer than ``min_churn_events`` churns (or
        ``min_retained`` non-churns) are labeled. Returns self.
        """
        from churnml.health.fit import fit_weights

        fitted, report = fit_weights(
            features, churned, self.base_config, shrinkage=shrinkage,
            min_churn_events=min_churn_events, min_retained=min_retained,
            refit_tiers=refit_tiers, version=version,
        )
        self.__dict__["_fitted"] = fitted
        self.__dict__["_fit_report"] = report
        return self

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The configuration in use (fitted weights and tiers after fit) as a YAML-ready dict."""
        return self.active_config.to_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HealthScore":
        """A HealthScore scoring with the weights of ``data`` (e.g. a saved fitted weight set)."""
        return cls(config=dict(data))

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as YAML (a versioned weight file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from churnml.fsutil import write_bytes_atomic

        write_bytes_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False).encode("utf-8"))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "HealthScore":
        return cls(config=Path(path))

    def __repr__(self) -> str:
        return f"HealthScore(config={self.config!r}, preset={self.preset!r})"
