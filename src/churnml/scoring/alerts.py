"""Week-over-week alerts on the scored book (DOMAIN.md, "Alerts").

Alert names (a CS manager reads them in the queue), in the order they are listed per account:

- ``health_below_30`` / ``health_below_50`` / ``health_below_70``: the score crossed below the
  threshold since last week (previous >= t > current). Escalating: only the most severe
  threshold crossed this week is raised (falling from 75 to 45 raises ``health_below_50``).
- ``weekly_drop``: previous - current >= ``weekly_drop_points`` (15 by default).
- ``monthly_drop``: the highest score in the 30 days before this as_of (history and
  last week) minus the current score >= ``monthly_drop_points`` (20), raised on a week the score fell again (so a
  decline is reported when it reaches 20 points and while it deepens, not every week after).
- ``unusual_drop``: noise-aware drop. The account's own weekly changes in the history (at
  least ``min_weeks`` of them) give a robust standard deviation ``1.4826 * MAD``; this week's
  drop counts when it exceeds ``max(k * robust_std, floor_points)`` (k = 3, floor 5 points).
  A stable account dropping 8 points is unusual; an account that swings 10 points a week is not.
- ``entered_lower_tier``: the tier is lower than last week's.
- ``expansion_review``: rose into the top tier (thriving) from a lower tier.
- ``nps_detractor_received``: the latest NPS response is a detractor (``nps_latest`` <= 6, or
  ``nps_detractor`` = 1) and it arrived since last week (``days_since_last_nps`` < days since
  the previous as_of; ``new_nps_within_days`` = 7 when there is no previous week).
- ``no_recent_contact``: ``days_since_last_contact`` >= ``no_contact_days`` (21): a state
  alert, raised every week it holds (it asks for an action until someone reaches the account).
- ``champion_left``: ``champion_left_180d`` rose since a week before as_of (the book's value
  then, ``week_before``; see ``churnml.scoring.compare``).

The rules are a table (:data:`ALERT_RULES`, in the style of the feature builders' registry):
each names what it tests, the features it reads and those it compares with a week before; a
function per rule computes it on arrays. With no previous week (or an account absent from it)
the rules that need the previous score are not raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnml.columns import FrameColumns, numeric_column
from churnml.errors import SchemaError, UsageError
from churnml.health.config import HealthConfig, load_health_config


@dataclass(frozen=True)
class AlertRule:
    """One alert: its name (what a CS manager reads: what it tests, never a number the
    configuration can change), what it means, the features it reads, the features it
    compares with a week before ``as_of`` and whether it needs last week's score."""

    name: str
    meaning: str
    reads: tuple[str, ...] = ()
    compares: tuple[str, ...] = ()
    needs_previous_score: bool = False


#: The alert rules, in the order an account's alerts are listed. ``health_below`` stands for
#: one alert per threshold of the configuration's ``falls_below`` (``health_below_<t>``).
ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule("health_below", "the score crossed below a threshold since last week (the most "
              "severe one crossed)", needs_previous_score=True),
    AlertRule("weekly_drop", "the score fell by at least weekly_drop_points in a week",
              needs_previous_score=True),
    AlertRule("monthly_drop", "the score is monthly_drop_points below its highest of the last "
              "monthly_window_days and fell again this week", needs_previous_score=True),
    AlertRule("unusual_drop", "this week's drop is unusual for the account's own weekly swings",
              needs_previous_score=True),
    AlertRule("entered_lower_tier", "the tier is lower than last week's",
              needs_previous_score=True),
    AlertRule("expansion_review", "rose into the top tier from a lower tier",
              needs_previous_score=True),
    AlertRule("nps_detractor_received", "a detractor NPS response arrived since last week",
              reads=("nps_latest", "nps_detractor", "days_since_last_nps")),
    AlertRule("no_recent_contact", "no two-way contact for no_contact_days or more",
              reads=("days_since_last_contact",)),
    AlertRule("champion_left", "the customer's champion left since a week before as_of",
              reads=("champion_left_180d",), compares=("champion_left_180d",)),
)

#: Alert names in listing order (``health_below`` expands per threshold at run time).
ALERT_ORDER = [r.name for r in ALERT_RULES]


