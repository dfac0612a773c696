"""Model configuration per outcome (``models/<outcome>.yaml``, one per :data:`churnml.outcomes.OUTCOMES`).

Every parameter is declared once here, with its allowed range, and checked in one place:
a bad value raises :class:`~churnml.errors.ConfigError` with a message of the form
"The 'horizon_days' parameter must be a positive integer. Got -3."
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from churnml.config import models_dir
from churnml.errors import ConfigError
from churnml.outcomes import OUTCOME_NAMES, get_outcome

TARGETS = OUTCOME_NAMES
CALIBRATION_METHODS = ("auto", "isotonic", "sigmoid")
#: how the labeled as_of dates are split (docs/models.md, "Split policies"); ``auto`` chooses
SPLIT_POLICIES = ("auto", "time", "short", "cross_sectional")
#: how the refit scales the protocol's rounds (churnml.models.refit.refit_rounds)
REFIT_ROUND_RULES = ("same", "sqrt", "linear")
PROMOTION_METRICS = ("test_roc_auc", "test_pr_auc", "test_log_loss", "test_brier")
# Metrics where lower is better (the champion gate compares in the right direction).
LOWER_IS_BETTER = {"test_log_loss", "test_brier", "test_ece"}


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"The '{name}' parameter must be {kind}. Got {value!r}.")
    return value


def _share(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"The '{name}' parameter must be a number in [0, 1). Got {value!r}.")
    return float(value)


def _half_life(name: str, value: Any) -> float | None:
    """A positive, finite number of days, or None (off)."""
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value <= 0):
        raise ConfigError(f"The '{name}' parameter must be a positive number of days or null "
                          f"(off). Got {value!r}.")
    return float(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"The '{name}' parameter must be one of {list(allowed)}. Got {value!r}.")
    return value


@dataclass
class ModelConfig:
    """The configuration of one target's model (see ``models/<target>.yaml`` for meanings).

    Windows are in days; ``gap_days=None`` means one horizon.
    """

    target: str
    description: str = ""
    horizon_days: int = 90
    expansion_min_share: float = 0.0
    cadence_days: int = 7
    min_history_days: int = 7
    test_dates: int = 13
    calibration_dates: int = 13
    gap_days: int | None = None
    min_dates_per_window: int = 2
    min_positives: int = 5
    backtest_folds: int = 3
    split_policy: str = "auto"
    time_min_train_dates: int = 13
    short_min_train_share: float = 0.5
    cv_folds: int = 5
    lgb_params: dict = field(default_factory=dict)
    num_boost_round: int = 300
    early_stopping_rounds: int = 30
    monotone_from_catalog: bool = True
    monotone_tolerance: float = 0.02
    calibration_method: str = "auto"
    calibration_cv_folds: int = 5
    refit: bool = True
    refit_rounds: str = "same"
    refit_calibration_folds: int = 3
    #: half-life in days of the recency weight of every training row of the LightGBM
    #: boosters (churnml.models.recency); None = every row weighs the same
    recency_half_life_days: float | None = None
    #: the half-life used instead when this run retrains a champion the weekly monitoring has
    #: recommended retraining (``churnml train --scores OUT``) and ``recency_half_life_days``
    #: is off: the response to a detected drift (churnml.models.recency.after_retrain)
    recency_after_retrain_days: float | None = None
    sample_max_accounts: int | None = None
    sample_size_bands: int = 4
    promotion_metric: str = "test_roc_auc"
    promotion_min_improvement: float = 0.0
    #: non-inferiority margin of the gate (in the promotion metric's units) when the weekly
    #: monitoring recommends retraining the champion (``churnml train --scores OUT``): the
    #: challenger is promoted unless it is worse by this much or more (docs/models.md)
    promotion_after_retrain_margin: float = 0.02
    bootstrap_resamples: int = 200
    logreg_max_rows: int | None = 200_000
    seed: int = 7
    # monitoring (docs/monitoring.md): the reference profile, drift and the retrain trigger
    drift_bins: int = 10
    reference_weeks: int = 13
    drift_psi_warn: float = 0.1
    drift_psi_alert: float = 0.25
    retrain_auc_drop: float = 0.05
    retrain_baseline_cohorts: int = 4
    retrain_slope_low: float = 0.8
    retrain_slope_high: float = 1.25
    retrain_drift_weeks: int = 3
    source: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def registered_name(self) -> str:
        """Registered model and experiment name: ``churnml-<target>`` (the outcome's)."""
        return get_outcome(self.target).model_name

    @property
    def gap(self) -> int:
        """Days between windows: at least one horizon, so label windows never overlap."""
        return self.horizon_days if self.gap_days is None else self.gap_days

    def validate(self) -> None:
        _choice("target", self.target, TARGETS)
        _positive_int("horizon_days", self.horizon_days)
        _share("expansion_min_share", self.expansion_min_share)
        _positive_int("cadence_days", self.cadence_days)
        _positive_int("min_history_days", self.min_history_days, minimum=0)
        _positive_int("test_dates", self.test_dates)
        _positive_int("calibration_dates", self.calibration_dates)
        if self.gap_days is not None:
            _positive_int("gap_days", self.gap_days)
            if self.gap_days < self.horizon_days:
                raise ConfigError(
                    f"The 'gap_days' parameter must be at least the horizon ({self.horizon_days}"
                    f" days) so that label windows never overlap across the split. Got {self.gap_days}."
                )
        _positive_int("min_dates_per_window", self.min_dates_per_window)
        _positive_int("min_positives", self.min_positives)
        _positive_int("backtest_folds", self.backtest_folds)
        _choice("split_policy", self.split_policy, SPLIT_POLICIES)
        _positive_int("time_min_train_dates", self.time_min_train_dates)
        _share("short_min_train_share", self.short_min_train_share)
        _positive_int("cv_folds", self.cv_folds, minimum=2)
        _positive_int("num_boost_round", self.num_boost_round)
        _positive_int("early_stopping_rounds", self.early_stopping_rounds)
        _choice("calibration_method", self.calibration_method, CALIBRATION_METHODS)
        _positive_int("calibration_cv_folds", self.calibration_cv_folds, minimum=2)
        if not isinstance(self.refit, bool):
            raise ConfigError(f"The 'refit.enabled' parameter must be true or false. Got {self.refit!r}.")
        _choice("refit_rounds", self.refit_rounds, REFIT_ROUND_RULES)
        _positive_int("refit_calibration_folds", self.refit_calibration_folds, minimum=2)
        _half_life("recency_half_life_days", self.recency_half_life_days)
        _half_life("recency_after_retrain_days", self.recency_after_retrain_days)
        if self.sample_max_accounts is not None:
            _positive_int("sample_max_accounts", self.sample_max_accounts, minimum=2)
        _positive_int("sample_size_bands", self.sample_size_bands)
        _choice("promotion_metric", self.promotion_metric, PROMOTION_METRICS)
        _positive_int("bootstrap_resamples", self.bootstrap_resamples, minimum=0)
        if self.logreg_max_rows is not None:
            _positive_int("logreg_max_rows", self.logreg_max_rows, minimum=100)
        _positive_int("monitoring.drift_bins", self.drift_bins, minimum=2)
        _positive_int("monitoring.reference_weeks", self.reference_weeks)
        _positive_int("monitoring.retrain_drift_weeks", self.retrain_drift_weeks)
        _positive_int("monitoring.retrain_baseline_cohorts", self.retrain_baseline_cohorts)
        for name in ("drift_psi_warn", "drift_psi_alert", "retrain_auc_drop", "retrain_slope_low",
                     "retrain_slope_high", "promotion_min_improvement",
                     "promotion_after_retrain_margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"The '{name}' parameter must be a number >= 0. Got {value!r}.")
        if self.drift_psi_warn > self.drift_psi_alert:
            raise ConfigError(f"The 'drift_psi_warn' parameter must not exceed 'drift_psi_alert' "
                              f"({self.drift_psi_alert}). Got {self.drift_psi_warn}.")
        if not self.retrain_slope_low < 1 < self.retrain_slope_high:
            raise ConfigError(f"The calibration slope band [retrain_slope_low, "
                              f"retrain_slope_high] must contain 1. Got [{self.retrain_slope_low}, "
                              f"{self.retrain_slope_high}].")
        if not isinstance(self.lgb_params, dict):
            raise ConfigError(f"The 'lightgbm.params' parameter must be a mapping. Got {self.lgb_params!r}.")
        objective = self.lgb_params.get("objective", "binary")
        if objective != "binary":
            raise ConfigError(f"The 'lightgbm.params.objective' parameter must be 'binary'. Got {objective!r}.")

    def with_overrides(self, **overrides: Any) -> "ModelConfig":
        """A copy with some fields replaced (``None`` values are ignored), validated."""
        data = self.to_dict()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return ModelConfig(**data)

    def to_dict(self) -> dict:
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown model configuration fields {unknown}; known: {sorted(known)}.")
        return cls(**data)

    def flat_params(self) -> dict[str, Any]:
        """Flat ``{name: value}`` for MLflow params (LightGBM params prefixed ``lgb_``)."""
        out = {k: v for k, v in self.to_dict().items() if k not in ("lgb_params", "description")}
        out.update({f"lgb_{k}": v for k, v in self.lgb_params.items()})
        return out


# yaml section/key -> ModelConfig field
_YAML_FIELDS = {
    ("label", "horizon_days"): "horizon_days",
    ("label", "expansion_min_share"): "expansion_min_share",
    ("observations", "cadence_days"): "cadence_days",
    ("observations", "min_history_days"): "min_history_days",
    ("split", "test_dates"): "test_dates",
    ("split", "calibration_dates"): "calibration_dates",
    ("split", "gap_days"): "gap_days",
    ("split", "min_dates_per_window"): "min_dates_per_window",
    ("split", "min_positives"): "min_positives",
    ("split", "backtest_folds"): "backtest_folds",
    ("split", "policy"): "split_policy",
    ("split", "time_min_train_dates"): "time_min_train_dates",
    ("split", "short_min_train_share"): "short_min_train_share",
    ("split", "cv_folds"): "cv_folds",
    ("lightgbm", "params"): "lgb_params",
    ("lightgbm", "num_boost_round"): "num_boost_round",
    ("lightgbm", "early_stopping_rounds"): "early_stopping_rounds",
    ("monotone", "use_catalog_directions"): "monotone_from_catalog",
    ("monotone", "tolerance"): "monotone_tolerance",
    ("calibration", "method"): "calibration_method",
    ("calibration", "cv_folds"): "calibration_cv_folds",
    ("refit", "enabled"): "refit",
    ("refit", "rounds"): "refit_rounds",
    ("refit", "calibration_folds"): "refit_calibration_folds",
    ("training", "recency_half_life_days"): "recency_half_life_days",
    ("training", "recency_after_retrain_days"): "recency_after_retrain_days",
    ("sample", "max_accounts"): "sample_max_accounts",
    ("sample", "size_bands"): "sample_size_bands",
    ("promotion", "metric"): "promotion_metric",
    ("promotion", "min_improvement"): "promotion_min_improvement",
    ("promotion", "after_retrain_margin"): "promotion_after_retrain_margin",
    ("evaluation", "bootstrap_resamples"): "bootstrap_resamples",
    ("evaluation", "logreg_max_rows"): "logreg_max_rows",
    ("evaluation", "seed"): "seed",
    ("monitoring", "drift_bins"): "drift_bins",
    ("monitoring", "reference_weeks"): "reference_weeks",
    ("monitoring", "drift_psi_warn"): "drift_psi_warn",
    ("monitoring", "drift_psi_alert"): "drift_psi_alert",
    ("monitoring", "retrain_auc_drop"): "retrain_auc_drop",
    ("monitoring", "retrain_baseline_cohorts"): "retrain_baseline_cohorts",
    ("monitoring", "retrain_slope_low"): "retrain_slope_low",
    ("monitoring", "retrain_slope_high"): "retrain_slope_high",
    ("monitoring", "retrain_drift_weeks"): "retrain_drift_weeks",
}


def parse_config(raw: dict, source: str | None = None) -> ModelConfig:
    """Turn the nested YAML structure into a validated :class:`ModelConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source or 'model config'}: expected a mapping at the top level.")
    data: dict[str, Any] = {"target": raw.get("target"), "description": raw.get("description") or ""}
    sections = {section for section, _ in _YAML_FIELDS}
    unknown_sections = sorted(set(raw) - sections - {"target", "description"})
    if unknown_sections:
        raise ConfigError(f"{source or 'model config'}: unknown sections {unknown_sections}.")
    for (section, key), name in _YAML_FIELDS.items():
        block = raw.get(section) or {}
        if not isinstance(block, dict):
            raise ConfigError(f"{source or 'model config'}: section '{section}' must be a mapping.")
        if key in block:
            data[name] = block[key]
    for section in sections & set(raw):
        known = {k for s, k in _YAML_FIELDS if s == section}
        extra = sorted(set(raw[section] or {}) - known)
        if extra:
            raise ConfigError(f"{source or 'model config'}: unknown keys {extra} in section '{section}'.")
    data["source"] = source
    return ModelConfig(**data)


def load_config(target: str | None = None, path: str | Path | None = None, **overrides: Any) -> ModelConfig:
    """Load ``models/<target>.yaml`` (or ``path``) and apply ``overrides`` (e.g. horizon_days).

    When both are given, the file's target must equal ``target``.
    """
    if path is None:
        if target is None:
            raise ConfigError("load_config needs a target or a path.")
        _choice("target", target, TARGETS)
        path = models_dir() / get_outcome(target).config_file
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    config = parse_config(raw, source=str(path))
    if target is not None and config.target != target:
        raise ConfigError(f"{path} configures target {config.target!r}, not {target!r}.")
    return config.with_overrides(**overrides) if overrides else config
