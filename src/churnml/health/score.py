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
from churnml.errors import ConfigError, NotFittedError, SchemaError
from churnml.health.config import HealthConfig, load_health_config
from churnml.health.fit import fit_weights
from churnml.health.rubric import (  # noqa: F401  (part of this module's interface)
    DIMENSION_SEPARATOR,
    INSUFFICIENT_DATA_TIER,
    OVERRIDE_NAMES,
    apply_overrides,
    assign_tiers,
    combine,
    dimension_subscores,
    known_weight_share,
    tier_codes,
    tier_codes_known,
)

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
        names = [*self.config.compiled.tier_names, INSUFFICIENT_DATA_TIER]
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
        unrounded score, lower bounds inclusive; :data:`INSUFFICIENT_DATA_TIER` when the known
        dimensions carry less than ``min_known_weight_share`` of the weight), ``health_<dimension>`` (0-100, NaN when the
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
            "health_tier": _codes_to_str(parts.tier_codes,
                                         [*(t.name for t in cfg.tiers), INSUFFICIENT_DATA_TIER]),
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
        return HealthArrays(config=cfg, score=final,
                            tier_codes=tier_codes_known(final, used, cfg),
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
