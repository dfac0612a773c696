"""Where the data ends: the export date, estimated from the bulk of the dated rows.

One stray row must not move the book's end (a single NPS response dated 2099 once made every
weekly as_of up to 2099 a "no churn" training row). The rule (``docs/data_contract.md``,
"The data's end"):

- the **reference dates** are the revenue history (``mrr_changes.effective_date``) and the
  usage (``usage_events.ts``): the tables that run up to the export for every live account;
- the **bulk end** of ``n`` reference dates: allow ``floor(n * (1 - quantile))`` stragglers
  (``quantile`` = :data:`BULK_QUANTILE`, 0.999: one row in a thousand), take the latest date
  that is not one of them, then walk forward through the later dates while each is within
  ``gap_days`` (the margin, :data:`DEFAULT_FUTURE_MARGIN_DAYS`) of the one before. Below a
  thousand dates no straggler is allowed and the bulk end is the latest date;
- ``Book.data_end`` is the bulk end of the reference dates, at midnight;
- validation estimates the export date the same way and sets aside, as
  :data:`churnml.data.validation.FUTURE_DATED`, event rows dated more than the margin after it
  (only when the reference dates cover at least :data:`MIN_ACCOUNTS_FOR_EXPORT_DATE` accounts:
  a request about one account has no "bulk" to judge its own latest rows by).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import numpy as np
import pandas as pd

#: Days an event row may lie after the estimated export date before it is set aside, and the
#: longest gap between consecutive late dates that still counts as the bulk of the data.
DEFAULT_FUTURE_MARGIN_DAYS = 7
#: Share of the reference dates that define the bulk (the rest may be stragglers).
BULK_QUANTILE = 0.999
#: Fewer accounts than this among the reference rows: no export date is estimated.
MIN_ACCOUNTS_FOR_EXPORT_DATE = 20
#: ``churnml score --as-of`` later than the data's end by more than this prints a warning.
STALE_AS_OF_DAYS = 7
#: The latest dates kept per reference table while estimating (enough for 200M rows at 0.999).
_KEEP_LATEST = 200_000

#: The reference tables and their date columns.
REFERENCE_COLUMNS = {"mrr_changes": "effective_date", "usage_events": "ts"}

_DAY_NS = 86_400 * 10**9
#: ``pd.NaT`` typed as a Timestamp (what pandas returns for a missing date)
NAT = cast(pd.Timestamp, pd.NaT)


def _ns(values) -> np.ndarray:
    """Non-null datetimes as int64 nanoseconds."""
    arr = values.to_numpy() if isinstance(values, (pd.Series, pd.Index)) else np.asarray(values)
    if arr.dtype.kind != "M":
        arr = pd.to_datetime(pd.Series(arr)).to_numpy()
    ns = arr.astype("datetime64[ns]", copy=False).view("int64")
    nat = np.iinfo(np.int64).min
    return ns[ns != nat] if (ns == nat).any() else ns


class BulkEnd:
    """The bulk end of dates added in pieces (each piece keeps only its latest dates)."""

    def __init__(self, quantile: float = BULK_QUANTILE,
                 gap_days: float = DEFAULT_FUTURE_MARGIN_DAYS) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1]. Got {quantile!r}.")
        self.quantile = float(quantile)
        self.gap_days = float(gap_days)
        self.count = 0
        self._latest: list[np.ndarray] = []

    def add(self, values) -> None:
        ns = _ns(values)
        self.count += len(ns)
        if len(ns) > _KEEP_LATEST:
            ns = np.partition(ns, len(ns) - _KEEP_LATEST)[-_KEEP_LATEST:]
        self._latest.append(ns)

    def end(self) -> pd.Timestamp:
        """The bulk end (NaT when no date was added)."""
        if self.count == 0:
            return NAT
        latest = np.concatenate(self._latest) if len(self._latest) > 1 else self._latest[0]
        stragglers = min(int(np.floor(self.count * (1.0 - self.quantile) + 1e-9)), len(latest) - 1)
        top = np.sort(np.partition(latest, len(latest) - stragglers - 1)[-stragglers - 1:])
        gap = self.gap_days * _DAY_NS
        end = top[0]
        for value in top[1:]:
            if value - end > gap:
                break
            end = value
        return pd.Timestamp(int(end))


def bulk_end(columns: Iterable, quantile: float = BULK_QUANTILE,
             gap_days: float = DEFAULT_FUTURE_MARGIN_DAYS) -> pd.Timestamp:
    """The bulk end (module docstring) of the dates of ``columns`` taken together."""
    est = BulkEnd(quantile, gap_days)
    for column in columns:
        est.add(column)
    return est.end()


def book_data_end(tables) -> pd.Timestamp:
    """``Book.data_end``: the bulk end of the reference dates, at midnight (NaT when none)."""
    columns = [tables[t][c] for t, c in REFERENCE_COLUMNS.items()
               if t in tables and c in tables[t].columns and len(tables[t])]
    end = bulk_end(columns)
    return end.normalize() if pd.notna(end) else NAT


def as_of_warning(data_end, as_of, tolerance_days: int = STALE_AS_OF_DAYS) -> str | None:
    """A sentence when ``as_of`` is more than ``tolerance_days`` after the data's end
    (``data_end``: a timestamp or a ``Book``), else None: features would see nothing recent,
    so every alert and health dimension built on recent activity would degrade silently."""
    if hasattr(data_end, "data_end"):
        data_end = data_end.data_end
    if data_end is None or pd.isna(data_end):
        return None
    as_of = pd.Timestamp(as_of)
    late = (as_of.normalize() - pd.Timestamp(data_end).normalize()).days
    if late <= tolerance_days:
        return None
    return (f"--as-of {as_of.date()} is {late} days after the data's end "
            f"({pd.Timestamp(data_end).date()}): features see no activity in those days, so "
            f"usage, engagement and alerts will look worse than they are. Score an as_of up "
            f"to {tolerance_days} days after the data's end, or export fresher data.")
