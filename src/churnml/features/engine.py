"""Vectorised building blocks of the feature builders (internal).

A table is prepared once: account ids become integer codes (the position of the id in the
sorted ``accounts.account_id``), timestamps become day numbers (``windows.day_numbers``) and the
rows are ordered by (account, time). A row's *key* is ``account * SPAN + day``, so one sorted
int64 array orders every account's history, and an observation (account, as_of) finds any
window ``[start, end)`` of its account with two ``searchsorted`` calls. Windowed counts and sums
are then differences of one cumulative sum at those two positions: a single pass over the rows,
whatever the number of as_of dates. Distinct counts and medians cannot be differenced; they
gather each date's window rows (contiguous per account) and reduce them.

Every query here is of rows strictly before the observation's as_of: the windows' end is at
most ``as_of_day`` and ``searchsorted(..., side="left")`` at ``account * SPAN + end`` stops
before the first row on that day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churnml.features.windows import day_numbers

# Day numbers are shifted by OFFSET into [0, SPAN) so that a key orders (account, day).
OFFSET = 1 << 22  # ~11,000 years either side of 1970
SHIFT = 23
SPAN = 1 << SHIFT


def _arrow(values: pd.Series):
    """The pyarrow (chunked) string array behind an arrow-backed Series (None otherwise)."""
    import pyarrow as pa

    data = getattr(values, "array", None)
    arr = getattr(data, "_pa_array", None)  # pandas' ArrowStringArray / ArrowExtensionArray
    if arr is None:
        return None
    return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else None


def factorize(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (int64, -1 = null) and distinct values (object array) of a Series.

    Arrow-backed strings are dictionary-encoded by Arrow (one hash table in C++, no Python
    string per row); anything else goes through ``pd.factorize``.
    """
    import pyarrow as pa

    arr = _arrow(values)
    if arr is not None:
        if not isinstance(arr, pa.ChunkedArray):
            arr = pa.chunked_array([arr])
        encoded = arr.dictionary_encode().unify_dictionaries()
        if encoded.num_chunks == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
        codes = np.concatenate([
            c.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            for c in encoded.chunks
        ])
        uniques = np.asarray(encoded.chunks[0].dictionary.to_pylist(), dtype=object)
        return codes, uniques
    codes, factorized = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), np.asarray(factorized, dtype=object)


def _to_numpy(arr) -> np.ndarray:
    """A (chunked) Arrow array without nulls as one numpy array."""
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.to_numpy(zero_copy_only=False)


def account_codes(values: pd.Series, sorted_ids: np.ndarray) -> np.ndarray:
    """Position of each ``values`` id in ``sorted_ids`` (int64); -1 for ids not found.

    Loaded tables are sorted by account, so the ids usually come in runs: then only the run
    boundaries are found (one vectorised string comparison of neighbours) and each run's id is
    looked up once. Otherwise the ids are dictionary-encoded first. Either way the per-row
    string work is done in C, and each distinct id is looked up once.
    """
    arr = _arrow(values)
    if arr is not None and len(arr) > 1 and arr.null_count == 0:
        import pyarrow.compute as pc

        boundary = _to_numpy(pc.not_equal(arr[1:], arr[:-1]))
        starts = np.r_[0, np.flatnonzero(boundary) + 1]
        run_ids = np.asarray(arr.take(starts).to_pylist(), dtype=object)
        if np.all(run_ids[1:] > run_ids[:-1]):  # sorted runs: each id appears in one run
            lengths = np.diff(np.r_[starts, len(arr)])
            return np.repeat(_lookup(run_ids, sorted_ids), lengths)
    codes, uniques = factorize(values)
    mapping = _lookup(uniques, sorted_ids)
    out = np.full(len(codes), -1, dtype=np.int64)
    ok = codes >= 0
    out[ok] = mapping[codes[ok]]
    return out


