"""Point-in-time feature builders: the catalog's aggregation kinds, vectorised.

``build_features(book, as_of_dates)`` returns one row per observation (an account active at
as_of, see ``labels``) with ``account_id, as_of`` and one column per catalog feature whose
source table (and columns) the book has. Features of a missing table or column are absent, not
filled with zeros. Every value uses only rows strictly before as_of (windows from
``churnml.features.windows``) and the account's own rows plus the catalog's fixed thresholds,
so an account gets the same features alone or in a batch.

Numbers are float64 (missing = NaN); categorical features are strings (missing = NaN).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd

from churnml.data.tables import Book
from churnml.deadline import checkpoint
from churnml.features import engine
from churnml.features.catalog import Catalog, FeatureSpec, load_catalog
from churnml.features.labels import active_observations, prepare_mrr, sorted_account_ids
from churnml.features.windows import as_of_dates as _as_of_dates
from churnml.features.windows import NAT_DAY, day_numbers, feature_day_bounds

# time column of each table the builders read (accounts has none: static / tenure)
TIME_COLUMNS = {
    "usage_events": "ts",
    "invoices": "due_date",
    "nps_responses": "ts",
    "touchpoints": "ts",
    "mrr_changes": "effective_date",
}


class FeatureContext:
    """Prepared tables of one book (built lazily, once) and the observations being built."""

    def __init__(self, book: Book):
        self.book = book
        self.sorted_ids = sorted_account_ids(book)
        self._tables: dict[str, engine.PreparedTable] = {}
        self._account_rows: np.ndarray | None = None

    def has_table(self, name: str) -> bool:
        return name == "accounts" or self.book.has(name)

    def table(self, name: str) -> engine.PreparedTable:
        if name not in self._tables:
            if name == "mrr_changes":
                table = prepare_mrr(self.book, self.sorted_ids)
                _add_mrr_direction(table)
            else:
                table = engine.PreparedTable(
                    name, self.book[name], TIME_COLUMNS[name], self.sorted_ids
                )
                if name == "invoices":
                    _add_invoice_lateness(table)
            self._tables[name] = table
        return self._tables[name]

    def release(self, name: str) -> None:
        """Free a prepared table's caches (its derived columns stay)."""
        if name in self._tables:
            self._tables[name].release()

    def account_rows(self) -> np.ndarray:
        """Row position in ``accounts`` of each account code (first row of a repeated id)."""
        if self._account_rows is None:
            accounts = self.book.accounts
            codes = engine.account_codes(accounts["account_id"], self.sorted_ids)
            rows = np.full(len(self.sorted_ids), -1, dtype=np.int64)
            valid = np.flatnonzero(codes >= 0)
            # assign in reverse so the first occurrence of a repeated id wins
            rows[codes[valid[::-1]]] = valid[::-1]
            self._account_rows = rows
        return self._account_rows

    def created_day(self) -> np.ndarray:
        """Day number of ``accounts.created_at`` per account code (NAT_DAY when missing)."""
        created = np.asarray(self.book.accounts["created_at"], dtype="datetime64[ns]")
        return day_numbers(created)[self.account_rows()]


def _add_invoice_lateness(table: engine.PreparedTable) -> None:
    """``late`` = 1.0 when an invoice was not paid by the end of its due day.

    For an invoice visible at as_of (due_date < as_of) this is known at as_of: it is either
    paid before the end of its due day (which is not after as_of) or it is not. A payment on or
    after as_of therefore never reveals anything the builders could not know.
    """
    due = table.column("due_date").astype("datetime64[D]")
    if "paid_at" in table.frame.columns:
        paid = table.column("paid_at")
        on_time = ~np.isnat(paid) & (paid < (due + np.timedelta64(1, "D")).astype("datetime64[ns]"))
    else:
        on_time = np.zeros(len(table), dtype=bool)
    table.add_column("late", (~on_time).astype(np.float64))


