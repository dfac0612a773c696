"""The feature catalog: ``features/catalog.yaml`` read into :class:`FeatureSpec` records.

Every feature churnml builds is one catalog entry: its name, source table, window, aggregation
kind (plus that kind's parameters), a description, a plain-words reason template, its expected
direction of effect on churn and on expansion, and the health dimension it belongs to. Adding a
feature of an existing aggregation kind is a new entry, not new code (see ``docs/features.md``).

Reason templates are plain sentences. ``{value}`` is replaced by the feature's value with the
template's format spec (``{value:.0%}``, ``{value:.0f}``); a template may instead be a mapping
from value to sentence (for flags and categories, keys ``1``/``0`` or the category, plus
``other``), and ``reason_missing`` is used when the value is missing.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import yaml

from churnml.config import features_dir
from churnml.errors import ConfigError
from churnml.outcomes import OUTCOME_NAMES

HEALTH_DIMENSIONS = ("usage", "engagement", "outcome", "satisfaction", "payment", "revenue", "static")
KINDS = ("numeric", "categorical")
DIRECTIONS = (-1, 0, 1)

#: Aggregation kinds and the parameters each one requires (beyond the common fields).
AGGREGATIONS: dict[str, tuple[str, ...]] = {
    # generic windowed templates over one table
    "count": (),  # rows matching `filter` in the window (optionally shifted by offset_days)
    "sum": ("column",),  # sum of `column` over matching rows
    "mean": ("column",),  # mean of `column` over matching rows (missing when none)
    "distinct": ("column",),  # distinct non-null values of `column` among matching rows
    "active_days": (),  # distinct calendar days with at least one matching row
    "ratio_to_baseline": ("baseline_days",),  # window measure / its average over the baseline
    "days_since": (),  # whole days since the latest matching row (missing when none)
    "trend": ("weeks",),  # least-squares slope of weekly counts / their mean
    "latest": ("column",),  # value of `column` on the latest matching row (lag = n-th latest)
    "change": ("column",),  # latest minus the previous value of `column`
    "relative_change": ("column",),  # (latest now - latest window_days ago) / latest then
    "rate": ("numerator", "denominator"),  # matching-row count ratio (missing when 0 / 0)
    "median": ("column",),  # median of `column` over matching rows
    # derived from other features (same observation only: never from other accounts)
    "threshold": ("of", "op", "value"),  # 1.0 / 0.0 flag, missing when `of` is missing
    "bins": ("of", "edges", "labels"),  # fixed lower-bound edges -> labels
    "segment_rules": ("of", "segments"),  # first matching rule of score ranges
    # special aggregations
    "missed_in_a_row": ("hit", "reset"),  # trailing run of `hit` rows since the last `reset`
    "spike_then_silence": ("recent_days", "prior_days", "min_spike"),
    "overdue_count": (),  # invoices past due and not paid before as_of
    "overdue_days_max": (),  # days past due of the oldest overdue invoice (0 when none)
    "days_until": ("column",),  # whole days from as_of until `column` of the latest row
    "tenure": (),  # whole days since accounts.created_at
    "static": ("column",),  # an attribute column of `accounts`
    "static_other": (),  # every other extra column of `accounts`, each under its own name
}

COMPARISONS = ("lt", "le", "gt", "ge", "eq")


@dataclass(frozen=True)
class FeatureSpec:
    """One catalog entry. ``params`` holds the aggregation's parameters (filter, column, ...)."""

    name: str
    table: str
    window_days: int | None
    aggregation: str
    description: str
    reason: str | dict
    health_dimension: str
    kind: str
    params: dict = field(default_factory=dict)
    reason_missing: str | None = None
    #: outcome name -> expected sign (-1 or +1) of the effect of a higher value; an outcome not
    #: listed has no expected sign (0: no monotone constraint)
    directions: Mapping[str, int] = field(default_factory=dict)

    def direction(self, outcome: str) -> int:
        """The expected sign of the effect of a higher value on ``outcome`` (0 when none)."""
        return int(self.directions.get(outcome, 0))

    @property
    def depends_on(self) -> list[str]:
        """Names of features this one is derived from (empty for table aggregations)."""
        of = self.params.get("of")
        if of is None:
            return []
        return [of] if isinstance(of, str) else list(of)


