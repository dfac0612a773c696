"""Next best actions: playbooks, expansion gating and readiness (``features/playbooks.yaml``).

Everything here works on whole columns of a scored frame (one row per account); nothing loops
over events. The rules are in the YAML file so that a CS team can change them without code;
:func:`load_playbooks` checks the file once and raises :class:`~churnml.errors.ConfigError`
naming the key that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np
import pandas as pd

from churnml.columns import FrameColumns, numeric_column
from churnml.errors import ConfigError

SEVERITIES = ("critical", "high", "medium", "low")
READINESS_BANDS = ("ready_now", "ready_soon", "needs_nurture", "not_ready")

# gate name -> (feature column, comparison, yaml key); the names are what a CSM reads in
# ``next_best_action.expansion_blocked_by``.
_GATES = (
    ("health_below_75", "health_score", "lt", "health_below"),
    ("nps_6_or_lower", "nps_latest", "le", "nps_at_most"),
    ("first_60_days", "tenure_days", "lt", "first_days"),
    ("overdue_invoices", "overdue_invoices", "gt", "overdue_invoices_above"),
    ("open_escalation", "escalations_90d", "gt", "open_escalations_above"),
)


@dataclass(frozen=True)
class Playbook:
    name: str
    action: str
    owner: str
    respond_within: str | None = None
    large_account_action: str | None = None
    large_account_owner: str | None = None


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
    readiness_anchors: list[tuple[float, float]]
    readiness_bands: dict[str, float]
    typical_expansion_share: float
    default_risk: str
    large_value_tiers: tuple[str, ...] = ()
    version: int = 1
    raw: dict = field(default_factory=dict, repr=False)


def default_playbooks_path() -> Path:
    from churnml.config import features_dir

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
        books[name] = Playbook(
            name=name,
            action=str(spec["action"]),
            owner=str(spec["owner"]),
            respond_within=spec.get("respond_within"),
            large_account_action=spec.get("large_account_action"),
            large_account_owner=spec.get("large_account_owner"),
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
    for where, name in [*(("signals", v) for v in signals.values()),
                        *(("dimensions", v) for v in dimensions.values()),
                        ("default_risk", default_risk),
                        ("playbooks", "expansion_conversation"), ("playbooks", "keep_warm")]:
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
    gating = {str(k): float(v) for k, v in need("expansion_gating").items()}
    for _, _, _, key in _GATES:
        if key not in gating:
            problems.append(f"'expansion_gating' misses '{key}'")
    readiness = need("expansion_readiness")
    anchors = [tuple(map(float, a)) for a in readiness.get("anchors", [])]
    probs = [a[0] for a in anchors]
    if len(anchors) < 2 or probs != sorted(probs) or probs[0] != 0.0 or probs[-1] != 1.0:
        problems.append("'expansion_readiness.anchors' must be increasing [probability, points] "
                        "pairs from probability 0 to 1")
    bands = {str(k): float(v) for k, v in readiness.get("bands", {}).items()}
    if sorted(bands) != sorted(READINESS_BANDS[:3]):
        problems.append(f"'expansion_readiness.bands' needs exactly {list(READINESS_BANDS[:3])}")
    share = raw.get("typical_expansion_share")
    if not isinstance(share, (int, float)) or not 0 <= share <= 10:
        problems.append(f"'typical_expansion_share' must be a number in [0, 10]; got {share!r}")
        share = 0.0
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return Playbooks(
        playbooks=books, signals=signals, dimensions=dimensions, critical_signals=critical,
        high_signals=high, response_times=response_times, risk=risk, gating=gating,
        readiness_anchors=anchors, readiness_bands=bands,
        typical_expansion_share=float(share), default_risk=default_risk,
        large_value_tiers=tuple(raw.get("large_value_tiers", ()) or ()),
        version=int(raw.get("version", 1)), raw=dict(raw),
    )


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
    for name, column, op, key in _GATES:
        arr = _values(frame, column, columns)
        if arr is None:
            out[name] = np.zeros(n, dtype=bool)
            continue
        threshold = playbooks.gating[key]
        with np.errstate(invalid="ignore"):
            hit = {"lt": arr < threshold, "le": arr <= threshold, "gt": arr > threshold}[op]
        out[name] = np.where(np.isnan(arr), False, hit)
    return out


def expansion_gates(frame: pd.DataFrame, playbooks: Playbooks, *,
                    columns: FrameColumns | None = None) -> pd.DataFrame:
    """One boolean column per gating rule (True = this rule blocks an expansion pitch).

    ``frame`` has one row per account with ``health_score`` and the features named in
    ``_GATES``. A rule whose column is absent, or null for an account, does not block that
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
        return self.values.any(axis=1)


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


def _active_values(frame: pd.DataFrame, signals: list[Signal],
                   previous: pd.DataFrame | None = None,
                   columns: FrameColumns | None = None) -> dict[str, np.ndarray]:
    out = {}
    prev_values = None
    n = columns.n if columns is not None else len(frame)
    if previous is not None and len(previous) and "account_id" in previous.columns:
        prev_values = previous.drop_duplicates("account_id").set_index(
            previous["account_id"].drop_duplicates().astype(str))
    keys = None
    if prev_values is not None and "account_id" in frame.columns:
        keys = frame["account_id"].astype(str)
    for sig in signals:
        values = _values(frame, sig.feature, columns)
        if values is None:
            out[sig.feature] = np.zeros(n, dtype=bool)
            continue
        now = np.where(np.isnan(values), -np.inf, values)  # as fillna(-inf)
        hit = now >= sig.min_value
        if prev_values is not None and keys is not None and sig.feature in prev_values.columns:
            before = pd.to_numeric(keys.map(prev_values[sig.feature]), errors="coerce")
            before = before.to_numpy(dtype="float64")
            hit &= np.isnan(before) | (now > before)
        out[sig.feature] = hit
    return out


