"""The one helper that decides time windows, used by features and labels alike.

Features of an observation (account, as_of) see ``[as_of - window, as_of)``: rows strictly
before as_of. Labels see ``[as_of, as_of + horizon)``. Nothing else in churnml compares event
times with as_of by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY = np.timedelta64(1, "D")


def to_as_of(value) -> pd.Timestamp:
    """Normalise an as_of date (str, date, Timestamp) to a naive midnight-UTC Timestamp."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize().as_unit("ns")


def as_of_dates(values) -> pd.DatetimeIndex:
    """Sorted, de-duplicated as_of dates as a naive ``datetime64[ns]`` index."""
    return pd.DatetimeIndex(sorted({to_as_of(v) for v in values})).as_unit("ns")


def feature_window(as_of, days: float | None):
    """Bounds ``(start, end)`` of a feature window: rows with ``start <= ts < end``.

    ``days=None`` means all history before as_of (start is ``None``).
    Works element-wise when ``as_of`` is an array / Series of timestamps.
    """
    end = as_of
    start = None if days is None else as_of - pd.to_timedelta(days, unit="D")
    return start, end


def label_window(as_of, horizon_days: int):
    """Bounds ``(start, end)`` of a label window: events with ``start <= t < end``."""
    return as_of, as_of + pd.to_timedelta(horizon_days, unit="D")


def in_feature_window(ts, as_of, days: float | None):
    """Boolean mask: ``ts`` lies in ``[as_of - days, as_of)`` (element-wise)."""
    start, end = feature_window(as_of, days)
    mask = ts < end
    if start is not None:
        mask = mask & (ts >= start)
    return mask


def in_label_window(ts, as_of, horizon_days: int):
    """Boolean mask: ``ts`` lies in ``[as_of, as_of + horizon)`` (element-wise)."""
    start, end = label_window(as_of, horizon_days)
    return (ts >= start) & (ts < end)


def weekly_as_of_dates(end, count: int, cadence_days: int = 7) -> pd.DatetimeIndex:
    """``count`` as_of dates spaced ``cadence_days`` apart, the latest equal to ``end``."""
    end = to_as_of(end)
    return pd.DatetimeIndex(
        [end - pd.Timedelta(days=cadence_days * k) for k in range(count - 1, -1, -1)]
    ).as_unit("ns")


# --- integer day numbers: the vectorised builders compare whole days --------------------------
# as_of is a midnight and every window is a whole number of days, so a row at time ts lies in
# [as_of - d, as_of) exactly when its calendar day lies in [day(as_of) - d, day(as_of)). The
# builders therefore work on int64 day numbers (days since 1970-01-01, floored), which are exact.


def day_numbers(values) -> np.ndarray:
    """Calendar day of each timestamp as int64 days since 1970-01-01 (floored; NaT -> INT64 min).

    Accepts a Series / DatetimeIndex / array of naive ``datetime64``.
    """
    arr = np.asarray(values, dtype="datetime64[ns]")
    days = arr.astype("datetime64[D]").astype(np.int64)  # astype to [D] floors toward -inf
    return days


NAT_DAY = np.iinfo(np.int64).min


def feature_day_bounds(as_of_day, days: int | None, offset_days: int = 0):
    """Day-number bounds ``(start, end)`` of ``[as_of - offset - days, as_of - offset)``.

    ``days=None`` means all history (start ``None``). ``offset_days`` shifts the window back
    (e.g. the 60 days before the latest 30); the end never passes as_of.
    """
    if offset_days < 0:
        raise ValueError(f"The 'offset_days' parameter must be >= 0. Got {offset_days}.")
    end = as_of_day - offset_days
    start = None if days is None else end - days
    return start, end


def label_day_bounds(as_of_day, horizon_days: int):
    """Day-number bounds ``(start, end)`` of the label window ``[as_of, as_of + horizon)``."""
    return as_of_day, as_of_day + horizon_days


def as_of_day_numbers(as_of) -> np.ndarray:
    """Day numbers of as_of timestamps (each must be a midnight, see :func:`to_as_of`)."""
    arr = np.asarray(as_of, dtype="datetime64[ns]")
    days = arr.astype("datetime64[D]")
    if np.any(days.astype("datetime64[ns]") != arr):
        raise ValueError("as_of values must be midnights (use churnml.features.windows.to_as_of)")
    return days.astype(np.int64)