@dataclass
class Catalog:
    """The list of feature specs in catalog order, with lookups by name."""

    specs: list[FeatureSpec]
    source: str | None = None

    def __post_init__(self) -> None:
        self._by_name = {s.name: s for s in self.specs}

    def __iter__(self):
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> FeatureSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"feature {name!r} is not in the catalog") from None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def get(self, name: str, default=None):
        return self._by_name.get(name, default)

    def subset(self, names: Iterable[str]) -> "Catalog":
        """The catalog of ``names`` and every feature they depend on, in catalog order (names
        the catalog does not list are ignored: extra ``accounts`` columns have no spec)."""
        wanted: set[str] = set()
        stack = [n for n in names if n in self._by_name]
        while stack:
            name = stack.pop()
            if name in wanted:
                continue
            wanted.add(name)
            stack.extend(d for d in self._by_name[name].depends_on if d in self._by_name)
        return Catalog([s for s in self.specs if s.name in wanted], source=self.source)

    def by_dimension(self, dimension: str) -> list[FeatureSpec]:
        return [s for s in self.specs if s.health_dimension == dimension]

    def resolve(self, name: str, kind: str = "categorical") -> FeatureSpec:
        """The spec of ``name``; for an extra ``accounts`` column (a static attribute the
        catalog cannot list in advance) a generic static spec named after the column."""
        spec = self._by_name.get(name)
        if spec is not None:
            return spec
        return static_attribute_spec(name, kind)


def stored_directions(record: Mapping[str, Any]) -> dict[str, int]:
    """The ``directions`` of a stored spec record (a model's ``model.json``), reading the
    one-key-per-outcome form of models trained before the mapping (``churn_direction``)."""
    directions = dict(record.get("directions") or {})
    for outcome in OUTCOME_NAMES:
        legacy = record.get(f"{outcome}_direction")
        if legacy and outcome not in directions:
            directions[outcome] = int(legacy)
    return directions


#: (path, modification time) -> the ``reasons`` of ``features/attributes.yaml``, read once
_ATTRIBUTE_REASONS: dict[tuple[str, float], dict[str, Any]] = {}


def attribute_reasons(path: str | Path | None = None) -> dict[str, Any]:
    """The reason templates declared under ``reasons`` in ``features/attributes.yaml`` (or
    ``path``): attribute column -> a template as in the catalog (a string with ``{value}`` and
    its format spec, or a mapping from value to sentence with ``other``). Empty when the file
    or the key is absent. Read once per file version. A template that is not a string or a
    mapping of strings, or that does not format a sample value, is a :class:`ConfigError`
    naming the file and the column."""
    path = Path(path) if path is not None else features_dir() / "attributes.yaml"
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError:
        return {}
    if key in _ATTRIBUTE_REASONS:
        return _ATTRIBUTE_REASONS[key]
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    reasons = raw.get("reasons") if isinstance(raw, dict) else None
    reasons = {} if reasons is None else reasons
    if not isinstance(reasons, dict):
        raise ConfigError(f"{path}: 'reasons' must map attribute columns to reason templates; got {reasons!r}")
    problems = []
    for column, template in reasons.items():
        texts = list(template.values()) if isinstance(template, dict) else [template]
        if not isinstance(column, str) or not texts or not all(isinstance(t, str) for t in texts):
            problems.append(f"{column!r}: a template is a string or a mapping of value to string; got {template!r}")
            continue
        try:  # the sample must format as a number or, for a category, as text
            render_reason(static_attribute_spec(column, reason=template), 2.0)
            render_reason(static_attribute_spec(column, reason=template), "sample")
        except (KeyError, IndexError, ValueError) as exc:
            problems.append(f"{column!r}: template {template!r} does not format a value ({exc!r}; "
                            "write {value} with an optional format spec, e.g. {value:.0%})")
    if problems:
        raise ConfigError(f"{path}: 'reasons': " + "; ".join(problems))
    _ATTRIBUTE_REASONS[key] = dict(reasons)
    return _ATTRIBUTE_REASONS[key]


def static_attribute_spec(column: str, kind: str = "categorical", reason: Any = None) -> FeatureSpec:
    """Spec for an extra column of ``accounts`` that the catalog does not list by name. Its
    reason is ``reason``, else the column's template under ``reasons`` in
    ``features/attributes.yaml`` (:func:`attribute_reasons`), else "<column> is <value>"."""
    label = column.replace("_", " ")
    if reason is None:
        reason = attribute_reasons().get(column)
    if reason is None:
        reason = f"{label} is {{value}}" if kind == "categorical" else f"{label} is {{value:,.4g}}"
    return FeatureSpec(
        name=column,
        table="accounts",
        window_days=None,
        aggregation="static",
        description=f"account attribute '{column}'",
        reason=reason,
        directions={},
        health_dimension="static",
        kind=kind,
        params={"column": column},
        reason_missing=f"{label} is not recorded",
    )


