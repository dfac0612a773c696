"""Next best actions: playbooks, expansion gating and readiness (``features/playbooks.yaml``).

Everything here works on whole columns of a scored frame (one row per account); nothing loops
over events. The rules are in the YAML file so that a CS team can change them without code;
:func:`load_playbooks` checks the file once and raises :class:`~churnml.errors.ConfigError`
naming the key that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence, TypeGuard, cast

import numpy as np
import pandas as pd

from churnml.columns import FrameColumns, numeric_column
from churnml.config import features_dir
from churnml.errors import ConfigError
from churnml.features.catalog import Catalog, load_catalog, render_reason
from churnml.health.score import INSUFFICIENT_DATA_TIER, HealthArrays
from churnml.outcomes import OUTCOME_NAMES
from churnml.scoring.alerts import rose_since

SEVERITIES = ("critical", "high", "medium", "low")
READINESS_BANDS = ("ready_now", "ready_soon", "needs_nurture", "not_ready")
COMPARISONS = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal}
#: What each playbook role in ``low_risk_playbooks`` means (the YAML names the playbooks).
LOW_RISK_ROLES = ("expansion_ready", "contraction_risk", "otherwise")


@dataclass(frozen=True)
class Gate:
    """An expansion gating rule: ``name`` (what a CSM reads in
    ``next_best_action.expansion_blocked_by``: what it tests), true when ``feature`` ``op``
    ``value`` holds. A rule whose feature is absent or null for an account does not apply."""

    name: str
    feature: str
    op: str
    value: float


@dataclass(frozen=True)
class Playbook:
    name: str
    action: str
    owner: str
    respond_within: str | None = None
    large_account_action: str | None = None
    large_account_owner: str | None = None
    #: the play's estimated relative effect on the outcome it addresses, before any effect is
    #: measured (0.10 = removes 10% of the churn probability)
    prior_effect: float = 0.0
    #: the outcome the play addresses (churn, expansion or contraction)
    addresses: str = "churn"
    #: never withheld as a holdout (critical plays)
    never_hold_out: bool = False


#: Defaults of the ``uplift:`` rules of ``playbooks.yaml`` (see the file).
UPLIFT_RULES = {"min_holdout": 200, "min_recommended": 400, "min_events": 20}


@dataclass(frozen=True)
class Signal:
    feature: str
    min_value: float
    playbook: str | None = None


@dataclass
class Playbooks:
    """The parsed ``playbooks.yaml`` (see the file for what each field means)."""

    playbooks: dict[str, Playbook]
    signals: dict[str, str]
    dimensions: dict[str, str]
    critical_signals: list[Signal]
    high_signals: list[Signal]
    response_times: dict[str, str]
    risk: dict[str, float]
    gating: dict[str, float]
    readiness_anchors: list[tuple[float, ...]]  # [probability, points] pairs, as configured
    readiness_bands: dict[str, float]
    #: outcome -> the typical size of the outcome's MRR move relative to current MRR (its
    #: revenue column is probability x mrr x share; 1.0 for outcomes not listed, e.g. churn)
    typical_share: dict[str, float]
    default_risk: str
    gates: tuple[Gate, ...]
    low_risk_playbooks: dict[str, str]
    large_value_tiers: tuple[str, ...] = ()
    version: int = 1
    raw: dict = field(default_factory=dict, repr=False)
    #: owner -> actions per week this week's queue may hold (churnml.scoring.queue)
    capacity: dict[str, int] = field(default_factory=dict)
    #: share of each churn-risk decile's candidate actions held out to measure (0 = none)
    holdout_share: float = 0.0
    #: the policy in force: a hash of the file's content apart from ``capacity``
    #: (:func:`policy_version`), written in every output row
    policy_version: str = ""
    #: when an uplift model replaces a play's prior (``uplift:``; ``churnml.models.uplift``):
    #: ``min_holdout``, ``min_recommended``, ``min_events``
    uplift_rules: dict[str, int] = field(default_factory=lambda: dict(UPLIFT_RULES))

    @property
    def no_action_playbook(self) -> str:
        """The regular cadence (``low_risk_playbooks.otherwise``): no action this week."""
        return self.low_risk_playbooks.get("otherwise", "")


def default_playbooks_path() -> Path:
    return features_dir() / "playbooks.yaml"


def load_playbooks(path: str | Path | None = None) -> Playbooks:
    """Read and check ``playbooks.yaml`` (default: the project's ``features/playbooks.yaml``).

    The parsed result is cached by (path, modification time, size) and shared: callers must
    not modify it."""
    import yaml

    path = Path(path) if path is not None else default_playbooks_path()
    if not path.exists():
        raise ConfigError(f"playbooks file not found: {path}")
    # Parsed once per file version: score_frame may be called per request or per chunk.
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    cached = _PLAYBOOKS_CACHE.get(key)
    if cached is not None:
        return cached
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    playbooks = parse_playbooks(raw, source=str(path))
    _PLAYBOOKS_CACHE.clear()  # one version of one file is all a process needs
    _PLAYBOOKS_CACHE[key] = playbooks
    return playbooks


_PLAYBOOKS_CACHE: dict[tuple[str, int, int], Playbooks] = {}


def parse_playbooks(raw: Mapping[str, Any], source: str = "playbooks") -> Playbooks:
    """Build :class:`Playbooks` from the YAML mapping, gathering every problem before raising."""
    problems: list[str] = []

    def need(key: str, kind=dict):
        value = raw.get(key)
        if not isinstance(value, kind):
            problems.append(f"'{key}' must be a {kind.__name__}; got {type(value).__name__}")
            return kind()
        return value

    books = {}
    for name, spec in need("playbooks").items():
        if not isinstance(spec, dict) or not spec.get("action") or not spec.get("owner"):
            problems.append(f"playbook '{name}' needs 'action' and 'owner'")
            continue
        given = spec.get("prior_effect")
        effect = float(given) if _is_number(given) else -1.0
        if not 0 <= effect <= 1:
            problems.append(f"playbook '{name}' needs a 'prior_effect' in [0, 1] (its estimated "
                            f"relative effect before one is measured); got {given!r}")
            effect = 0.0
        addresses = str(spec.get("addresses", "churn"))
        if addresses not in OUTCOME_NAMES:
            problems.append(f"playbook '{name}': 'addresses' must be one of "
                            f"{list(OUTCOME_NAMES)}; got {addresses!r}")
        never = spec.get("never_hold_out", False)
        if not isinstance(never, bool):
            problems.append(f"playbook '{name}': 'never_hold_out' must be true or false")
            never = False
        books[name] = Playbook(
            name=name,
            action=str(spec["action"]),
            owner=str(spec["owner"]),
            respond_within=spec.get("respond_within"),
            large_account_action=spec.get("large_account_action"),
            large_account_owner=spec.get("large_account_owner"),
            prior_effect=effect,
            addresses=addresses,
            never_hold_out=never,
        )

    def signal_list(key: str, with_playbook: bool) -> list[Signal]:
        out = []
        for item in need(key, list):
            try:
                out.append(
                    Signal(str(item["feature"]), float(item["min_value"]), item.get("playbook"))
                )
            except (KeyError, TypeError, ValueError):
                problems.append(f"'{key}' entries need 'feature' and a numeric 'min_value': {item!r}")
                continue
            if with_playbook and out[-1].playbook not in books:
                problems.append(f"'{key}' refers to unknown playbook {out[-1].playbook!r}")
        return out

    critical = signal_list("critical_signals", True)
    high = signal_list("high_signals", False)
    signals = {str(k): str(v) for k, v in need("signals").items()}
    dimensions = {str(k): str(v) for k, v in need("dimensions").items()}
    default_risk = str(raw.get("default_risk", ""))
    low_risk = {str(k): str(v) for k, v in need("low_risk_playbooks").items()}
    if sorted(low_risk) != sorted(LOW_RISK_ROLES):
        problems.append(f"'low_risk_playbooks' needs exactly {list(LOW_RISK_ROLES)}")
    for where, name in [*(("signals", v) for v in signals.values()),
                        *(("dimensions", v) for v in dimensions.values()),
                        ("default_risk", default_risk),
                        *(("low_risk_playbooks", v) for v in low_risk.values())]:
        if name not in books:
            problems.append(f"'{where}' refers to unknown playbook {name!r}")

    response_times = {str(k): str(v) for k, v in need("response_times").items()}
    missing = [s for s in SEVERITIES if s not in response_times]
    if missing:
        problems.append(f"'response_times' misses {missing}")
    risk = {str(k): float(v) for k, v in need("risk").items()}
    for key in ("high_churn_probability", "medium_churn_probability", "critical_health",
                "high_health", "medium_health"):
        if key not in risk:
            problems.append(f"'risk' misses '{key}'")
    bars = [risk[k] for k in ("critical_health", "high_health", "medium_health") if k in risk]
    if len(bars) == 3 and not bars[0] <= bars[1] <= bars[2]:
        # an account that stays below critical_health is high from its second week on
        problems.append("'risk' needs critical_health <= high_health <= medium_health; got "
                        f"{bars}")
    gates = []
    for item in need("expansion_gating", list):
        try:
            gate = Gate(str(item["name"]), str(item["feature"]), str(item["op"]),
                        float(item["value"]))
        except (KeyError, TypeError, ValueError):
            problems.append(f"'expansion_gating' entries need name, feature, op and a numeric "
                            f"value: {item!r}")
            continue
        if gate.op not in COMPARISONS:
            problems.append(f"'expansion_gating' rule {gate.name!r}: op must be one of "
                            f"{list(COMPARISONS)}")
        gates.append(gate)
    gating = {g.name: g.value for g in gates}
    readiness = need("expansion_readiness")
    anchors = [tuple(map(float, a)) for a in readiness.get("anchors", [])]
    probs = [a[0] for a in anchors]
    if len(anchors) < 2 or probs != sorted(probs) or probs[0] != 0.0 or probs[-1] != 1.0:
        problems.append("'expansion_readiness.anchors' must be increasing [probability, points] "
                        "pairs from probability 0 to 1")
    bands = {str(k): float(v) for k, v in readiness.get("bands", {}).items()}
    if sorted(bands) != sorted(READINESS_BANDS[:3]):
        problems.append(f"'expansion_readiness.bands' needs exactly {list(READINESS_BANDS[:3])}")
    shares = {}
    for outcome, share in need("typical_share").items():
        if outcome not in OUTCOME_NAMES:
            problems.append(f"'typical_share' names unknown outcome {outcome!r}")
        elif not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 10:
            problems.append(f"'typical_share.{outcome}' must be a number in [0, 10]; "
                            f"got {share!r}")
        else:
            shares[str(outcome)] = float(share)
    capacity: dict[str, int] = {}
    for owner, value in need("capacity").items():
        if not _is_number(value) or value < 0 or value != int(value):
            problems.append(f"'capacity.{owner}' must be a whole number of actions per week "
                            f">= 0; got {value!r}")
        else:
            capacity[str(owner)] = int(value)
    owners = {b.owner for b in books.values()} | {b.large_account_owner for b in books.values()
                                                    if b.large_account_owner}
    uncovered = sorted(owners - set(capacity))
    if uncovered and isinstance(raw.get("capacity"), dict):
        problems.append(f"'capacity' misses the owners {uncovered} (actions per week each "
                        "owner can work; 0 = nothing queued)")
    share = raw.get("holdout_share", 0.0)
    if not _is_number(share) or not 0 <= share < 1:
        problems.append(f"'holdout_share' must be a number in [0, 1); got {share!r}")
        share = 0.0
    rules = dict(UPLIFT_RULES)
    given = raw.get("uplift", {}) or {}
    if not isinstance(given, dict):
        problems.append(f"'uplift' must be a mapping of {sorted(UPLIFT_RULES)}; got {given!r}")
        given = {}
    for key, value in given.items():
        if key not in UPLIFT_RULES:
            problems.append(f"'uplift.{key}' is not a known rule; known: {sorted(UPLIFT_RULES)}")
        elif not _is_number(value) or value < 1 or value != int(value):
            problems.append(f"'uplift.{key}' must be a whole number >= 1; got {value!r}")
        else:
            rules[str(key)] = int(value)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return Playbooks(
        playbooks=books, signals=signals, dimensions=dimensions, critical_signals=critical,
        high_signals=high, response_times=response_times, risk=risk, gating=gating,
        readiness_anchors=anchors, readiness_bands=bands,
        typical_share=shares, default_risk=default_risk, gates=tuple(gates),
        low_risk_playbooks=low_risk,
        large_value_tiers=tuple(raw.get("large_value_tiers", ()) or ()),
        version=int(raw.get("version", 1)), raw=dict(raw),
        capacity=capacity, holdout_share=float(share), policy_version=policy_version(raw),
        uplift_rules=rules,
    )


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def policy_version(raw: Mapping[str, Any]) -> str:
    """The policy version of a playbooks mapping: ``p`` + 12 hex digits of blake2b over its
    content apart from ``capacity`` (staffing changes the queue's length, not the policy) and
    ``uplift`` (when a measured effect replaces the prior: the order, not who is held out),
    keys sorted. Any change to a play, a signal, a threshold, a prior or the holdout share
    gives a new version (and a new holdout draw)."""
    import hashlib
    import json

    content = {k: v for k, v in raw.items() if k not in ("capacity", "uplift")}
    text = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
    return "p" + hashlib.blake2b(text.encode("utf-8"), digest_size=6).hexdigest()


def _values(frame: pd.DataFrame, name: str, columns: FrameColumns | None = None) -> np.ndarray | None:
    """The column as float64 (non-numbers NaN), None when absent (``columns`` read first)."""
    return numeric_column(columns, frame, name)


def _bool_matrix(columns: dict[str, np.ndarray], n: int) -> np.ndarray:
    if not columns:
        return np.zeros((n, 0), dtype=bool)
    return np.column_stack(list(columns.values())).astype(bool, copy=False).reshape(n, len(columns))


def _gate_values(frame: pd.DataFrame, playbooks: Playbooks,
                 columns: FrameColumns | None = None) -> dict[str, np.ndarray]:
    out = {}
    n = columns.n if columns is not None else len(frame)
    for gate in playbooks.gates:
        arr = _values(frame, gate.feature, columns)
        if arr is None:
            out[gate.name] = np.zeros(n, dtype=bool)
            continue
        with np.errstate(invalid="ignore"):
            hit = COMPARISONS[gate.op](arr, gate.value)
        out[gate.name] = np.where(np.isnan(arr), False, hit)
    return out


def expansion_gates(frame: pd.DataFrame, playbooks: Playbooks, *,
                    columns: FrameColumns | None = None) -> pd.DataFrame:
    """One boolean column per gating rule (True = this rule blocks an expansion pitch).

    ``frame`` has one row per account with ``health_score`` and the features the gates of
    ``playbooks.yaml`` name. A rule whose column is absent, or null for an account, does not block that
    account (no data is not evidence of a problem; the health score already reflects it).
    ``columns``: a FrameColumns of ``frame`` (with ``health_score`` added when the frame has
    none); the same answer.
    """
    return pd.DataFrame(_gate_values(frame, playbooks, columns), index=frame.index)


class Gates(NamedTuple):
    """Gating rules as arrays: ``names`` (rule names) and ``values`` (n, rules) booleans."""

    names: list[str]
    values: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, playbooks: Playbooks,
           columns: FrameColumns | None = None) -> "Gates":
        """The rules of :func:`expansion_gates` without the frame."""
        values = _gate_values(frame, playbooks, columns)
        n = columns.n if columns is not None else len(frame)
        return cls(list(values), _bool_matrix(values, n))

    def blocked(self) -> np.ndarray:
        """Whether any rule blocks the account."""
        # cast: numpy's stubs type any(axis=...) as a scalar or an array; the matrix's rows
        # give an array
        return cast(np.ndarray, self.values.any(axis=1))


def readiness_points(expansion_probability, playbooks: Playbooks) -> np.ndarray:
    """Readiness on seed 002's 0-100 scale: linear between the configured probability anchors."""
    xs, ys = zip(*playbooks.readiness_anchors)
    p = np.clip(np.asarray(expansion_probability, dtype="float64"), 0.0, 1.0)
    return np.interp(p, xs, ys)


def expansion_readiness(expansion_probability, blocked, playbooks: Playbooks) -> np.ndarray:
    """``ready_now`` / ``ready_soon`` / ``needs_nurture`` / ``not_ready`` per account.

    Bands on :func:`readiness_points` (80+, 60-79, 40-59, below 40 by default); an account that
    any gating rule blocks is capped at ``needs_nurture``.
    """
    points = readiness_points(expansion_probability, playbooks)
    bands = playbooks.readiness_bands
    label = np.select(
        [points >= bands["ready_now"], points >= bands["ready_soon"],
         points >= bands["needs_nurture"]],
        ["ready_now", "ready_soon", "needs_nurture"],
        default="not_ready",
    ).astype(object)
    blocked = np.asarray(blocked, dtype=bool)
    label[blocked & np.isin(label, ["ready_now", "ready_soon"])] = "needs_nurture"
    return label


def _aligned_before(frame: pd.DataFrame, week_before: pd.DataFrame | None, feature: str,
                    columns: FrameColumns | None = None) -> np.ndarray | None:
    """The feature's value a week before as_of per row of ``frame`` (by ``account_id``; NaN
    for an account the book did not have then), None without ``week_before`` or the column."""
    if week_before is None or feature not in week_before.columns:
        return None
    if columns is not None and columns.n <= 64:
        ids = [str(i) for i in columns.objects(["account_id"])["account_id"]]
    else:
        ids = frame["account_id"].astype(str).tolist()
    values = pd.Series(pd.to_numeric(week_before[feature], errors="coerce").to_numpy("float64"),
                       index=week_before["account_id"].astype(str).to_numpy())
    values = values[~values.index.duplicated()]
    return values.reindex(ids).to_numpy(dtype="float64")


def _active_values(frame: pd.DataFrame, signals: list[Signal],
                   week_before: pd.DataFrame | None = None,
                   columns: FrameColumns | None = None) -> dict[str, np.ndarray]:
    """Per signal, whether it is active for each account: its feature is known and >=
    ``min_value`` and, when ``week_before`` is given, it rose since a week before as_of (a
    90-day count that stays at 1 is last month's news, not today's emergency). An absent or
    null feature never activates a signal (missing is unknown, not evidence)."""
    out = {}
    n = columns.n if columns is not None else len(frame)
    for sig in signals:
        values = _values(frame, sig.feature, columns)
        if values is None:
            out[sig.feature] = np.zeros(n, dtype=bool)
            continue
        with np.errstate(invalid="ignore"):
            hit = ~np.isnan(values) & (values >= sig.min_value)
        if week_before is not None:
            hit &= rose_since(values, _aligned_before(frame, week_before, sig.feature, columns))
        out[sig.feature] = hit
    return out


def known_health(parts: HealthArrays) -> np.ndarray:
    """The health score of :meth:`HealthScore.score_arrays`, NaN where its tier is
    ``insufficient_data`` (too little known to judge)."""
    unknown = np.asarray(parts.tier_codes) == len(parts.config.tiers)
    return np.where(unknown, np.nan, np.asarray(parts.score, dtype="float64"))


def entered_critical_health(health, health_before, playbooks: Playbooks) -> np.ndarray:
    """Whether the health score is below ``risk.critical_health`` and was not a week before
    (at or above it, or unknown: a new account or too little data then). ``health``: NaN =
    unknown (never critical); ``health_before``: None when nothing is known about the week
    before (a lone request): then every health score below the bar counts as new."""
    bar = playbooks.risk["critical_health"]
    with np.errstate(invalid="ignore"):
        below = np.asarray(health, dtype="float64") < bar
        if health_before is not None:
            below &= ~(np.asarray(health_before, dtype="float64") < bar)
    return below


def risk_severity(frame: pd.DataFrame, churn_probability, playbooks: Playbooks,
                  week_before: pd.DataFrame | None = None, *,
                  columns: FrameColumns | None = None,
                  health_tier: Sequence[str] | None = None,
                  critical: Mapping[str, np.ndarray] | None = None,
                  health_before: np.ndarray | None = None) -> np.ndarray:
    """``critical`` / ``high`` / ``medium`` / ``low`` per account (rules in playbooks.yaml).
    A health score of tier ``insufficient_data`` (too little known to judge) and an unknown
    churn probability (no churn model) raise nothing. ``columns``: a FrameColumns of
    ``frame`` (the same answer, no Series). ``critical``: the critical signals' activity
    (``_active_values`` of them with ``week_before``) when the caller has it.

    Critical means a change: a critical signal that rose since a week before, or a health
    score that entered the critical tier (:func:`entered_critical_health`; ``health_before``:
    each row's health score a week before, NaN unknown, from
    ``churnml.scoring.compare.health_week_before``). An account that stays below
    ``risk.critical_health`` is ``high`` from its second week on (it is below
    ``risk.high_health`` too). Without ``health_before`` every low score counts as new."""
    risk = playbooks.risk
    p = np.asarray(churn_probability, dtype="float64")
    p = np.where(np.isnan(p), 0.0, p)
    n = columns.n if columns is not None else len(frame)
    health = _values(frame, "health_score", columns)
    h = np.full(n, 100.0) if health is None else np.where(np.isnan(health), 100.0, health)
    if health_tier is not None:
        h = np.where(np.asarray(health_tier, dtype=object) == INSUFFICIENT_DATA_TIER, 100.0, h)
    if critical is None:
        critical = _active_values(frame, playbooks.critical_signals, week_before, columns)
    crit = _bool_matrix(dict(critical), n).any(axis=1)
    high = _bool_matrix(_active_values(frame, playbooks.high_signals, None, columns), n).any(axis=1)
    return np.select(
        [crit | entered_critical_health(h, health_before, playbooks),
         high | (p >= risk["high_churn_probability"]) | (h < risk["high_health"]),
         (p >= risk["medium_churn_probability"]) | (h < risk["medium_health"])],
        ["critical", "high", "medium"],
        default="low",
    ).astype(object)


def _percent(p: float) -> str:
    return f"{p:.0%}" if p >= 0.01 or p == 0 else "under 1%"


def next_best_actions(
    frame: pd.DataFrame,
    probability: Mapping[str, np.ndarray],
    reasons: Mapping[str, list[list[dict]]],
    readiness: np.ndarray,
    gates: "pd.DataFrame | Gates",
    playbooks: Playbooks,
    feature_dimensions: Mapping[str, str] | None = None,
    *,
    week_before: pd.DataFrame | None = None,
    columns: FrameColumns | None = None,
    health_tier: Sequence[str] | None = None,
    catalog: Catalog | None = None,
    health_before: np.ndarray | None = None,
) -> list[dict]:
    """The recommended action per account (order of ``frame``).

    Each is ``{playbook, action, owner, severity, respond_within, reason_feature, reason,
    expansion_blocked_by}``, chosen as ``playbooks.yaml`` describes: the first critical signal
    that is active (known, over its minimum and risen since a week before as_of) gives its
    playbook and its sentence; otherwise, for an account at risk, the strongest churn reason
    that raises the probability, is known for the account and maps to a playbook; a low-risk
    account gets the ``low_risk_playbooks``: expansion when ready, the contraction play when
    the contraction probability reaches ``risk.high_contraction_probability``, else the
    regular cadence. ``reason`` is never empty: a sentence about the account's own data.
    ``probability`` / ``reasons``: per outcome name (an outcome without a model: NaN / []).
    ``gates``: :func:`expansion_gates`' frame or a :class:`Gates`; ``columns``: a
    FrameColumns of ``frame`` (with ``health_score`` added when the frame has none).
    ``health_before``: each row's health score a week before as_of (NaN unknown; see
    :func:`risk_severity`).
    """
    feature_dimensions = dict(feature_dimensions or {})
    catalog = catalog if catalog is not None else _catalog()
    n = columns.n if columns is not None else len(frame)
    nan = np.full(n, np.nan)
    churn_p = np.asarray(probability.get("churn", nan), dtype="float64")
    contraction_p = np.asarray(probability.get("contraction", nan), dtype="float64")
    churn_reasons = reasons.get("churn") or [[] for _ in range(n)]
    contraction_reasons = reasons.get("contraction") or [[] for _ in range(n)]
    expansion_reasons = reasons.get("expansion") or [[] for _ in range(n)]
    critical = _active_values(frame, playbooks.critical_signals, week_before, columns)
    severity = risk_severity(frame, churn_p, playbooks, week_before, columns=columns,
                             health_tier=health_tier, critical=critical,
                             health_before=health_before)
    crit_names = list(critical)
    crit_values = _bool_matrix(critical, n)
    crit_playbook = {s.feature: s.playbook for s in playbooks.critical_signals}
    if isinstance(gates, Gates):
        gate_names = np.asarray(gates.names, dtype=object)
        gate_values = gates.values
    else:
        gate_names = np.asarray(gates.columns, dtype=object)
        gate_values = gates.to_numpy(dtype=bool)
    tiers: list | np.ndarray
    if columns is not None and columns.in_frame("value_tier"):
        tiers = columns.objects(["value_tier"])["value_tier"]
    elif "value_tier" in frame.columns:
        tiers = frame["value_tier"].astype("object").to_numpy()
    else:
        tiers = np.full(n, None, dtype=object)
    large = set(playbooks.large_value_tiers)
    health = _values(frame, "health_score", columns)
    tier_names = list(health_tier) if health_tier is not None else [None] * n
    contraction_bar = playbooks.risk.get("high_contraction_probability", np.inf)
    low_risk = playbooks.low_risk_playbooks

    def playbook_for(feature: str) -> str | None:
        name = playbooks.signals.get(feature)
        if name is None:
            name = playbooks.dimensions.get(feature_dimensions.get(feature, ""))
        return name

    # the features' values, to tell a known reason from a missing one ("no data")
    known_cache: dict[str, np.ndarray | None] = {}

    def known(feature: str, i: int) -> bool:
        if feature not in known_cache:
            values = _values(frame, feature, columns)
            if values is None and columns is not None and columns.in_frame(feature):
                col = frame[feature]
                values = np.where(col.isna().to_numpy(), np.nan, 0.0)
            known_cache[feature] = values
        values = known_cache[feature]
        return values is not None and not np.isnan(values[i])

    def first_known(reason_list: list[dict], i: int, mapped: bool) -> tuple[str, str, str | None]:
        """(feature, text, playbook) of the strongest raising reason known for the account."""
        for r in reason_list or []:
            feature = str(r.get("feature"))
            if (r.get("contribution") or 0.0) <= 0 or not known(feature, i):
                continue
            candidate = playbook_for(feature)
            if candidate is not None or not mapped:
                return feature, str(r.get("text") or ""), candidate
        return "", "", None

    def summary(i: int) -> str:
        parts = []
        if not np.isnan(churn_p[i]):
            parts.append(f"churn probability {_percent(churn_p[i])}")
        tier = tier_names[i]
        if tier == INSUFFICIENT_DATA_TIER:
            parts.append("too little data for a health score")
        elif health is not None and not np.isnan(health[i]):
            parts.append(f"health {health[i]:.0f}" + (f" ({tier.replace('_', ' ')})" if tier
                                                      else ""))
        return ", ".join(parts) if parts else "no risk signal is known"

    actions = []
    for i in range(n):  # one decision per account row (no events involved)
        sev = severity[i]
        reason_feature, reason_text, name = "", "", None
        if sev == "critical" and crit_values[i].any():
            reason_feature = crit_names[int(np.argmax(crit_values[i]))]
            name = crit_playbook[reason_feature]
            reason_text = _signal_sentence(catalog, frame, columns, reason_feature, i)
        elif sev != "low":
            reason_feature, reason_text, name = first_known(churn_reasons[i], i, mapped=True)
            if name is None:
                name = playbooks.default_risk
                reason_feature, reason_text, _ = first_known(churn_reasons[i], i, mapped=False)
            if not reason_text:
                reason_text = f"{sev} risk: {summary(i)}"
        elif readiness[i] in ("ready_now", "ready_soon"):
            name = low_risk["expansion_ready"]
            reason_feature, reason_text, _ = first_known(expansion_reasons[i], i, mapped=False)
            reason_text = reason_text or f"expansion readiness is {readiness[i].replace('_', ' ')}"
        elif not np.isnan(contraction_p[i]) and contraction_p[i] >= contraction_bar:
            name = low_risk["contraction_risk"]
            reason_feature, reason_text, _ = first_known(contraction_reasons[i], i, mapped=False)
            prefix = f"contraction probability {_percent(contraction_p[i])}"
            reason_text = f"{prefix}: {reason_text}" if reason_text else prefix
        else:
            name = low_risk["otherwise"]
            reason_text = f"no risk signal this week: {summary(i)}"
        assert name is not None  # critical signals' playbooks are checked on load
        book = playbooks.playbooks[name]
        is_large = tiers[i] in large
        actions.append({
            "playbook": name,
            "action": (book.large_account_action if is_large and book.large_account_action
                       else book.action),
            "owner": (book.large_account_owner if is_large and book.large_account_owner
                      else book.owner),
            "severity": sev,
            "respond_within": book.respond_within or playbooks.response_times[sev],
            "reason_feature": reason_feature,
            "reason": reason_text,
            "expansion_blocked_by": [str(g) for g in gate_names[gate_values[i]]],
        })
    return actions


def _signal_sentence(catalog: Catalog, frame: pd.DataFrame, columns: FrameColumns | None,
                     feature: str, i: int) -> str:
    """The catalog's sentence for a signal's value on row ``i`` (the signal fired, so the
    value is known)."""
    values = _values(frame, feature, columns)
    value = None if values is None else float(values[i])
    spec = catalog.get(feature)
    if spec is None:
        return f"{feature.replace('_', ' ')} is {value:g}" if value is not None else feature
    return render_reason(spec, value)


def _catalog() -> Catalog:
    """The default feature catalog (reason sentences); ``load_catalog`` re-reads it only when
    the file changed."""
    return load_catalog()