def _active(frame: pd.DataFrame, signals: list[Signal],
            previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per signal, whether it is active for each account: its feature is >= min_value and,
    when last week's value of the feature is known for the account, it rose since then (a
    90-day count that stays at 1 is last month's news, not today's emergency)."""
    return pd.DataFrame(_active_values(frame, signals, previous), index=frame.index)


def risk_severity(frame: pd.DataFrame, churn_probability, playbooks: Playbooks,
                  previous: pd.DataFrame | None = None, *,
                  columns: FrameColumns | None = None) -> np.ndarray:
    """``critical`` / ``high`` / ``medium`` / ``low`` per account (rules in playbooks.yaml).
    ``columns``: a FrameColumns of ``frame`` (the same answer, no Series)."""
    risk = playbooks.risk
    p = np.asarray(churn_probability, dtype="float64")
    n = columns.n if columns is not None else len(frame)
    health = _values(frame, "health_score", columns)
    h = np.full(n, 100.0) if health is None else np.where(np.isnan(health), 100.0, health)
    crit = _bool_matrix(_active_values(frame, playbooks.critical_signals, previous, columns), n).any(axis=1)
    high = _bool_matrix(_active_values(frame, playbooks.high_signals, None, columns), n).any(axis=1)
    return np.select(
        [crit | (h < risk["critical_health"]),
         high | (p >= risk["high_churn_probability"]) | (h < risk["high_health"]),
         (p >= risk["medium_churn_probability"]) | (h < risk["medium_health"])],
        ["critical", "high", "medium"],
        default="low",
    ).astype(object)


def next_best_actions(
    frame: pd.DataFrame,
    churn_probability,
    churn_reasons: list[list[dict]],
    readiness: np.ndarray,
    gates: pd.DataFrame,
    playbooks: Playbooks,
    feature_dimensions: Mapping[str, str] | None = None,
    previous: pd.DataFrame | None = None,
    *,
    columns: FrameColumns | None = None,
) -> list[dict]:
    """The recommended action per account (order of ``frame``).

    Each is ``{playbook, action, owner, severity, respond_within, reason_feature, reason,
    expansion_blocked_by}``: the playbook chosen as described in ``playbooks.yaml`` from the
    account's critical signals and its main churn reason (the strongest reason that raises the
    probability and maps to a playbook), ``reason_feature``/``reason`` that reason (empty for
    expansion / keep-warm actions unless a signal drove it), and ``expansion_blocked_by`` the
    gating rules that block an expansion pitch. ``previous``: last week's rows with the
    critical signals' features (``account_id`` + feature columns), so that a critical signal
    counts in the week it appears, not for the whole feature window.
    ``gates``: :func:`expansion_gates`' frame or a :class:`Gates`; ``columns``: a FrameColumns
    of ``frame`` (with ``health_score`` added when the frame has none): the same answer with
    less pandas work.
    """
    feature_dimensions = dict(feature_dimensions or {})
    n = columns.n if columns is not None else len(frame)
    severity = risk_severity(frame, churn_probability, playbooks, previous, columns=columns)
    critical = _active_values(frame, playbooks.critical_signals, previous, columns)
    crit_names = list(critical)
    crit_values = _bool_matrix(critical, n)
    crit_playbook = {s.feature: s.playbook for s in playbooks.critical_signals}
    if isinstance(gates, Gates):
        gate_names = np.asarray(gates.names, dtype=object)
        gate_values = gates.values
    else:
        gate_names = np.asarray(gates.columns, dtype=object)
        gate_values = gates.to_numpy(dtype=bool)
    if columns is not None and columns.in_frame("value_tier"):
        tiers = columns.objects(["value_tier"])["value_tier"]
    elif "value_tier" in frame.columns:
        tiers = frame["value_tier"].astype("object").to_numpy()
    else:
        tiers = np.full(n, None, dtype=object)
    large = set(playbooks.large_value_tiers)

    def playbook_for(feature: str) -> str | None:
        name = playbooks.signals.get(feature)
        if name is None:
            name = playbooks.dimensions.get(feature_dimensions.get(feature, ""))
        return name

    actions = []
    for i in range(n):  # one decision per account row (no events involved)
        sev = severity[i]
        reason_feature, reason_text, name = "", "", None
        if sev == "critical" and crit_values[i].any():
            reason_feature = crit_names[int(np.argmax(crit_values[i]))]
            name = crit_playbook[reason_feature]
            for r in churn_reasons[i] or []:
                if r.get("feature") == reason_feature:
                    reason_text = r.get("text") or ""
        elif sev != "low":
            for r in churn_reasons[i] or []:
                if (r.get("contribution") or 0.0) <= 0:
                    continue
                candidate = playbook_for(str(r.get("feature")))
                if candidate is not None:
                    name = candidate
                    reason_feature, reason_text = str(r.get("feature")), r.get("text") or ""
                    break
            if name is None:
                name = playbooks.default_risk
                first = next((r for r in churn_reasons[i] or []
                              if (r.get("contribution") or 0.0) > 0), None)
                if first is not None:
                    reason_feature, reason_text = str(first.get("feature")), first.get("text") or ""
        else:
            name = "expansion_conversation" if readiness[i] in ("ready_now", "ready_soon") \
                else "keep_warm"
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