_COMMON = (
    "name", "table", "window_days", "aggregation", "description", "reason", "health_dimension",
    "kind",
)
_OPTIONAL = ("reason_missing", "direction")


def default_catalog_path() -> Path:
    return features_dir() / "catalog.yaml"


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and check the catalog (default ``features/catalog.yaml``).

    Raises ``ConfigError`` naming every bad entry (unknown aggregation, missing parameter,
    bad direction, unknown dependency, duplicate name) at once.
    """
    path = Path(path) if path is not None else default_catalog_path()
    if not path.exists():
        raise ConfigError(f"feature catalog not found: {path}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    cached = _CATALOG_CACHE.get(key)
    if cached is None:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        entries = doc.get("features") if isinstance(doc, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{path}: expected a top-level 'features' list")
        cached = catalog_from_entries(entries, source=str(path))
        if len(_CATALOG_CACHE) >= _CATALOG_CACHE_SIZE:
            _CATALOG_CACHE.pop(next(iter(_CATALOG_CACHE)))
        _CATALOG_CACHE[key] = cached
    # a copy: a caller may change its catalog without changing the next caller's
    return copy.deepcopy(cached)


#: Catalogs already read and checked, by (resolved path, modification time, size): the weekly
#: job reads the catalog in every chunk's features, compared week and reasons, and parsing the
#: YAML each time cost about a second per run at 50,000 accounts. An edited file is re-read.
_CATALOG_CACHE: dict[tuple, Catalog] = {}
_CATALOG_CACHE_SIZE = 8


def catalog_from_entries(entries: list[dict], source: str | None = None) -> Catalog:
    """Build a :class:`Catalog` from entry dicts (the YAML's ``features`` list), checked."""
    problems: list[str] = []
    specs: list[FeatureSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"entry {i} ({entry.get('name', '?')!r})" if isinstance(entry, dict) else f"entry {i}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not a mapping")
            continue
        if "name" in entry:
            if entry["name"] in seen:
                problems.append(f"{where}: duplicate name")
            seen.add(entry["name"])
        missing = [k for k in _COMMON if k not in entry]
        if missing:
            problems.append(f"{where}: missing {missing}")
            continue
        agg = entry["aggregation"]
        if agg not in AGGREGATIONS:
            problems.append(f"{where}: unknown aggregation {agg!r}")
            continue
        params = {k: v for k, v in entry.items() if k not in _COMMON and k not in _OPTIONAL}
        lacking = [p for p in AGGREGATIONS[agg] if p not in params]
        if lacking:
            problems.append(f"{where}: aggregation {agg!r} needs {lacking}")
        legacy = [k for k in entry if str(k).endswith("_direction")]
        if legacy:
            problems.append(f"{where}: {legacy} are no longer read; write "
                            "`direction: {churn: -1, expansion: 1}` (one sign per outcome)")
        directions = entry.get("direction") or {}
        if not isinstance(directions, dict):
            problems.append(f"{where}: direction must be a mapping outcome -> -1 or 1, "
                            f"got {directions!r}")
            directions = {}
        for outcome, sign in directions.items():
            if outcome not in OUTCOME_NAMES:
                problems.append(f"{where}: direction names unknown outcome {outcome!r} "
                                f"(known: {list(OUTCOME_NAMES)})")
            if sign not in DIRECTIONS:
                problems.append(f"{where}: direction of {outcome!r} must be -1, 0 or 1, "
                                f"got {sign!r}")
        if entry["health_dimension"] not in HEALTH_DIMENSIONS:
            problems.append(f"{where}: health_dimension must be one of {HEALTH_DIMENSIONS}")
        if entry["kind"] not in KINDS:
            problems.append(f"{where}: kind must be one of {KINDS}")
        wd = entry["window_days"]
        if wd is not None and (not isinstance(wd, int) or wd <= 0):
            problems.append(f"{where}: window_days must be a positive integer or null")
        if agg == "threshold" and params.get("op") not in COMPARISONS:
            problems.append(f"{where}: op must be one of {COMPARISONS}")
        if agg == "bins":
            edges, labels = params.get("edges", []), params.get("labels", [])
            if len(labels) != len(edges) + 1 or list(edges) != sorted(edges):
                problems.append(f"{where}: bins need sorted edges and len(labels) == len(edges) + 1")
        specs.append(
            FeatureSpec(
                name=entry["name"],
                table=entry["table"],
                window_days=wd,
                aggregation=agg,
                description=entry["description"],
                reason=entry["reason"],
                directions={str(k): int(v) for k, v in directions.items() if v in DIRECTIONS
                            and v != 0},
                health_dimension=entry["health_dimension"],
                kind=entry["kind"],
                params=params,
                reason_missing=entry.get("reason_missing"),
            )
        )
    position = {s.name: i for i, s in enumerate(specs)}
    for i, spec in enumerate(specs):
        for dep in spec.depends_on:
            if dep not in position:
                problems.append(f"{spec.name!r}: depends on unknown feature {dep!r}")
            elif position[dep] >= i:
                problems.append(f"{spec.name!r}: must come after {dep!r} in the catalog")
    if problems:
        raise ConfigError(
            f"feature catalog {source or ''}: {len(problems)} problem(s): " + "; ".join(problems[:20])
        )
    return Catalog(specs, source=source)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists and other non-scalars are values, not missing
        return False


def render_reason(spec: FeatureSpec, value: Any) -> str:
    """The plain sentence explaining ``value`` of ``spec`` to a CS manager.

    Missing values (None, NaN, pd.NA) give ``spec.reason_missing`` (or "<description>: no
    data"). A mapping template picks the sentence by value (numbers compared as integers when
    whole, so ``1.0`` finds key ``1``), falling back to its ``other`` key. ``[one|many]`` in a
    template picks the singular or plural word by the value ("1 invoice [is|are] overdue").
    """
    if _is_missing(value):
        return spec.reason_missing or f"{spec.description}: no data"
    if hasattr(value, "item"):
        value = value.item()
    template = spec.reason
    if isinstance(template, dict):
        key: Any = value
        if isinstance(value, float) and value.is_integer():
            key = int(value)
        chosen = template.get(key, template.get(str(key), template.get("other")))
        if chosen is None:
            return f"{spec.description}: {value}"
        template = chosen
    template = _choose_plural(template, value)
    try:
        return template.format(value=value)
    except (ValueError, TypeError):
        # a numeric format spec met a string (categorical) value: show the value as is
        return _strip_format(template).format(value=value)


_PLURAL = re.compile(r"\[([^|\[\]]*)\|([^|\[\]]*)\]")


def _choose_plural(template: str, value: Any) -> str:
    """``"[person|people]"`` -> "person" when the value reads as one, else "people"."""
    if "[" not in template:
        return template
    try:
        one = round(float(value), 6) == 1.0
    except (TypeError, ValueError):
        one = False
    return _PLURAL.sub(lambda m: m.group(1) if one else m.group(2), template)


def _strip_format(template: str) -> str:
    """``"{value:.0%} of usual"`` -> ``"{value} of usual"`` (for values the spec cannot format)."""
    return re.sub(r"\{value:[^}]*\}", "{value}", template)


def feature_table_markdown(catalog: Catalog) -> str:
    """The catalog as a markdown table (the one in ``docs/features.md`` is generated by this:
    ``python -c "from churnml.features.catalog import *; print(feature_table_markdown(load_catalog()))"``)."""

    def window(spec: FeatureSpec) -> str:
        if spec.window_days is None:
            return "all history"
        off = spec.params.get("offset_days", 0)
        return f"{spec.window_days} d" + (f", ending {off} d before as_of" if off else "")

    def sign(v: int) -> str:
        return {1: "+", -1: "-", 0: "0"}[v]

    lines = [
        "| feature | table | window | aggregation | dimension | kind | "
        + " | ".join(OUTCOME_NAMES) + " | description |",
        "|---|---|---|---|---|---|" + "---|" * len(OUTCOME_NAMES) + "---|",
    ]
    for s in catalog:
        lines.append(
            f"| `{s.name}` | {s.table} | {window(s)} | {s.aggregation} | {s.health_dimension} | "
            f"{s.kind} | " + " | ".join(sign(s.direction(o)) for o in OUTCOME_NAMES)
            + f" | {s.description.replace('|', '/')} |"
        )
    return "\n".join(lines)