def _add_mrr_direction(table: engine.PreparedTable) -> None:
    """``mrr_direction``: 1 expansion (rise over a positive MRR, not a price increase),
    -1 contraction (a fall that stays above 0), 0 otherwise (new, renewal, churn, reactivation)."""
    mrr = table.column("mrr")
    prev = table.column("mrr_previous")
    rise = (table.column("mrr_rise_share") > 0) & (table.column("is_price_increase") == 0)
    fall = (prev > 0) & (mrr > 0) & (mrr < prev)
    table.add_column("mrr_direction", np.where(rise, 1.0, np.where(fall, -1.0, 0.0)))


# ------------------------------------------------------------------------------- builders
Builder = Callable[[FeatureContext, FeatureSpec, engine.Observations, dict], np.ndarray]


def _window(spec: FeatureSpec, obs: engine.Observations, days=None, offset=None):
    days = spec.window_days if days is None else days
    offset = spec.params.get("offset_days", 0) if offset is None else offset
    return feature_day_bounds(obs.day, days, offset)


def _count(ctx, spec, obs, flt=None, days=None, offset=None) -> np.ndarray:
    """Matching rows in ``[as_of - offset - days, as_of - offset)``, via the table's shared
    cumulative sums (one searchsorted per window edge for all filters of the table)."""
    table = ctx.table(spec.table)
    flt = spec.params.get("filter") if flt is None else flt
    days = spec.window_days if days is None else days
    offset = spec.params.get("offset_days", 0) if offset is None else offset
    return table.window_sum(obs, table.count_cumsum(flt), days, offset)


def build_count(ctx, spec, obs, values):
    return _count(ctx, spec, obs)


def _sum(ctx, spec, obs, column):
    table = ctx.table(spec.table)
    flt = spec.params.get("filter")

    def weights():
        values_ = np.nan_to_num(table.column(column), nan=0.0)
        return values_ * table.filter_weights(flt)

    cum = table.cumulative(f"sum:{column}:" + engine.filter_key(flt), weights)
    count_cum = table.cumulative(
        f"countnotnull:{column}:" + engine.filter_key(flt),
        lambda: table.filter_weights(flt) & table.notnull(column),
        integer=True,
    )
    offset = spec.params.get("offset_days", 0)
    return (table.window_sum(obs, cum, spec.window_days, offset),
            table.window_sum(obs, count_cum, spec.window_days, offset))


def build_sum(ctx, spec, obs, values):
    return _sum(ctx, spec, obs, spec.params["column"])[0]


def build_mean(ctx, spec, obs, values):
    total, count = _sum(ctx, spec, obs, spec.params["column"])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def _active_days(ctx, spec, obs, days, offset) -> np.ndarray:
    """Distinct calendar days with a matching row: each (account, day)'s first matching row
    weighs 1, so the count is again a difference of one cumulative sum."""
    table = ctx.table(spec.table)
    flt = spec.params.get("filter")

    def weights():
        m = table.mask(flt)
        idx = np.arange(len(table)) if m is None else np.flatnonzero(m)
        keys = table.key[idx]
        w = np.zeros(len(table), dtype=bool)
        if len(idx):
            w[idx[np.r_[True, keys[1:] != keys[:-1]]]] = True
        return w

    cum = table.cumulative("active_days:" + engine.filter_key(flt), weights, integer=True)
    return table.window_sum(obs, cum, days, offset)


def build_active_days(ctx, spec, obs, values):
    return _active_days(ctx, spec, obs, spec.window_days, spec.params.get("offset_days", 0))


