"""The health score's configuration: loading and validation of ``features/health_score.yaml``.

Every rule is checked in one place (:func:`parse_health_config`); every problem found is
collected and raised once as a :class:`~churnml.errors.ConfigError` whose lines read like
"The 'weight' of dimension 'usage' must be >= 0. Got -3.".
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, TypeGuard

import numpy as np
import yaml

from churnml.config import features_dir
from churnml.errors import ConfigError


@dataclass(frozen=True)
class Signal:
    """One feature mapped to 0-100: ``bands`` are ``(from, score)`` with ``from`` ascending,
    the first ``from`` being ``-inf``; a value scores the band with the largest ``from <= value``."""

    feature: str
    weight: float
    thresholds: tuple[float, ...]
    scores: tuple[float, ...]
    description: str = ""

    def band_scores(self, values: np.ndarray) -> np.ndarray:
        """Band score (0-100) of each value; NaN where the value is NaN (no data)."""
        idx = np.searchsorted(self._upper_bounds, values, side="right")
        out = self._score_array[idx]
        return np.where(np.isnan(values), np.nan, out)

    # numpy forms of the bands, built once (the dataclass is frozen; cached_property writes
    # the instance's __dict__ directly)
    @cached_property
    def _upper_bounds(self) -> np.ndarray:
        return np.asarray(self.thresholds[1:])

    @cached_property
    def _score_array(self) -> np.ndarray:
        return np.asarray(self.scores, dtype=float)


@dataclass(frozen=True)
class Dimension:
    name: str
    weight: float
    signals: tuple[Signal, ...]
    description: str = ""


@dataclass(frozen=True)
class Tier:
    name: str
    min: float


@dataclass(frozen=True)
class HealthConfig:
    """A validated health-score configuration (immutable). ``raw`` is the plain dict it came
    from, so it can be written back to YAML (:meth:`to_dict`)."""

    version: str
    neutral_score: float
    #: below this share of the total dimension weight known for an account, its tier is
    #: ``insufficient_data`` (the score is still computed and reported)
    min_known_weight_share: float
    dimensions: tuple[Dimension, ...]
    tiers: tuple[Tier, ...]
    overrides: dict[str, dict[str, Any]]
    alerts: dict[str, Any]
    fitting: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def dimension_names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    @cached_property
    def compiled(self) -> "CompiledHealth":
        """The numpy form the score reads, built once per configuration object."""
        return CompiledHealth.build(self)

    @property
    def weights(self) -> dict[str, float]:
        return {d.name: d.weight for d in self.dimensions}

    @property
    def features(self) -> list[str]:
        """Every feature column the score reads (signals and overrides)."""
        names = [s.feature for d in self.dimensions for s in d.signals]
        for rule in self.overrides.values():
            for key in ("feature", "flag_feature"):
                if rule.get(key):
                    names.append(rule[key])
        return list(dict.fromkeys(names))

    def to_dict(self) -> dict[str, Any]:
        """A plain-dict copy (YAML-ready) of this configuration."""
        return copy.deepcopy(self.raw)

    def with_weights(self, weights: Mapping[str, float], version: str | None = None,
                     tiers: list[dict[str, Any]] | None = None) -> "HealthConfig":
        """A copy with new dimension weights (and optionally tiers / version), re-validated."""
        raw = self.to_dict()
        for name, w in weights.items():
            if name not in raw["dimensions"]:
                raise ConfigError(f"Unknown dimension {name!r}; known: {self.dimension_names}.")
            raw["dimensions"][name]["weight"] = float(w)
        if tiers is not None:
            raw["tiers"] = tiers
        if version is not None:
            raw["version"] = version
        return parse_health_config(raw)


@dataclass(frozen=True)
class CompiledHealth:
    """A :class:`HealthConfig` as arrays (``HealthConfig.compiled``): what scoring reads on
    every call, so a call does no per-configuration Python work beyond one loop over signals.

    ``signals``: per dimension, ``(feature, weight, signal)`` of its signals with weight > 0;
    ``weights``: dimension weights in configuration order; ``tier_names`` top tier first;
    ``tier_labels`` / ``dimension_names`` as lists."""

    signals: tuple[tuple[tuple[str, float, Signal], ...], ...]
    weights: np.ndarray
    tier_names: tuple[str, ...]
    tier_mins_ascending: np.ndarray
    dimension_names: tuple[str, ...]
    bands: "SignalBands"

    @classmethod
    def build(cls, config: "HealthConfig") -> "CompiledHealth":
        signals = tuple(tuple((s.feature, s.weight, s) for s in d.signals if s.weight > 0)
                        for d in config.dimensions)
        return cls(
            signals=signals,
            weights=np.array([d.weight for d in config.dimensions], dtype=float),
            tier_names=tuple(t.name for t in config.tiers),
            tier_mins_ascending=np.array([t.min for t in config.tiers])[::-1],
            dimension_names=tuple(d.name for d in config.dimensions),
            bands=SignalBands.build(signals),
        )


@dataclass(frozen=True)
class SignalBands:
    """Every weighted signal's bands as padded arrays, so the sub-scores of all dimensions
    take a few array operations instead of a handful per signal (``rubric.
    dimension_subscores``; one account's score was mostly per-call numpy overhead).

    Signals are numbered dimension by dimension in configuration order: ``features[s]``,
    ``weights[s]``; ``upper[s, :]`` the band thresholds after the first (ascending; padded
    with NaN, which no value reaches); ``scores`` all band scores, flat, signal s's band b at
    ``offsets[s] + b``; ``positions[p, d]`` the p-th signal of dimension d, or ``len(features)``
    (a column of zeros) when d has fewer signals, so sums keep each dimension's signal order.
    """

    features: tuple[str, ...]
    weights: np.ndarray
    upper: np.ndarray
    scores: np.ndarray
    offsets: np.ndarray
    positions: np.ndarray

    @classmethod
    def build(cls, signals: tuple[tuple[tuple[str, float, Signal], ...], ...]) -> "SignalBands":
        flat = [sig for dim in signals for sig in dim]
        n = len(flat)
        width = max((len(sig.thresholds) - 1 for _, _, sig in flat), default=0)
        upper = np.full((n, width), np.nan)
        offsets = np.zeros(n, dtype=np.intp)
        scores: list[float] = []
        for k, (_, _, sig) in enumerate(flat):
            upper[k, :len(sig.thresholds) - 1] = sig.thresholds[1:]
            offsets[k] = len(scores)
            scores.extend(float(x) for x in sig.scores)
        depth = max((len(dim) for dim in signals), default=0)
        positions = np.full((depth, len(signals)), n, dtype=np.intp)
        start = 0
        for d, dim in enumerate(signals):
            positions[:len(dim), d] = np.arange(start, start + len(dim))
            start += len(dim)
        return cls(features=tuple(f for f, _, _ in flat),
                   weights=np.array([w for _, w, _ in flat], dtype=float), upper=upper,
                   scores=np.array(scores, dtype=float), offsets=offsets, positions=positions)


DEFAULT_PATH_NAME = "health_score.yaml"

_OVERRIDE_DEFAULTS = {
    "nps_detractor_cap": {"enabled": True, "feature": "nps_latest", "flag_feature": "nps_detractor",
                          "detractor_max": 6, "cap": 69},
    "no_contact_penalty": {"enabled": True, "feature": "days_since_last_contact", "min_days": 21,
                           "penalty": 10},
}
_ALERT_DEFAULTS: dict[str, Any] = {
    "falls_below": [70, 50, 30],
    "weekly_drop_points": 15,
    "monthly_drop_points": 20,
    "monthly_window_days": 30,
    "no_contact_days": 21,
    "new_nps_within_days": 7,
    "unusual_drop": {"k": 3.0, "floor_points": 5.0, "min_weeks": 4},
}
_FITTING_DEFAULTS = {"min_churn_events": 30, "min_retained": 30, "shrinkage": 0.3,
                     "refit_tiers": False}


def default_config_path() -> Path:
    return features_dir() / DEFAULT_PATH_NAME


def load_health_config(source: "HealthConfig | str | Path | Mapping | None" = None,
                       preset: str | None = None) -> HealthConfig:
    """Load and validate a health configuration.

    ``source``: None (the project's ``features/health_score.yaml``), a path to a YAML file, a
    dict with the same structure, or an already parsed :class:`HealthConfig`. ``preset``
    applies a named alternative from the file's ``presets`` section (weights and/or tiers).
    Raises :class:`ConfigError` listing every problem found.
    """
    if isinstance(source, HealthConfig):
        raw = source.to_dict()
    elif source is None or isinstance(source, (str, Path)):
        path = Path(source) if source is not None else default_config_path()
        if not path.is_file():
            raise ConfigError(f"Health score configuration not found: {path}.")
        raw = _read_yaml(path)
    elif isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    else:
        raise ConfigError(
            "The 'config' parameter must be None, a path or a dict. "
            f"Got {type(source).__name__}."
        )
    if preset is not None:
        raw = _apply_preset(raw, preset)
    return parse_health_config(raw)


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~20x faster
_YAML_CACHE: dict[tuple[str, int, int], Any] = {}


def _read_yaml(path: Path) -> Any:
    """Parsed YAML of ``path``, cached by (path, mtime, size); callers get a deep copy."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _YAML_CACHE:
        try:
            _YAML_CACHE[key] = yaml.load(path.read_text(), Loader=_YAML_LOADER)
        except yaml.YAMLError as exc:
            raise ConfigError(f"Health score configuration {path} is not valid YAML: {exc}") from exc
    return copy.deepcopy(_YAML_CACHE[key])


def _apply_preset(raw: Any, preset: str) -> dict:
    presets = (raw or {}).get("presets") or {} if isinstance(raw, Mapping) else {}
    if preset not in presets:
        raise ConfigError(f"The 'preset' parameter must be one of {sorted(presets)}. Got {preset!r}.")
    raw = copy.deepcopy(dict(raw))
    chosen = presets[preset] or {}
    for name, w in (chosen.get("weights") or {}).items():
        if name not in (raw.get("dimensions") or {}):
            raise ConfigError(f"Preset {preset!r} names unknown dimension {name!r}.")
        raw["dimensions"][name]["weight"] = w
    if chosen.get("tiers") is not None:
        raw["tiers"] = copy.deepcopy(chosen["tiers"])
    raw["version"] = f"{raw.get('version', 'unversioned')}+{preset}"
    return raw


_TOP_KEYS = {"version", "neutral_score", "min_known_weight_share", "dimensions", "tiers", "overrides", "alerts", "fitting",
             "presets", "description"}
_DIMENSION_KEYS = {"weight", "signals", "description"}
_SIGNAL_KEYS = {"feature", "weight", "bands", "description"}


def _unknown_keys(mapping: Mapping, allowed: set[str], where: str, errors: list[str]) -> None:
    unknown = sorted(str(k) for k in mapping if k not in allowed)
    if unknown:
        errors.append(f"Unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}.")


def _is_number(x: Any) -> TypeGuard[int | float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_health_config(raw: Any) -> HealthConfig:
    """Validate a plain dict and build a :class:`HealthConfig` (raises one ConfigError listing
    every problem)."""
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        raise ConfigError(f"The health configuration must be a mapping. Got {type(raw).__name__}.")
    raw = copy.deepcopy(dict(raw))
    _unknown_keys(raw, _TOP_KEYS, "the health configuration", errors)

    version = raw.get("version")
    if not isinstance(version, (str, int, float)) or isinstance(version, bool) or str(version) == "":
        errors.append(f"The 'version' field must be a non-empty string. Got {version!r}.")
    neutral = raw.get("neutral_score", 50)
    if not _is_number(neutral) or not 0 <= neutral <= 100:
        errors.append(f"The 'neutral_score' must be a number in [0, 100]. Got {neutral!r}.")
    min_known = raw.get("min_known_weight_share", 0.5)
    if not _is_number(min_known) or not 0 <= min_known <= 1:
        errors.append(f"The 'min_known_weight_share' must be a number in [0, 1]. "
                      f"Got {min_known!r}.")

    dims_raw = raw.get("dimensions")
    dimensions: list[Dimension] = []
    if not isinstance(dims_raw, Mapping) or not dims_raw:
        errors.append("The 'dimensions' section must map dimension names to their definition.")
        dims_raw = {}
    for dname, d in dims_raw.items():
        if not isinstance(d, Mapping):
            errors.append(f"Dimension {dname!r} must be a mapping with 'weight' and 'signals'.")
            continue
        _unknown_keys(d, _DIMENSION_KEYS, f"dimension {dname!r}", errors)
        w = d.get("weight")
        if not _is_number(w):
            errors.append(f"The 'weight' of dimension {dname!r} must be a number. Got {w!r}.")
        elif w < 0:
            errors.append(f"The 'weight' of dimension {dname!r} must be >= 0. Got {w!r}.")
        signals: list[Signal] = []
        sig_raw = d.get("signals")
        if not isinstance(sig_raw, list) or not sig_raw:
            errors.append(f"Dimension {dname!r} must list at least one signal under 'signals'.")
            sig_raw = []
        for i, s in enumerate(sig_raw):
            sig = _parse_signal(dname, i, s, errors)
            if sig is not None:
                signals.append(sig)
        if signals and not any(s.weight > 0 for s in signals):
            errors.append(f"Dimension {dname!r} needs at least one signal with a 'weight' > 0.")
        if _is_number(w) and w >= 0:
            dimensions.append(Dimension(str(dname), float(w), tuple(signals),
                                        str(d.get("description", ""))))
    if dimensions and not any(d.weight > 0 for d in dimensions) and len(dimensions) == len(dims_raw):
        errors.append("At least one dimension must have a 'weight' > 0.")

    tiers = _parse_tiers(raw.get("tiers"), errors)
    overrides = _merge_section(raw, "overrides", _OVERRIDE_DEFAULTS, errors)
    cap = overrides.get("nps_detractor_cap", {})
    for key in ("cap", "detractor_max"):
        if not _is_number(cap.get(key)):
            errors.append(f"The '{key}' of override 'nps_detractor_cap' must be a number. Got {cap.get(key)!r}.")
    if _is_number(cap.get("cap")) and not 0 <= cap["cap"] <= 100:
        errors.append(f"The 'cap' of override 'nps_detractor_cap' must be in [0, 100]. Got {cap['cap']!r}.")
    pen = overrides.get("no_contact_penalty", {})
    for key in ("min_days", "penalty"):
        if not _is_number(pen.get(key)) or pen[key] < 0:
            errors.append(f"The '{key}' of override 'no_contact_penalty' must be a number >= 0. Got {pen.get(key)!r}.")

    alerts = _merge_section(raw, "alerts", _ALERT_DEFAULTS, errors)
    fb = alerts.get("falls_below")
    if not isinstance(fb, list) or not all(_is_number(x) and 0 <= x <= 100 for x in fb):
        errors.append(f"The 'falls_below' alert thresholds must be a list of numbers in [0, 100]. Got {fb!r}.")
    for key in ("weekly_drop_points", "monthly_drop_points", "monthly_window_days",
                "no_contact_days", "new_nps_within_days"):
        if not _is_number(alerts.get(key)) or alerts[key] <= 0:
            errors.append(f"The '{key}' alert threshold must be a number > 0. Got {alerts.get(key)!r}.")
    ud = alerts.get("unusual_drop")
    if not isinstance(ud, Mapping):
        errors.append("The 'unusual_drop' alert must be a mapping with k, floor_points, min_weeks.")
    else:
        ud = {**_ALERT_DEFAULTS["unusual_drop"], **ud}
        alerts["unusual_drop"] = ud
        for key in ("k", "floor_points", "min_weeks"):
            if not _is_number(ud[key]) or ud[key] <= 0:
                errors.append(f"The '{key}' of alert 'unusual_drop' must be a number > 0. Got {ud[key]!r}.")

    fitting = _merge_section(raw, "fitting", _FITTING_DEFAULTS, errors)
    validate_fit_params(fitting, errors)

    if errors:
        raise ConfigError("Invalid health score configuration:\n  - " + "\n  - ".join(errors))
    raw.setdefault("neutral_score", neutral)
    raw["overrides"], raw["alerts"], raw["fitting"] = overrides, alerts, fitting
    raw["version"] = str(version)
    return HealthConfig(
        version=str(version),
        neutral_score=float(neutral),
        min_known_weight_share=float(min_known),
        dimensions=tuple(dimensions),
        tiers=tuple(tiers),
        overrides=overrides,
        alerts=alerts,
        fitting=fitting,
        raw=raw,
    )


def validate_fit_params(params: Mapping[str, Any], errors: list[str] | None = None) -> None:
    """Check the fitting parameters (declared once; used by the config and by ``fit``)."""
    own = errors is None
    errors = [] if errors is None else errors
    for key in ("min_churn_events", "min_retained"):
        v = params.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            errors.append(f"The '{key}' parameter must be a positive integer. Got {v!r}.")
    s = params.get("shrinkage")
    if not _is_number(s) or not 0 <= s <= 1:
        errors.append(f"The 'shrinkage' parameter must be a number in [0, 1]. Got {s!r}.")
    if not isinstance(params.get("refit_tiers"), bool):
        errors.append(f"The 'refit_tiers' parameter must be true or false. Got {params.get('refit_tiers')!r}.")
    if own and errors:
        raise ConfigError(" ".join(errors))


def _merge_section(raw: Mapping, key: str, defaults: Mapping, errors: list[str]) -> dict:
    section = raw.get(key)
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        errors.append(f"The '{key}' section must be a mapping. Got {type(section).__name__}.")
        section = {}
    merged = copy.deepcopy(dict(defaults))
    for k, v in section.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
            merged[k] = {**merged[k], **v}
        else:
            merged[k] = copy.deepcopy(v)
    return merged


def _parse_signal(dname: str, i: int, s: Any, errors: list[str]) -> Signal | None:
    where = f"signal {i + 1} of dimension {dname!r}"
    if not isinstance(s, Mapping):
        errors.append(f"The {where} must be a mapping with feature, weight and bands.")
        return None
    feature = s.get("feature")
    if not isinstance(feature, str) or not feature:
        errors.append(f"The 'feature' of {where} must be a feature name. Got {feature!r}.")
        return None
    where = f"signal {feature!r} of dimension {dname!r}"
    _unknown_keys(s, _SIGNAL_KEYS, where, errors)
    ok = True
    w = s.get("weight", 1)
    if not _is_number(w) or w < 0:
        errors.append(f"The 'weight' of {where} must be a number >= 0. Got {w!r}.")
        ok = False
    bands = s.get("bands")
    if not isinstance(bands, list) or not bands:
        errors.append(f"The 'bands' of {where} must be a non-empty list of {{from, score}}.")
        return None
    thresholds: list[float] = []
    scores: list[float] = []
    for j, b in enumerate(bands):
        if not isinstance(b, Mapping) or "score" not in b:
            errors.append(f"Band {j + 1} of {where} must be a mapping with 'from' and 'score'.")
            ok = False
            continue
        lo, sc = b.get("from"), b.get("score")
        if j == 0:
            if lo is not None:
                errors.append(f"The first band of {where} must have 'from: null' (open below). Got {lo!r}.")
                ok = False
            lo = -math.inf
        elif not _is_number(lo):
            errors.append(f"The 'from' of band {j + 1} of {where} must be a number. Got {lo!r}.")
            ok = False
            continue
        if not _is_number(sc) or not 0 <= sc <= 100:
            errors.append(f"The 'score' of band {j + 1} of {where} must be in [0, 100]. Got {sc!r}.")
            ok = False
        if thresholds and lo <= thresholds[-1]:
            errors.append(
                f"The 'from' values of the bands of {where} must increase strictly. "
                f"Got {lo!r} after {thresholds[-1]!r}."
            )
            ok = False
        thresholds.append(float(lo))
        scores.append(float(sc) if _is_number(sc) else 0.0)
    if not ok:
        return None
    return Signal(feature, float(w), tuple(thresholds), tuple(scores), str(s.get("description", "")))


def _parse_tiers(tiers_raw: Any, errors: list[str]) -> list[Tier]:
    if not isinstance(tiers_raw, list) or not tiers_raw:
        errors.append("The 'tiers' section must be a list of {name, min}, highest first.")
        return []
    tiers: list[Tier] = []
    for j, t in enumerate(tiers_raw):
        if not isinstance(t, Mapping) or not isinstance(t.get("name"), str) or not _is_number(t.get("min")):
            errors.append(f"Tier {j + 1} must be a mapping with a 'name' and a numeric 'min'. Got {t!r}.")
            continue
        if not 0 <= t["min"] <= 100:
            errors.append(f"The 'min' of tier {t['name']!r} must be in [0, 100]. Got {t['min']!r}.")
        if tiers and t["min"] >= tiers[-1].min:
            errors.append(
                f"Tiers must be listed highest first with strictly decreasing 'min'. "
                f"Tier {t['name']!r} has min {t['min']!r} after {tiers[-1].min!r}."
            )
        tiers.append(Tier(t["name"], float(t["min"])))
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        errors.append(f"Tier names must be unique. Got {names}.")
    if tiers and tiers[-1].min != 0:
        errors.append(f"The last tier must start at 0 so every score has a tier. Got {tiers[-1].min!r}.")
    return tiers