def _lookup(ids: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Position of each id in ``sorted_ids``; -1 where absent."""
    if len(sorted_ids) == 0 or len(ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1).astype(np.int64)


def make_key(acc: np.ndarray, day: np.ndarray | int) -> np.ndarray:
    return acc * SPAN + (day + OFFSET)


@dataclass
class Observations:
    """Observation rows in (account, as_of) order: ``acc`` codes and ``day`` numbers."""

    acc: np.ndarray
    day: np.ndarray

    def __len__(self) -> int:
        return len(self.acc)


def key_account(key: np.ndarray) -> np.ndarray:
    return key >> SHIFT


def key_day(key: np.ndarray) -> np.ndarray:
    return (key & (SPAN - 1)) - OFFSET


@dataclass
class Rows:
    """A sorted subset of a table's rows (one filter): their keys and positions in the table.

    Only the int64 keys are stored (account and day are recovered from them on demand), and a
    subset that is every row shares the table's arrays (``index`` None), to keep tens of
    millions of usage events affordable.
    """

    key: np.ndarray
    index: np.ndarray | None  # positions in the prepared table's order; None = every row
    _cum: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.key)

    @property
    def acc(self) -> np.ndarray:
        return key_account(self.key)

    @property
    def day(self) -> np.ndarray:
        return key_day(self.key)

    def take(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per table row) restricted to this subset."""
        return values if self.index is None else values[self.index]

    def table_index(self, idx: np.ndarray) -> np.ndarray:
        return idx if self.index is None else self.index[idx]

    def cumsum(self, name: str, weights: np.ndarray | None) -> np.ndarray:
        """Cumulative sum with a leading 0 (cached by ``name``)."""
        if name not in self._cum:
            w = np.ones(len(self.key)) if weights is None else np.asarray(weights, dtype=np.float64)
            cum = np.empty(len(w) + 1, dtype=np.float64)
            cum[0] = 0.0
            np.cumsum(w, out=cum[1:])
            self._cum[name] = cum
        return self._cum[name]

    def position(self, obs: Observations, day) -> np.ndarray:
        """Index of the first row of each observation's account on or after ``day``."""
        return np.searchsorted(self.key, make_key(obs.acc, day), side="left")

    def window_total(self, obs: Observations, start, end, cum: np.ndarray) -> np.ndarray:
        """Sum of the weights behind ``cum`` over rows with day in ``[start, end)``.

        ``start=None`` means from the account's first row.
        """
        hi = self.position(obs, end)
        if start is None:
            lo = np.searchsorted(self.key, make_key(obs.acc, -OFFSET), side="left")
        else:
            lo = self.position(obs, start)
        return cum[hi] - cum[lo]

    def last_before(self, obs: Observations, end, lag: int = 0) -> np.ndarray:
        """Index of the (lag+1)-th latest row of the account with day < ``end``; -1 if none."""
        idx = self.position(obs, end) - 1 - lag
        ok = idx >= 0
        ok[ok] = key_account(self.key[idx[ok]]) == obs.acc[ok]
        return np.where(ok, idx, -1)

    def gather(self, obs: Observations, start, end, lo=None, hi=None):
        """Rows with day in ``[start, end)`` of each observation, concatenated.

        Returns ``(owner, rows)``: for each gathered row the observation index it belongs to and
        its index in this subset. Work is proportional to the rows gathered. ``lo``/``hi``:
        the window's row positions when the caller already has them.
        """
        lo = self.position(obs, start) if lo is None else lo
        hi = self.position(obs, end) if hi is None else hi
        lengths = hi - lo
        total = int(lengths.sum())
        owner = np.repeat(np.arange(len(obs), dtype=np.int64), lengths)
        if total == 0:
            return owner, np.zeros(0, dtype=np.int64)
        starts = np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
        rows = starts + np.arange(total, dtype=np.int64)
        return owner, rows


class PreparedTable:
    """A table's rows sorted by (account, time) with day numbers and cached filtered subsets."""

    def __init__(self, name: str, frame: pd.DataFrame, time_column: str, sorted_ids: np.ndarray):
        acc = account_codes(frame["account_id"], sorted_ids)
        ts = np.asarray(frame[time_column], dtype="datetime64[ns]")
        keep = (acc >= 0) & ~np.isnat(ts)
        ts_int = ts.view(np.int64)
        # order by (account, exact time), stable so ties keep the input order; loaded tables
        # are already in that order, and then no copy is made
        if keep.all() and _is_sorted(acc) and _is_sorted_within(acc, ts_int):
            order = None
        else:
            kept = np.flatnonzero(keep)
            order = kept[np.lexsort((ts_int[kept], acc[kept]))]
            acc, ts = acc[order], ts[order]
        del ts_int, keep
        self.key = make_key(acc, day_numbers(ts))
        del acc, ts
        self.name = name
        self.frame = frame
        self.order = order
        self._identity = order is None
        self.time_column = time_column
        self._columns: dict[str, np.ndarray] = {}
        self._derived: set[str] = set()
        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._subsets: dict[str, Rows] = {}
        self._cums: dict[str, np.ndarray] = {}
        self._pos_obs: Observations | None = None
        self._positions: dict = {}

    @property
    def acc(self) -> np.ndarray:
        """Account code of each row (sorted order; computed from the keys)."""
        return key_account(self.key)

    @property
    def day(self) -> np.ndarray:
        """Day number of each row (sorted order; computed from the keys)."""
        return key_day(self.key)

    def __len__(self) -> int:
        return len(self.key)

    def release(self) -> None:
        """Drop the caches (cumulative sums, subsets, codes) once no feature needs them."""
        self._columns = {k: v for k, v in self._columns.items() if k in self._derived}
        self._codes.clear()
        self._subsets.clear()
        self._cums.clear()
        self._positions.clear()

    # -- windowed sums over the whole table: one cumulative sum per filter, and one
    # -- searchsorted per distinct window edge, shared by every filter on this table
    def position(self, obs: Observations, back: int | None) -> np.ndarray:
        """Index of each observation's first row on or after day ``as_of - back`` (``None``:
        the account's first row). Cached per observation set and ``back``."""
        if self._pos_obs is not obs:
            self._pos_obs, self._positions = obs, {}
        if back not in self._positions:
            day = -OFFSET if back is None else obs.day - back
            self._positions[back] = np.searchsorted(self.key, make_key(obs.acc, day), side="left")
        return self._positions[back]

    def cumulative(self, name: str, weights, integer: bool = False) -> np.ndarray:
        """Cumulative sum (leading 0) of per-row ``weights`` (a callable is evaluated only on
        a cache miss); cached by ``name``. ``integer``: 0/1 weights, summed exactly in int32
        (half the memory of float64 for tens of millions of rows)."""
        if name not in self._cums:
            w = weights() if callable(weights) else weights
            dtype = np.int32 if integer and len(self) < 2**31 - 1 else (
                np.int64 if integer else np.float64)
            cum = np.empty(len(self) + 1, dtype=dtype)
            cum[0] = 0
            np.cumsum(w, out=cum[1:], dtype=dtype)
            self._cums[name] = cum
        return self._cums[name]

    def window_sum(self, obs: Observations, cum: np.ndarray, days: int | None, offset: int = 0):
        """Sum behind ``cum`` over rows with day in ``[as_of - offset - days, as_of - offset)``
        (float64)."""
        hi = self.position(obs, offset)
        lo = self.position(obs, None if days is None else offset + days)
        return (cum[hi] - cum[lo]).astype(np.float64)

    def filter_weights(self, flt: dict | None) -> np.ndarray:
        """0/1 per row: matches ``flt`` (bool array; all True without a filter)."""
        m = self.mask(flt)
        return np.ones(len(self), dtype=bool) if m is None else m

    def count_cumsum(self, flt: dict | None) -> np.ndarray:
        return self.cumulative(
            "count:" + filter_key(flt), lambda: self.filter_weights(flt), integer=True)

    def has_column(self, column: str) -> bool:
        return column in self.frame.columns or column in self._columns

    def add_column(self, column: str, values: np.ndarray) -> None:
        """Attach a derived column already in this table's sorted order."""
        self._columns[column] = values
        self._derived.add(column)

    def column(self, column: str) -> np.ndarray:
        """Values of ``column`` in sorted order (numbers float64, timestamps int64 day numbers
        are not applied here: datetime columns come back as ``datetime64[ns]``)."""
        if column not in self._columns:
            series = self.frame[column]
            if pd.api.types.is_datetime64_any_dtype(series):
                values = self._take(np.asarray(series, dtype="datetime64[ns]"))
            elif pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
                values = self._take(np.asarray(series, dtype=np.float64))
            else:
                values = self._take(np.asarray(series.astype(object)))
            self._columns[column] = values
        return self._columns[column]

    def codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Integer codes (-1 = null) and the distinct values of ``column`` (sorted order)."""
        if column not in self._codes:
            if column in self._columns:
                codes, uniques = pd.factorize(self._columns[column], use_na_sentinel=True)
            else:
                codes, uniques = factorize(self.frame[column])
                codes = self._take(codes)
            # int32 codes: half the memory, and plenty for any vocabulary
            self._codes[column] = (np.asarray(codes, dtype=np.int32), np.asarray(uniques, dtype=object))
        return self._codes[column]

    def notnull(self, column: str) -> np.ndarray:
        """Boolean mask of rows where ``column`` is present (sorted order)."""
        if column in self._columns:
            return ~pd.isna(self._columns[column])
        return ~self._take(self.frame[column].isna().to_numpy())

    def _take(self, values: np.ndarray) -> np.ndarray:
        return values if self._identity else values[self.order]

    def mask(self, flt: dict | None) -> np.ndarray | None:
        """Boolean mask of rows matching a catalog filter (None = every row).

        Filter keys: ``column`` with one of ``in`` (list), ``not_in`` (list), ``equals``,
        ``notnull: true``.
        """
        if not flt:
            return None
        column = flt["column"]
        if "in" in flt or "not_in" in flt or ("equals" in flt and isinstance(flt["equals"], str)):
            codes, uniques = self.codes(column)
            # the filter's values as configured (YAML): in, [equals] or not_in
            wanted: Any = flt.get("in", [flt["equals"]] if "equals" in flt else flt.get("not_in"))
            hit = np.isin(uniques, np.asarray(list(wanted), dtype=object))
            lookup = np.append(hit, False)  # code -1 (null) maps to the last slot
            m = lookup[codes]
            if "not_in" in flt:
                m = ~m & (codes >= 0)
            return m
        values = self.column(column)
        if "equals" in flt:
            return values == flt["equals"]
        if flt.get("notnull"):
            return self.notnull(column)
        raise ValueError(f"unsupported filter {flt!r}")

    def rows(self, flt: dict | None, notnull: str | None = None) -> Rows:
        """The sorted subset of rows matching ``flt`` (and with ``notnull`` column present)."""
        cache_key = repr((filter_key(flt), notnull))
        if cache_key not in self._subsets:
            m = self.mask(flt)
            if notnull is not None:
                nn = self.notnull(notnull)
                m = nn if m is None else (m & nn)
            if m is None or m.all():
                sub = Rows(self.key, None)  # every row: share the table's keys
            else:
                idx = np.flatnonzero(m)
                sub = Rows(self.key[idx], idx)
            self._subsets[cache_key] = sub
        return self._subsets[cache_key]


def filter_key(flt: dict | None) -> str:
    return repr(sorted((flt or {}).items(), key=str))


def _is_sorted(a: np.ndarray) -> bool:
    return bool(len(a) < 2 or np.all(a[1:] >= a[:-1]))


def _is_sorted_within(group: np.ndarray, values: np.ndarray) -> bool:
    """Whether ``values`` ascend within each run of equal ``group`` (group already sorted)."""
    if len(values) < 2:
        return True
    same = group[1:] == group[:-1]
    return bool(np.all(values[1:][same] >= values[:-1][same]))


def first_per_group(owner: np.ndarray) -> np.ndarray:
    """Indices where a run of equal ``owner`` starts (``owner`` grouped)."""
    if len(owner) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