def rose_since(now: np.ndarray, before: np.ndarray | None) -> np.ndarray:
    """Whether a value rose since a week before (the one definition, shared by the alerts and
    the critical signals): unknown now counts as no rise; unknown before (the account or the
    value did not exist then, or no earlier value was given) counts as a rise."""
    if before is None:
        return ~np.isnan(now)
    with np.errstate(invalid="ignore"):
        return ~np.isnan(now) & (np.isnan(before) | (now > before))


def _check(frame: pd.DataFrame, name: str, columns: tuple[str, ...],
           view: FrameColumns | None = None) -> None:
    missing = [c for c in columns if c not in (view if view is not None else frame.columns)]
    if missing:
        raise SchemaError(f"{name}: missing column(s) {missing} needed for alerts.")


def _single_as_of(frame: pd.DataFrame, name: str, view: FrameColumns | None = None) -> pd.Timestamp:
    given = view.get("as_of") if view is not None else None
    values: np.ndarray | pd.arrays.DatetimeArray
    if isinstance(given, np.ndarray) and given.dtype == "datetime64[ns]":
        # score_frame's datetime64[ns] array of the same column (one date: no hashing)
        values = given[:1] if len(given) and (given == given[0]).all() else pd.unique(given)
    else:
        values = pd.to_datetime(frame["as_of"]).unique()
    if len(values) != 1:
        raise UsageError(f"{name}: alerts compare one scored week with another; got {len(values)} "
                         f"as_of dates, e.g. {[str(v)[:10] for v in values[:5]]}.")
    # pandas-stubs type a DatetimeArray's item as any datetime-like scalar (Period, Timedelta)
    return pd.Timestamp(values[0])  # type: ignore[arg-type]


def _col(frame: pd.DataFrame, name: str, view: FrameColumns | None = None) -> np.ndarray | None:
    if view is not None:
        return numeric_column(view, frame, name)
    if name not in frame.columns:
        return None
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _robust_weekly_std(code: np.ndarray, day: np.ndarray, score: np.ndarray, n_ids: int,
                       min_weeks: int) -> np.ndarray:
    """Per account code: 1.4826 * median absolute deviation of its week-to-week score changes;
    NaN for accounts with fewer than ``min_weeks`` changes. Rows must be unique per (code, day)."""
    order = np.lexsort((day, code))
    c, x = code[order], score[order]
    same = c[1:] == c[:-1]
    change = pd.Series((x[1:] - x[:-1])[same])
    owner = c[1:][same]
    grouped = change.groupby(owner)
    med = grouped.transform("median")
    stats = (change - med).abs().groupby(owner).agg(["size", "median"])
    out = np.full(n_ids, np.nan)
    enough = stats["size"].to_numpy() >= min_weeks
    out[stats.index.to_numpy()[enough]] = 1.4826 * stats["median"].to_numpy()[enough]
    return out


def _per_id(codes: np.ndarray, values: np.ndarray, n_ids: int) -> np.ndarray:
    """Array indexed by account code holding each account's first value (NaN when absent)."""
    out = np.full(n_ids, np.nan)
    out[codes[::-1]] = values[::-1]  # reversed so the first occurrence is written last
    return out


def _aligned(current: pd.DataFrame, view: FrameColumns | None, other: pd.DataFrame,
             name: str) -> np.ndarray | None:
    """``other[name]`` per row of ``current`` by ``account_id`` (NaN where absent), or None
    when ``other`` lacks the column."""
    if name not in other.columns:
        return None
    ids = (view.objects(["account_id"])["account_id"] if view is not None
           and view.n <= 64 else current["account_id"].astype(str).tolist())
    values = pd.Series(pd.to_numeric(other[name], errors="coerce").to_numpy(dtype="float64"),
                       index=other["account_id"].astype(str).to_numpy())
    values = values[~values.index.duplicated()]
    return values.reindex([str(i) for i in ids]).to_numpy(dtype="float64")


def compute_alerts(current: pd.DataFrame, previous: pd.DataFrame | None = None,
                   history: pd.DataFrame | None = None,
                   config: "HealthConfig | Any" = None, *,
                   columns: FrameColumns | None = None,
                   week_before: pd.DataFrame | None = None) -> pd.Series:
    """:func:`alert_lists` as a Series aligned with ``current``'s index, named ``alerts``."""
    return pd.Series(alert_lists(current, previous, history, config, columns=columns,
                                 week_before=week_before),
                     index=current.index, name="alerts", dtype=object)


