"""The observation grid (account, as_of) of active accounts, with one label per outcome.

Rules (DESIGN.md, "Observations, labels, leakage"):

- an observation is (account_id, as_of) for an account *active* at as_of: its latest
  ``mrr_changes`` row strictly before as_of has ``mrr > 0`` (a churned account that is
  reactivated becomes active again from the day after its reactivation row);
- ``churn`` = 1 when the account's MRR reaches 0 in ``[as_of, as_of + horizon)``;
- ``expansion`` = 1 when its MRR rises at least once in that window while it was already above
  0 (by at least ``expansion_min_share`` of the previous MRR; any rise by default), not counting
  rows whose reason is ``price_increase``; an observation can carry both labels;
- ``contraction`` = 1 when its MRR falls in that window from a value above 0 to a smaller value
  still above 0 (a fall to 0 is churn);
- the outcomes and their rules are declared in :mod:`churnml.outcomes`; the grid has one
  column per outcome, in :data:`~churnml.outcomes.OUTCOMES` order;
- when ``as_of + horizon`` is after the data's end (``Book.data_end``) the labels are unknown:
  every outcome column is NaN and ``labeled`` is False (scored, never trained on).

The grid and ``build.build_features`` list observations in the same order: by as_of, then
account_id.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.data.tables import Book
from churnml.errors import UsageError
from churnml.features import engine
from churnml.features.windows import (
    as_of_day_numbers,
    as_of_dates,
    label_day_bounds,
    to_as_of,
    weekly_as_of_dates,
)
from churnml.outcomes import OUTCOMES


def sorted_account_ids(book: Book) -> np.ndarray:
    """The book's account ids, sorted (their positions are the builders' account codes)."""
    ids = pd.unique(book.accounts["account_id"].astype(object))
    return np.sort(np.asarray([i for i in ids if isinstance(i, str)], dtype=object))


def prepare_mrr(book: Book, sorted_ids: np.ndarray) -> engine.PreparedTable:
    """``mrr_changes`` sorted by (account, effective_date), with the previous MRR attached and
    per-row change flags: ``mrr_previous`` (NaN on an account's first row), ``mrr_rise_share``
    (relative rise over a positive previous MRR, NaN otherwise)."""
    table = engine.PreparedTable("mrr_changes", book.mrr_changes, "effective_date", sorted_ids)
    mrr = table.column("mrr")
    first = np.r_[True, table.acc[1:] != table.acc[:-1]] if len(table) else np.zeros(0, bool)
    prev = np.empty_like(mrr)
    if len(mrr):
        prev[1:] = mrr[:-1]
        prev[first] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(prev > 0, (mrr - prev) / prev, np.nan)
    table.add_column("mrr_previous", prev)
    table.add_column("mrr_rise_share", share)
    table.add_column("is_fall_above_zero",
                     ((prev > 0) & (mrr > 0) & (mrr < prev)).astype(np.float64))
    if "reason" in book.mrr_changes.columns:
        reason = table.column("reason")
        price = np.asarray(pd.Series(reason).eq("price_increase").fillna(False), dtype=bool)
    else:
        price = np.zeros(len(table), dtype=bool)
    table.add_column("is_price_increase", price.astype(np.float64))
    return table


def active_observations(book: Book, as_of_dates_, mrr_table=None, sorted_ids=None):
    """Observations of accounts active at each as_of, in (account, as_of) order.

    Returns ``(obs, mrr)``: :class:`engine.Observations` and the MRR in force just before as_of.
    """
    if sorted_ids is None:
        sorted_ids = sorted_account_ids(book)
    if mrr_table is None:
        mrr_table = prepare_mrr(book, sorted_ids)
    dates = as_of_dates(as_of_dates_)
    days = as_of_day_numbers(dates)
    n_acc = len(sorted_ids)
    acc = np.repeat(np.arange(n_acc, dtype=np.int64), len(days))
    day = np.tile(days, n_acc)
    every = engine.Observations(acc, day)
    rows = mrr_table.rows(None)
    last = rows.last_before(every, every.day)
    mrr_all = mrr_table.column("mrr")
    mrr = np.where(last >= 0, mrr_all[np.maximum(last, 0)], np.nan)
    active = mrr > 0
    return engine.Observations(acc[active], day[active]), mrr[active]


def observation_grid(
    book: Book,
    as_of_dates,
    horizon_days: int = 90,
    expansion_min_share: float = 0.0,
) -> pd.DataFrame:
    """One row per active (account, as_of): ``account_id, as_of, mrr``, one label column per
    outcome (``churn, expansion, contraction``) and ``labeled``.

    ``mrr`` is the MRR in force just before as_of; labels are float 0/1 and NaN when unlabeled
    (``labeled`` False: as_of + horizon_days is after ``book.data_end``). Rows are ordered by
    as_of, then account_id.
    """
    if not isinstance(horizon_days, (int, np.integer)) or horizon_days <= 0:
        raise UsageError(f"The 'horizon_days' parameter must be a positive integer. Got {horizon_days!r}.")
    if not (0.0 <= float(expansion_min_share)):
        raise UsageError(
            f"The 'expansion_min_share' parameter must be >= 0. Got {expansion_min_share!r}."
        )
    sorted_ids = sorted_account_ids(book)
    mrr_table = prepare_mrr(book, sorted_ids)
    obs, mrr = active_observations(book, as_of_dates, mrr_table, sorted_ids)

    mrr_all = mrr_table.column("mrr")
    share = mrr_table.column("mrr_rise_share")
    price = mrr_table.column("is_price_increase") > 0
    rises = share > 0 if expansion_min_share <= 0 else share >= expansion_min_share
    rises = rises & ~price
    # the rows that make each label rule true (churnml.outcomes.LABEL_RULES)
    events = {
        "mrr_reaches_zero": ("is_zero", mrr_all == 0),
        "mrr_rises": (f"rise>={expansion_min_share}", rises),
        "mrr_falls_above_zero": ("fall>0", mrr_table.column("is_fall_above_zero") > 0),
    }
    rows = mrr_table.rows(None)
    start, end = label_day_bounds(obs.day, int(horizon_days))

    data_end = book.data_end
    if pd.isna(data_end):
        labeled = np.zeros(len(obs), dtype=bool)
    else:
        end_day = as_of_day_numbers([data_end])[0]
        labeled = (obs.day + int(horizon_days)) <= end_day
    data = {
        "account_id": pd.array(sorted_ids[obs.acc], dtype="str"),
        "as_of": obs.day.astype("datetime64[D]").astype("datetime64[ns]"),
        "mrr": mrr,
    }
    for outcome in OUTCOMES:
        key, hits = events[outcome.label_rule]
        count = rows.window_total(obs, start, end, rows.cumsum(key, hits))
        data[outcome.name] = np.where(labeled, (count > 0).astype(np.float64), np.nan)
    data["labeled"] = labeled
    frame = pd.DataFrame(data)
    return frame.sort_values(["as_of", "account_id"], kind="stable").reset_index(drop=True)


def latest_labeled_as_of(book: Book, horizon_days: int) -> pd.Timestamp:
    """The latest as_of whose label window ``[as_of, as_of + horizon)`` ends by the data's end."""
    data_end = book.data_end
    if pd.isna(data_end):
        raise UsageError("the book has no dated rows: cannot place as_of dates")
    return to_as_of(data_end - pd.Timedelta(days=int(horizon_days)))


def latest_scoring_date(book: Book) -> pd.Timestamp:
    """The as_of for scoring the latest week: the data's end (``Book.data_end``, a midnight).

    Features then see every row strictly before that day; rows on the last day itself, which
    may be a partial day, wait for the next run.
    """
    data_end = book.data_end
    if pd.isna(data_end):
        raise UsageError("the book has no dated rows: cannot place an as_of date")
    return to_as_of(data_end)


def default_as_of_dates(
    book: Book, horizon_days: int, cadence_days: int = 7, n: int | None = None
) -> pd.DatetimeIndex:
    """Weekly (``cadence_days``) as_of dates counted back from the latest labeled date.

    ``n`` dates when given, else every date back to the first day after the earliest
    ``mrr_changes`` row (earlier dates cannot have an active account).
    """
    if cadence_days <= 0:
        raise UsageError(f"The 'cadence_days' parameter must be a positive integer. Got {cadence_days!r}.")
    latest = latest_labeled_as_of(book, horizon_days)
    if n is None:
        first = to_as_of(book.mrr_changes["effective_date"].min()) + pd.Timedelta(days=1)
        if latest < first:
            raise UsageError(
                f"no complete label window: the data ends {book.data_end.date()} and the horizon "
                f"is {horizon_days} days, but the revenue history starts {first.date()}"
            )
        n = int((latest - first).days // cadence_days) + 1
    if n <= 0:
        raise UsageError(f"The 'n' parameter must be a positive integer. Got {n!r}.")
    return weekly_as_of_dates(latest, n, cadence_days)