def build_ratio_to_baseline(ctx, spec, obs, values):
    """Measure over the window / its average per window over the baseline just before.

    The baseline average counts only days on which the account existed (after created_at);
    missing when that covers less than one window or the baseline measure is 0. ``measure``
    ``distinct`` (of ``column``, e.g. users) compares the window's distinct values with the
    baseline's as they are (distinct counts do not scale with time), missing unless the account
    existed for the whole baseline.
    """
    w, b = spec.window_days, int(spec.params["baseline_days"])
    offset = spec.params.get("offset_days", 0)
    start, _ = _window(spec, obs)
    base_start, base_end = start - b, start
    measure = spec.params.get("measure", "count")
    if measure == "active_days":
        current = _active_days(ctx, spec, obs, w, offset)
        base = _active_days(ctx, spec, obs, b, offset + w)
    elif measure == "count":
        current = _count(ctx, spec, obs)
        base = _count(ctx, spec, obs, days=b, offset=offset + w)
    elif measure == "distinct":
        # distinct values (users) do not add up over time: the baseline's distinct count is
        # compared as it is, missing when the baseline window is not fully covered
        current = build_distinct(ctx, spec, obs, values)
        base_spec = replace(spec, window_days=b, params={**spec.params, "offset_days": offset + w})
        base = build_distinct(ctx, base_spec, obs, values)
        created = ctx.created_day()[obs.acc]
        from_day = np.where(created == NAT_DAY, base_start, np.maximum(base_start, created))
        covered = np.clip(base_end - from_day, 0, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = current / base
        return np.where((covered >= b) & (base > 0), ratio, np.nan)
    else:
        raise ValueError(f"{spec.name}: unknown measure {measure!r} (count | active_days | "
                         "distinct)")
    created = ctx.created_day()[obs.acc]
    from_day = np.where(created == NAT_DAY, base_start, np.maximum(base_start, created))
    covered = np.clip(base_end - from_day, 0, b).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        usual = base * w / covered
        ratio = current / usual
    return np.where((covered >= w) & (usual > 0), ratio, np.nan)


def build_distinct(ctx, spec, obs, values):
    """Distinct non-null values of a column among matching rows, per observation window.

    Distinct counts cannot be differenced, so each as_of date gathers its window's rows
    (contiguous per account). When an account's values have codes within 64 of each other
    (users of one account, event names: the usual case) each row carries one bit and the
    window's count is the popcount of an OR-reduction; other accounts count unique
    (observation, value) pairs. Work is proportional to the rows in the windows.
    """
    table = ctx.table(spec.table)
    column = spec.params["column"]
    rows = table.rows(spec.params.get("filter"), notnull=column)
    codes_all, uniques = table.codes(column)
    codes = rows.take(codes_all)
    out = np.zeros(len(obs), dtype=np.float64)
    if len(rows) == 0:
        return out
    # per account: smallest code and whether its codes fit in 64 bits
    starts = engine.first_per_group(rows.acc)
    low = np.minimum.reduceat(codes, starts)
    high = np.maximum.reduceat(codes, starts)
    run_lengths = np.diff(np.r_[starts, len(rows)])
    narrow_row = np.repeat((high - low) < 64, run_lengths)
    low_row = np.repeat(low, run_lengths)  # int32 like the codes
    width = np.int64(len(uniques) + 1)
    for day, members in _by_date(obs):
        sub = engine.Observations(obs.acc[members], obs.day[members])
        start, end = _window(spec, sub)
        lo = rows.position(sub, start)
        hi = rows.position(sub, end)
        lengths = hi - lo
        has = lengths > 0
        if not has.any():
            continue
        owner, idx = rows.gather(sub, start, end, lo, hi)
        wide = ~narrow_row[idx]
        # one bit per value, relative to the account's smallest code (wide rows: no bit)
        shift = np.where(wide, 0, codes[idx] - low_row[idx]).astype(np.uint64)
        bits = np.where(wide, np.uint64(0), np.left_shift(np.uint64(1), shift))
        seg = np.r_[0, np.cumsum(lengths)[:-1]][has]
        ored = np.bitwise_or.reduceat(bits, seg)
        counts = np.zeros(len(members), dtype=np.float64)
        counts[has] = np.bitwise_count(ored)
        if wide.any():  # accounts with too many distinct values for one 64-bit word
            pairs = np.unique(owner[wide] * width + codes[idx[wide]].astype(np.int64))
            extra = np.bincount(pairs // width, minlength=len(members))
            counts = np.where(np.bincount(owner[wide], minlength=len(members)) > 0, extra, counts)
        out[members] = counts
    return out


def _by_date(obs: engine.Observations):
    """(as_of day, observation indices) for each distinct as_of day."""
    if len(obs) == 0:
        return
    order = np.argsort(obs.day, kind="stable")
    days = obs.day[order]
    bounds = np.flatnonzero(np.r_[True, days[1:] != days[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield days[a], order[a:b]


def build_days_since(ctx, spec, obs, values):
    table = ctx.table(spec.table)
    rows = table.rows(spec.params.get("filter"))
    idx = rows.last_before(obs, obs.day)
    last_day = engine.key_day(rows.key[np.maximum(idx, 0)]) if len(rows) else obs.day
    return np.where(idx >= 0, (obs.day - last_day).astype(np.float64), np.nan)


def build_trend(ctx, spec, obs, values):
    """Least-squares slope of weekly counts (oldest week first) divided by their mean."""
    weeks = int(spec.params["weeks"])
    counts = np.column_stack(
        [_count(ctx, spec, obs, days=7, offset=7 * (weeks - 1 - k)) for k in range(weeks)]
    )
    x = np.arange(weeks, dtype=np.float64) - (weeks - 1) / 2.0
    mean = counts.mean(axis=1)
    slope = (counts - mean[:, None]) @ x / np.sum(x**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, slope / mean, np.nan)


def _latest(ctx, spec, obs, column, lag=0, end=None, use_filter=True):
    table = ctx.table(spec.table)
    rows = table.rows(spec.params.get("filter") if use_filter else None, notnull=column)
    idx = rows.last_before(obs, obs.day if end is None else end, lag)
    col = table.column(column)
    vals = col[rows.table_index(np.maximum(idx, 0))] if len(rows) else np.full(len(obs), np.nan)
    return np.where(idx >= 0, vals, np.nan)


def build_latest(ctx, spec, obs, values):
    return _latest(ctx, spec, obs, spec.params["column"], int(spec.params.get("lag", 0)))


def build_change(ctx, spec, obs, values):
    column = spec.params["column"]
    return _latest(ctx, spec, obs, column, 0) - _latest(ctx, spec, obs, column, 1)


def build_relative_change(ctx, spec, obs, values):
    column = spec.params["column"]
    now = _latest(ctx, spec, obs, column)
    then = _latest(ctx, spec, obs, column, end=obs.day - spec.window_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(then > 0, (now - then) / then, np.nan)


def build_rate(ctx, spec, obs, values):
    num = _count(ctx, spec, obs, flt=spec.params["numerator"])
    den = _count(ctx, spec, obs, flt=spec.params["denominator"])
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    if "clip_max" in spec.params:
        rate = np.minimum(rate, float(spec.params["clip_max"]))
    return rate


def build_median(ctx, spec, obs, values):
    table = ctx.table(spec.table)
    column = spec.params["column"]
    rows = table.rows(spec.params.get("filter"), notnull=column)
    col = rows.take(table.column(column))
    out = np.full(len(obs), np.nan)
    for day, members in _by_date(obs):
        sub = engine.Observations(obs.acc[members], obs.day[members])
        start, end = _window(spec, sub)
        owner, idx = rows.gather(sub, start, end)
        if len(idx) == 0:
            continue
        vals = col[idx]
        order = np.lexsort((vals, owner))  # by owner, then value
        owner, vals = owner[order], vals[order]
        counts = np.bincount(owner, minlength=len(members))
        first = np.r_[0, np.cumsum(counts)[:-1]]
        has = counts > 0
        lo = first[has] + (counts[has] - 1) // 2
        hi = first[has] + counts[has] // 2
        med = np.full(len(members), np.nan)
        med[has] = (vals[lo] + vals[hi]) / 2.0
        out[members] = med
    return out


_OPS = {
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
}


def build_threshold(ctx, spec, obs, values):
    x = values[spec.params["of"]].astype(np.float64)
    flag = _OPS[spec.params["op"]](x, float(spec.params["value"])).astype(np.float64)
    return np.where(np.isnan(x), np.nan, flag)


def build_bins(ctx, spec, obs, values):
    """Fixed lower-bound edges: ``x < edges[0]`` -> labels[0], ``edges[i-1] <= x < edges[i]``
    -> labels[i]; missing -> ``missing_label`` (or missing)."""
    x = values[spec.params["of"]].astype(np.float64) * float(spec.params.get("multiply", 1))
    edges = np.asarray(spec.params["edges"], dtype=np.float64)
    labels = list(spec.params["labels"])
    pos = np.searchsorted(edges, np.where(np.isnan(x), 0, x), side="right")
    missing = spec.params.get("missing_label")
    if spec.kind == "numeric":
        out = np.asarray(labels, dtype=np.float64)[pos]
        return np.where(np.isnan(x), np.nan if missing is None else float(missing), out)
    out = np.asarray([str(v) for v in labels], dtype=object)[pos]
    out[np.isnan(x)] = None if missing is None else str(missing)
    return out


def build_segment_rules(ctx, spec, obs, values):
    """First rule whose inclusive ranges hold every score; ``default`` otherwise; missing when
    a score is missing."""
    scores = [values[name].astype(np.float64) for name in spec.depends_on]
    out = np.full(len(obs), str(spec.params.get("default", "other")), dtype=object)
    decided = np.zeros(len(obs), dtype=bool)
    for rule in spec.params["segments"]:
        hit = ~decided
        for score, (low, high) in zip(scores, rule["ranges"]):
            hit &= (score >= low) & (score <= high)
        out[hit] = str(rule["name"])
        decided |= hit
    out[np.any([np.isnan(s) for s in scores], axis=0)] = None
    return out


def build_missed_in_a_row(ctx, spec, obs, values):
    """Trailing run of ``hit`` rows since the latest ``reset`` row (0 when the latest meeting
    was held or there has been none). Rows at the same timestamp keep the table's order."""
    table = ctx.table(spec.table)
    column = spec.params.get("column", "kind")
    hit, reset = list(spec.params["hit"]), list(spec.params["reset"])
    rows = table.rows({"column": column, "in": hit + reset})
    is_reset = rows.take(table.mask({"column": column, "in": reset}))
    n = len(rows)
    if n == 0:
        return np.zeros(len(obs), dtype=np.float64)
    pos = np.arange(n, dtype=np.int64)
    new_acc = np.r_[True, rows.acc[1:] != rows.acc[:-1]]
    # a run restarts at a reset row (length 0) or just before an account's first row
    anchor = np.where(is_reset, pos, np.where(new_acc, pos - 1, np.iinfo(np.int64).min))
    run = pos - np.maximum.accumulate(anchor)
    idx = rows.last_before(obs, obs.day)
    return np.where(idx >= 0, run[np.maximum(idx, 0)], 0).astype(np.float64)


def build_spike_then_silence(ctx, spec, obs, values):
    recent_days, prior_days = int(spec.params["recent_days"]), int(spec.params["prior_days"])
    recent = _count(ctx, spec, obs, days=recent_days, offset=0)
    prior = _count(ctx, spec, obs, days=prior_days, offset=recent_days)
    return ((recent == 0) & (prior >= float(spec.params["min_spike"]))).astype(np.float64)


def _overdue_intervals(table: engine.PreparedTable):
    """Days (as_of day numbers) on which each invoice is overdue: ``[due_day + 1, paid_day]``.

    An invoice is overdue at as_of when due_date < as_of (due_day < as_of_day) and paid_at is
    null or not before as_of (paid_day >= as_of_day).
    """
    due_day = table.day
    if "paid_at" in table.frame.columns:
        paid = table.column("paid_at")
        paid_day = np.where(np.isnat(paid), np.iinfo(np.int64).max // 4, day_numbers(paid))
    else:
        paid_day = np.full(len(table), np.iinfo(np.int64).max // 4)
    return due_day + 1, paid_day


def build_overdue_count(ctx, spec, obs, values):
    """Count of intervals covering as_of: +1 when an invoice falls overdue, -1 when paid; the
    running sum per account is read at as_of (one sort, any number of dates)."""
    table = ctx.table(spec.table)
    first, last = _overdue_intervals(table)
    open_ = last >= first
    acc = np.r_[table.acc[open_], table.acc[open_]]
    day = np.r_[first[open_], np.minimum(last[open_] + 1, engine.SPAN - engine.OFFSET - 1)]
    delta = np.r_[np.ones(open_.sum()), -np.ones(open_.sum())]
    key = engine.make_key(acc, day)
    order = np.argsort(key, kind="stable")
    key, cum = key[order], np.r_[0.0, np.cumsum(delta[order])]
    hi = np.searchsorted(key, engine.make_key(obs.acc, obs.day), side="right")
    lo = np.searchsorted(key, engine.make_key(obs.acc, -engine.OFFSET), side="left")
    return cum[hi] - cum[lo]


def build_overdue_days_max(ctx, spec, obs, values):
    table = ctx.table(spec.table)
    first, last = _overdue_intervals(table)
    out = np.zeros(len(obs), dtype=np.float64)
    for day, members in _by_date(obs):
        overdue = np.flatnonzero((first <= day) & (last >= day))
        if len(overdue) == 0:
            continue
        # rows are sorted by (account, due_date): an account's first overdue row is its oldest
        accs, where = np.unique(table.acc[overdue], return_index=True)
        oldest_due = table.day[overdue[where]]
        pos = np.searchsorted(accs, obs.acc[members])
        pos = np.clip(pos, 0, len(accs) - 1)
        found = accs[pos] == obs.acc[members]
        out[members] = np.where(found, day - oldest_due[pos], 0.0)
    return out


def build_days_until(ctx, spec, obs, values):
    """Whole days from as_of to ``column`` (a date) on the latest row; missing when null."""
    table = ctx.table(spec.table)
    rows = table.rows(spec.params.get("filter"))
    idx = rows.last_before(obs, obs.day)
    target = day_numbers(table.column(spec.params["column"]))
    vals = target[rows.table_index(np.maximum(idx, 0))] if len(rows) else np.zeros(len(obs), np.int64)
    ok = (idx >= 0) & (vals != NAT_DAY)
    return np.where(ok, (vals - obs.day).astype(np.float64), np.nan)


def build_tenure(ctx, spec, obs, values):
    created = ctx.created_day()[obs.acc]
    return np.where(created == NAT_DAY, np.nan, (obs.day - created).astype(np.float64))


def _static_column(ctx, column: str, obs) -> tuple[np.ndarray, str]:
    series = ctx.book.accounts[column]
    rows = ctx.account_rows()[obs.acc]
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return np.asarray(series, dtype=np.float64)[rows], "numeric"
    values = np.asarray(series.astype(object).where(series.notna(), None))[rows]
    return values, "categorical"


def build_static(ctx, spec, obs, values):
    return _static_column(ctx, spec.params["column"], obs)[0]


BUILDERS: dict[str, Builder] = {
    "count": build_count,
    "sum": build_sum,
    "mean": build_mean,
    "distinct": build_distinct,
    "active_days": build_active_days,
    "ratio_to_baseline": build_ratio_to_baseline,
    "days_since": build_days_since,
    "trend": build_trend,
    "latest": build_latest,
    "change": build_change,
    "relative_change": build_relative_change,
    "rate": build_rate,
    "median": build_median,
    "threshold": build_threshold,
    "bins": build_bins,
    "segment_rules": build_segment_rules,
    "missed_in_a_row": build_missed_in_a_row,
    "spike_then_silence": build_spike_then_silence,
    "overdue_count": build_overdue_count,
    "overdue_days_max": build_overdue_days_max,
    "days_until": build_days_until,
    "tenure": build_tenure,
    "static": build_static,
}

_DERIVED = {"threshold", "bins", "segment_rules"}
_NEEDS_COLUMNS = {  # columns a spec reads, besides the table's id and time columns
    "overdue_count": (),
    "overdue_days_max": (),
    "tenure": ("created_at",),
}


def _columns_needed(spec: FeatureSpec) -> set[str]:
    cols: set[str] = set(_NEEDS_COLUMNS.get(spec.aggregation, ()))
    for key in ("filter", "numerator", "denominator"):
        flt = spec.params.get(key)
        if flt:
            cols.add(flt["column"])
    if "column" in spec.params and spec.aggregation in {
        "sum", "mean", "distinct", "latest", "change", "relative_change", "median", "days_until",
        "static", "ratio_to_baseline",
    }:
        cols.add(spec.params["column"])
    if spec.aggregation == "missed_in_a_row":
        cols.add(spec.params.get("column", "kind"))
    # derived columns the builders add themselves
    return cols - {"late", "mrr_direction"}


def available(ctx: FeatureContext, spec: FeatureSpec) -> bool:
    """Whether the book has the table and columns ``spec`` reads."""
    if not ctx.has_table(spec.table):
        return False
    frame = ctx.book.accounts if spec.table == "accounts" else ctx.book[spec.table]
    return all(c in frame.columns for c in _columns_needed(spec))


def build_features(book: Book, as_of_dates, catalog: Catalog | None = None) -> pd.DataFrame:
    """Features of every account active at each as_of date (one row per observation).

    Columns: ``account_id`` (str), ``as_of`` (datetime64[ns] midnight), then the catalog's
    features in catalog order (numeric float64, categorical str; NaN = unknown), then extra
    ``accounts`` attribute columns. Features whose table or column the book lacks are absent;
    features derived from an absent feature are absent too. Rows are ordered by as_of, then
    account_id (the same order as ``labels.observation_grid``).
    """
    catalog = load_catalog() if catalog is None else catalog
    ctx = FeatureContext(book)
    dates = _as_of_dates(as_of_dates)
    mrr_table = ctx.table("mrr_changes")
    obs, _ = active_observations(book, dates, mrr_table, ctx.sorted_ids)

    values: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    # a table's caches (cumulative sums, subsets, codes) go once its last feature is built,
    # so peak memory is that of the biggest table, not the sum of all
    last_use = {s.table: i for i, s in enumerate(catalog) if s.aggregation not in _DERIVED}
    for i, spec in enumerate(catalog):
        checkpoint()  # the service's request may have timed out (churnml.deadline)
        if i > 0 and last_use.get(catalog.specs[i - 1].table) == i - 1:
            ctx.release(catalog.specs[i - 1].table)
        if spec.aggregation == "static_other":
            listed = {s.params.get("column") for s in catalog if s.aggregation == "static"}
            listed |= set(catalog.names)
            for column in book.accounts.columns:
                if column in ("account_id", "created_at") or column in listed:
                    continue
                values[column], kinds[column] = _static_column(ctx, column, obs)
            continue
        if spec.aggregation in _DERIVED:
            if not all(dep in values for dep in spec.depends_on):
                continue
        elif not available(ctx, spec):
            continue
        values[spec.name] = BUILDERS[spec.aggregation](ctx, spec, obs, values)
        kinds[spec.name] = spec.kind

    # rows in (as_of, account_id) order: codes follow sorted ids. Each column is put in that
    # order as it is taken out of ``values``, so the frame's construction holds the features
    # twice at most (the ordered columns and the frame's block), not three times (before: a
    # frame in observation order, then its reordered copy)
    order = np.lexsort((obs.acc, obs.day))
    columns: dict[str, object] = {
        "account_id": pd.array(ctx.sorted_ids[obs.acc[order]], dtype="str"),
        "as_of": obs.day[order].astype("datetime64[D]").astype("datetime64[ns]"),
    }
    for name in list(values):
        arr = values.pop(name)
        if kinds[name] == "categorical":
            columns[name] = pd.array(np.asarray(arr, dtype=object)[order], dtype="str")
        else:
            columns[name] = np.asarray(arr, dtype=np.float64)[order]
        del arr
    return pd.DataFrame(columns)