def alert_lists(current: pd.DataFrame, previous: pd.DataFrame | None = None,
                history: pd.DataFrame | None = None,
                config: "HealthConfig | Any" = None, *,
                columns: FrameColumns | None = None,
                week_before: pd.DataFrame | None = None) -> list[list[str]]:
    """Alert names for each row of ``current`` (a list, possibly empty, per account).

    ``current`` / ``previous``: one scored week each (``account_id, as_of, health_score,
    health_tier``, optionally feature columns such as ``nps_latest``, ``nps_detractor``,
    ``days_since_last_nps``, ``days_since_last_contact``, ``champion_left_180d``).
    ``history``: a long frame of earlier weeks (same columns; may include ``previous``); rows
    at or after the current as_of are ignored. ``config``: a HealthConfig, a path or dict, or
    None for the default (its ``alerts`` and ``tiers`` sections are used).
    ``columns``: a :class:`~churnml.columns.FrameColumns` of ``current`` to which the caller
    may have added ``health_score`` (float64), ``health_tier`` (names) and ``as_of``
    (datetime64[ns]) arrays instead of frame columns (``score_frame`` does: the same answer,
    without building a frame). With no previous week only a few arrays are read.
    ``week_before``: ``account_id`` plus the compared features a week before as_of, from the
    book (``churnml.scoring.compare.week_before``); without it the rules that compare
    (``champion_left``) are not raised.
    Returns one new list per row of ``current``, in order.
    """
    cfg = config if isinstance(config, HealthConfig) else load_health_config(config)
    rules = cfg.alerts
    view = columns if columns is not None and columns.frame is current else None
    _check(current, "current", ("account_id", "as_of", "health_score", "health_tier"), view)
    if len(current) == 0:  # a chunk of only inactive accounts: nothing to alert on
        return []
    as_of = _single_as_of(current, "current", view)
    n = len(current)
    tier_rank = {t.name: i for i, t in enumerate(cfg.tiers)}  # 0 = top tier
    given_tiers = view.get("health_tier") if view is not None else None
    if view is not None and isinstance(given_tiers, (list, np.ndarray)):  # given_tiers: from view
        cur_score = np.asarray(view.get("health_score"), dtype=float)
        cur_rank = np.array([tier_rank.get(t, np.nan) for t in given_tiers], dtype=float)
    else:
        cur_score = current["health_score"].to_numpy(dtype=float)
        cur_rank = current["health_tier"].map(tier_rank).to_numpy(dtype=float)
    thresholds = [f"health_below_{t:g}" for t in sorted(rules["falls_below"])]
    alert_names = [name for rule in ALERT_RULES
                   for name in (thresholds if rule.name == "health_below" else [rule.name])]
    flags: dict[str, np.ndarray] = {name: np.zeros(n, dtype=bool) for name in alert_names}

    gap_days = float(rules["new_nps_within_days"])
    has_prev = np.zeros(n, dtype=bool)
    if previous is not None and len(previous):
        _check(previous, "previous", ("account_id", "as_of", "health_score", "health_tier"))
        prev_as_of = _single_as_of(previous, "previous")
        if prev_as_of >= as_of:
            raise UsageError(f"previous week ({prev_as_of.date()}) must be before current ({as_of.date()}).")
        gap_days = (as_of - prev_as_of).days
        parts = [previous[["account_id", "as_of", "health_score"]]]
        if history is not None and len(history):
            _check(history, "history", ("account_id", "as_of", "health_score"))
            parts.append(history[["account_id", "as_of", "health_score"]])
        hist = pd.concat(parts, ignore_index=True)
        # One factorisation of every account id; below, everything is integer arrays.
        ids, uniques = pd.factorize(pd.concat([current["account_id"], hist["account_id"]],
                                              ignore_index=True).astype("str"))
        n_ids = len(uniques)
        cur_code, hist_code = ids[:n], ids[n:]
        prev_code = hist_code[: len(previous)]
        prev_score = _per_id(prev_code, previous["health_score"].to_numpy(dtype=float), n_ids)[cur_code]
        prev_rank = _per_id(prev_code, previous["health_tier"].map(tier_rank).to_numpy(dtype=float),
                            n_ids)[cur_code]
        has_prev = ~np.isnan(prev_score)

        # Escalating thresholds: the most severe one crossed this week.
        crossed_any = np.zeros(n, dtype=bool)
        for t in sorted(rules["falls_below"]):
            crossed = has_prev & (prev_score >= t) & (cur_score < t) & ~crossed_any
            flags[f"health_below_{t:g}"] |= crossed
            crossed_any |= crossed
        drop = prev_score - cur_score
        flags["weekly_drop"] = has_prev & (drop >= rules["weekly_drop_points"])
        flags["entered_lower_tier"] = has_prev & (cur_rank > prev_rank)
        flags["expansion_review"] = has_prev & (cur_rank == 0) & (prev_rank > 0)

        # History-based alerts: previous week plus any earlier weeks, strictly before as_of,
        # one row per (account, date) (the previous frame wins over a duplicate in history).
        day = pd.to_datetime(hist["as_of"]).to_numpy(dtype="datetime64[ns]")
        score = hist["health_score"].to_numpy(dtype=float)
        earlier = day < np.datetime64(as_of.as_unit("ns").to_datetime64())
        code, day, score = hist_code[earlier], day[earlier], score[earlier]
        order = np.lexsort((day, code))  # stable: the first of duplicates stays first
        dup = np.zeros(len(order), dtype=bool)
        dup[1:] = (code[order][1:] == code[order][:-1]) & (day[order][1:] == day[order][:-1])
        keep = np.sort(order[~dup])
        code, day, score = code[keep], day[keep], score[keep]

        start = np.datetime64((as_of - pd.Timedelta(days=rules["monthly_window_days"])).as_unit("ns").to_datetime64())
        in_window = day >= start
        peak_by_id = np.full(n_ids, -np.inf)
        np.maximum.at(peak_by_id, code[in_window], score[in_window])
        peak = peak_by_id[cur_code]
        flags["monthly_drop"] = (has_prev & (peak - cur_score >= rules["monthly_drop_points"])
                                          & (cur_score < prev_score))

        ud = rules["unusual_drop"]
        std = _robust_weekly_std(code, day, score, n_ids, int(ud["min_weeks"]))[cur_code]
        threshold = np.maximum(ud["k"] * std, ud["floor_points"])
        flags["unusual_drop"] = has_prev & ~np.isnan(std) & (drop > threshold)

    # Alerts that need no history.
    nps, detr_flag = _col(current, "nps_latest", view), _col(current, "nps_detractor", view)
    days_nps = _col(current, "days_since_last_nps", view)
    if days_nps is not None and (nps is not None or detr_flag is not None):
        detractor = np.nan_to_num(detr_flag, nan=0.0) >= 0.5 if detr_flag is not None else np.zeros(n, bool)
        if nps is not None:
            detractor = np.where(np.isnan(nps), detractor, nps <= cfg.overrides["nps_detractor_cap"]["detractor_max"])
        flags["nps_detractor_received"] = detractor & (np.nan_to_num(days_nps, nan=np.inf) < gap_days)
    silence = _col(current, "days_since_last_contact", view)
    if silence is not None:
        flags["no_recent_contact"] = np.nan_to_num(silence, nan=-np.inf) >= rules["no_contact_days"]
    champion = _col(current, "champion_left_180d", view)
    if champion is not None and week_before is not None:
        before = _aligned(current, view, week_before, "champion_left_180d")
        if before is not None:
            # a rise from a known earlier value; an account new since then is not "left"
            flags["champion_left"] = rose_since(champion, before) & ~np.isnan(before) \
                & (np.nan_to_num(champion) > 0)

    # A bitmask per row, then one small lookup of name tuples (at most 2**len(order) patterns,
    # in practice a few dozen); every row still gets its own list.
    codes = np.zeros(n, dtype=np.int64)
    for bit, name in enumerate(alert_names):
        codes |= flags[name].astype(np.int64) << bit
    lookup = {c: tuple(name for bit, name in enumerate(alert_names) if c >> bit & 1)
              for c in np.unique(codes).tolist()}
    return [list(lookup[c]) for c in codes.tolist()]
