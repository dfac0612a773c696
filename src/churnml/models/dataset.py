"""Observations for training: features + labels of stacked as_of snapshots, and the time split.

The split follows DESIGN.md "Observations, labels, leakage" exactly:

- as_of dates are spaced ``cadence_days`` apart, counted back from the latest labeled date
  (``data_end - horizon``: an observation is labeled when its whole label window
  ``[as_of, as_of + horizon)`` lies before the end of the data);
- **test** = the latest ``test_dates`` labeled dates;
- **calibration** (early stopping and probability calibration) = the ``calibration_dates``
  dates before that, the latest of them at least one gap (default one horizon) before the
  first test date;
- **train** = every earlier date, again at least one gap before the first calibration date.

So no label window of one part overlaps a label window of another, and no test as_of lies
within a horizon of a training as_of. On a short book the test and calibration windows shrink
to about a fifth of the labeled dates each (never below ``min_dates_per_window``) and the split
says so in ``notes``; with too little history :class:`InsufficientDataError` explains what is
missing.

That is the ``time`` split policy. :func:`choose_split` picks one of three policies from the
labeled dates (and :func:`build_dataset` from the event timing too; docs/models.md, "Split
policies"):

- ``time``: the split above, when it leaves at least ``time_min_train_dates`` training dates;
- ``short``: no calibration window, one gap between training and test
  (:func:`short_split`), so that at least ``short_min_train_share`` of the labeled dates train
  the model; early stopping and calibration are cross-fitted inside the training span;
- ``cross_sectional``: one date (the latest labeled one) split across accounts by stratified,
  account-grouped K-fold cross-validation (:func:`cross_sectional_folds`): a book with one
  labeled date, too few dates for any gap, or whose events all fall in its last horizon (a
  converted one-row-per-customer export).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churnml.errors import InsufficientDataError, SchemaError
from churnml.features.windows import to_as_of
from churnml.models.config import ModelConfig
from churnml.outcomes import Outcome, get_outcome

WINDOWS = ("train", "calibration", "test")
POLICIES = ("time", "short", "cross_sectional")
# A categorical attribute with more levels than this is an identifier, not a signal.
MAX_CATEGORY_LEVELS = 50


@dataclass
class TimeSplit:
    """Which as_of dates belong to which window. Dates are naive midnight Timestamps."""

    train: pd.DatetimeIndex
    calibration: pd.DatetimeIndex
    test: pd.DatetimeIndex
    horizon_days: int
    gap_days: int
    notes: list[str] = field(default_factory=list)
    #: ``time``, ``short`` or ``cross_sectional`` (module docstring) and why, in words
    policy: str = "time"
    policy_reason: str = ""

    @property
    def cross_sectional(self) -> bool:
        return self.policy == "cross_sectional"

    def window_of(self, as_of: pd.Series) -> pd.Series:
        """Name of the window of each as_of (``train``/``calibration``/``test``, else ``None``).

        Cross-sectional: every row at the date is ``train`` (the folds are across accounts,
        :func:`cross_sectional_folds`; the final model is fitted on all of them)."""
        values = pd.DatetimeIndex(as_of).as_unit("ns")
        out = np.full(len(values), None, dtype=object)
        names = ("train",) if self.cross_sectional else WINDOWS
        for name in names:
            out[values.isin(getattr(self, name).as_unit("ns"))] = name
        return pd.Series(out, index=as_of.index, name="window")

    def describe(self) -> dict[str, str | int]:
        """Start, end and number of dates of each window (ISO dates; an empty window, the
        calibration of the short and cross-sectional policies, is ``""`` and 0), the policy and
        its reason, for logs and tables."""
        out: dict[str, str | int] = {}
        for name in WINDOWS:
            dates = getattr(self, name)
            out[f"{name}_start"] = dates[0].date().isoformat() if len(dates) else ""
            out[f"{name}_end"] = dates[-1].date().isoformat() if len(dates) else ""
            out[f"{name}_dates"] = len(dates)
        out["gap_days"] = self.gap_days
        out["horizon_days"] = self.horizon_days
        out["policy"] = self.policy
        out["policy_reason"] = self.policy_reason
        return out


def labeled_as_of_dates(book, config: ModelConfig) -> pd.DatetimeIndex:
    """Labeled as_of dates of ``book``: every ``cadence_days`` back from ``data_end - horizon``.

    The earliest date is at least ``min_history_days`` after :func:`observed_start` (the day
    every table of the book has started recording).
    """
    data_end = book.data_end
    if pd.isna(data_end):
        raise InsufficientDataError("the book has no dated rows: cannot place any as_of date.")
    latest = to_as_of(data_end - pd.Timedelta(days=config.horizon_days))
    first = observed_start(book) + pd.Timedelta(days=config.min_history_days)
    if latest < first:
        raise InsufficientDataError(
            f"the book spans {first.date()} to {to_as_of(data_end).date()}: no as_of date has a full "
            f"{config.horizon_days}-day label window after {config.min_history_days} days of history."
        )
    count = int((latest - first).days // config.cadence_days) + 1
    return pd.DatetimeIndex(
        [latest - pd.Timedelta(days=config.cadence_days * k) for k in range(count - 1, -1, -1)]
    ).as_unit("ns")


def observed_start(book) -> pd.Timestamp:
    """First day on which every event table of the book has started recording.

    Revenue histories often reach back years before usage, invoices or NPS were collected; an
    as_of before the other tables start would see "no logins" that only mean "not recorded
    yet", a pattern the model must not learn and never meets when scoring.
    """
    from churnml.data.tables import TABLES

    pinned = getattr(book, "meta", {}).get("observed_start")
    if pinned is not None:  # a sampled book keeps its full book's (churnml.models.sampling)
        return pd.Timestamp(pinned)
    starts = []
    for name, frame in book.tables.items():
        spec = TABLES.get(name)
        column = spec.time_column if spec is not None else None
        if column and column in frame.columns and len(frame):
            value = frame[column].min()
            if pd.notna(value):
                starts.append(to_as_of(value))
    if not starts:
        raise InsufficientDataError("the book has no dated rows: cannot place any as_of date.")
    return max(starts)


def window_sizes(n_dates: int, config: ModelConfig) -> tuple[int, int, list[str]]:
    """Number of test and calibration dates for ``n_dates`` labeled dates, and notes if shrunk."""
    fifth = max(config.min_dates_per_window, n_dates // 5)
    n_test = min(config.test_dates, fifth)
    n_cal = min(config.calibration_dates, fifth)
    notes = []
    if n_test < config.test_dates or n_cal < config.calibration_dates:
        notes.append(
            f"short book: {n_dates} labeled as_of dates, so the test and calibration windows shrink "
            f"to {n_test} and {n_cal} dates (configured {config.test_dates} and "
            f"{config.calibration_dates}: about a fifth of the labeled span each)."
        )
    return n_test, n_cal, notes


def time_split(
    dates, config: ModelConfig, n_test: int | None = None, n_cal: int | None = None
) -> TimeSplit:
    """Split sorted labeled as_of ``dates`` into train / calibration / test (module docstring).

    ``n_test`` / ``n_cal`` fix the window sizes (the backtest reuses the main split's sizes);
    by default they follow :func:`window_sizes`. Raises :class:`InsufficientDataError` when a
    window would have fewer than ``min_dates_per_window`` dates.
    """
    dates = pd.DatetimeIndex(sorted(set(pd.DatetimeIndex(dates)))).as_unit("ns")
    notes: list[str] = []
    if n_test is None or n_cal is None:
        auto_test, auto_cal, notes = window_sizes(len(dates), config)
        n_test = auto_test if n_test is None else n_test
        n_cal = auto_cal if n_cal is None else n_cal
    gap = pd.Timedelta(days=config.gap)
    minimum = config.min_dates_per_window
    test = dates[-n_test:] if len(dates) >= n_test else dates[:0]
    calibration = dates[:0]
    train = dates[:0]
    if len(test) == n_test:
        calibration = dates[dates <= test[0] - gap][-n_cal:]
        if len(calibration):
            train = dates[dates <= calibration[0] - gap]
    if len(test) < n_test or len(calibration) < max(minimum, 1) or len(train) < minimum:
        gap_steps = math.ceil(config.gap / config.cadence_days)
        needed = n_test + n_cal + minimum + 2 * gap_steps
        span = f"{dates[0].date()} to {dates[-1].date()}" if len(dates) else "no dates"
        raise InsufficientDataError(
            f"too little history for an honest time split: {len(dates)} labeled as_of dates "
            f"({span}, every {config.cadence_days} days, horizon {config.horizon_days} days) but "
            f"at least {needed} are needed: test {n_test} + gap {config.gap} days + calibration "
            f"{n_cal} + gap {config.gap} days + training {minimum}. Use a longer book, a shorter "
            f"--horizon-days or a finer cadence."
        )
    return TimeSplit(train, calibration, test, config.horizon_days, config.gap, notes)


def short_split(dates, config: ModelConfig) -> TimeSplit | None:
    """The ``short`` policy: test = the latest dates, one gap, train = every earlier date; no
    calibration window (early stopping and calibration are cross-fitted inside the training
    span). The test window is about a fifth of the dates (at most ``test_dates``, at least
    ``min_dates_per_window``) and shrinks until at least ``short_min_train_share`` of the dates
    (and ``min_dates_per_window``) train. None when no size fits."""
    dates = pd.DatetimeIndex(sorted(set(pd.DatetimeIndex(dates)))).as_unit("ns")
    minimum = config.min_dates_per_window
    need_train = max(minimum, math.ceil(config.short_min_train_share * len(dates)))
    first = min(config.test_dates, max(minimum, len(dates) // 5))
    gap = pd.Timedelta(days=config.gap)
    for n_test in range(first, minimum - 1, -1):
        if len(dates) < n_test + need_train:
            continue
        test = dates[-n_test:]
        train = dates[dates <= test[0] - gap]
        if len(train) >= need_train:
            return TimeSplit(train, dates[:0], test, config.horizon_days, config.gap, policy="short")
    return None


def cross_sectional_split(date, config: ModelConfig, reason: str) -> TimeSplit:
    """The ``cross_sectional`` policy at one as_of ``date`` (train = test = that date; the
    folds are across accounts)."""
    day = pd.DatetimeIndex([pd.Timestamp(date)]).as_unit("ns")
    return TimeSplit(day, day[:0], day, config.horizon_days, 0, policy="cross_sectional",
                     policy_reason=reason)


def _dates_text(dates: pd.DatetimeIndex, config: ModelConfig) -> str:
    span = f"{dates[0].date()} to {dates[-1].date()}, " if len(dates) > 1 else ""
    return (f"{len(dates)} labeled as_of date{'s' if len(dates) != 1 else ''} ({span}every "
            f"{config.cadence_days} days, horizon {config.horizon_days} days)")


def choose_split(dates, config: ModelConfig) -> TimeSplit:
    """The split policy for sorted labeled ``dates`` (module docstring), with its reason.

    ``time`` when today's time split fits and leaves at least ``time_min_train_dates`` training
    dates; else ``short`` when :func:`short_split` fits; else ``cross_sectional`` at the latest
    date. ``config.split_policy`` other than ``auto`` forces a policy (an impossible one raises
    :class:`InsufficientDataError`). The event timing is checked later, with the labels
    (:func:`events_policy`)."""
    dates = pd.DatetimeIndex(sorted(set(pd.DatetimeIndex(dates)))).as_unit("ns")
    if not len(dates):
        raise InsufficientDataError("no labeled as_of date: nothing to train on.")
    forced = config.split_policy
    described = _dates_text(dates, config)
    if forced == "time":
        forced_time = time_split(dates, config)
        forced_time.policy_reason = f"forced by the configuration (split.policy: time); {described}"
        return forced_time
    if forced == "cross_sectional":
        return cross_sectional_split(dates[-1], config, "forced by the configuration "
                                     f"(split.policy: cross_sectional); {described}")
    if forced == "auto" and len(dates) > 1:
        split: TimeSplit | None
        try:
            split = time_split(dates, config)
        except InsufficientDataError:
            split = None
        if split is not None and len(split.train) >= config.time_min_train_dates:
            split.policy_reason = (
                f"{described}: the time split (train, gap, calibration, gap, test) leaves "
                f"{len(split.train)} training dates (at least {config.time_min_train_dates} needed)")
            return split
        short = short_split(dates, config)
        if short is not None:
            why = (f"today's time split would train on {len(split.train)} dates"
                   if split is not None else "too short for a time split with two gaps")
            short.policy_reason = (
                f"{described}: {why} (at least {config.time_min_train_dates} needed), so no "
                f"calibration window: early stopping and calibration are cross-fitted inside the "
                f"training span (grouped by account) and one {config.gap}-day gap separates "
                f"training ({len(short.train)} dates) from test ({len(short.test)})")
            return short
    elif forced == "short":
        short = short_split(dates, config)
        if short is None:
            raise InsufficientDataError(
                f"split.policy short: {described} leave no test window, {config.gap}-day gap and "
                f"training window of at least {config.short_min_train_share:.0%} of the dates.")
        short.policy_reason = f"forced by the configuration (split.policy: short); {described}"
        return short
    if len(dates) == 1:
        reason = f"1 labeled as_of date ({dates[0].date()}): a snapshot"
    else:
        reason = (f"{described}: too few for a test window after a {config.gap}-day gap with "
                  f"{config.short_min_train_share:.0%} of the dates training")
    return cross_sectional_split(dates[-1], config, reason + f", so cross-sectional at "
                                 f"{dates[-1].date()}: stratified {config.cv_folds}-fold "
                                 f"cross-validation grouped by account")


def events_policy(split: TimeSplit, positives: pd.Series, config: ModelConfig) -> TimeSplit:
    """``split``, or the ``cross_sectional`` policy at the latest date when the target's events
    all fall in the book's last horizon: the as_of dates whose label window ends before the
    latest labeled date's begins hold fewer than the 2 x ``min_positives`` events a training
    window needs, while the latest date holds some. That is what any converted
    one-row-per-customer export looks like (every churn just before the snapshot), whatever
    tool wrote it. ``positives``: positive labels per as_of date (index: the labeled dates)."""
    if split.cross_sectional or config.split_policy != "auto" or not len(positives):
        return split
    positives = positives.sort_index()
    latest = positives.index[-1]
    earlier = int(positives[positives.index <= latest - pd.Timedelta(days=config.horizon_days)].sum())
    recent = int(positives.iloc[-1])
    if earlier >= 2 * config.min_positives or recent == 0:
        return split
    reason = (f"{config.target} events all fall in the book's last horizon: {recent} positive "
              f"labels at the latest labeled as_of date, {earlier} on the dates whose "
              f"{config.horizon_days}-day label window ends before it (a time split needs "
              f"{2 * config.min_positives} to train), as in a one-row-per-customer export, so "
              f"cross-sectional at {pd.Timestamp(latest).date()}: stratified {config.cv_folds}-fold "
              f"cross-validation grouped by account")
    return cross_sectional_split(latest, config, reason)


def cross_sectional_folds(frame: pd.DataFrame, config: ModelConfig) -> np.ndarray:
    """Fold number (0..cv_folds-1) of each row: stratified by label, grouped by account
    (sklearn ``StratifiedGroupKFold``, shuffled with the config's seed). Raises
    :class:`InsufficientDataError` with fewer than ``min_positives`` x ``cv_folds`` positive
    labels (or fewer negatives)."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = frame["label"].to_numpy(dtype="float64") > 0
    needed = config.min_positives * config.cv_folds
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives < needed or negatives < needed:
        when = frame["as_of"].max()
        at = f" at {pd.Timestamp(when).date()}" if len(frame) else ""
        raise InsufficientDataError(
            f"{config.target}: too few events for cross-validation{at}: {positives:,} positive and "
            f"{negatives:,} negative labels among {len(frame):,} observations; at least {needed} of "
            f"each are needed ({config.min_positives} per fold x {config.cv_folds} folds: "
            f"split.min_positives x split.cv_folds).")
    folds = np.full(len(frame), -1, dtype=int)
    splitter = StratifiedGroupKFold(n_splits=config.cv_folds, shuffle=True, random_state=config.seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(frame)), y, frame["account_id"].to_numpy())):
        folds[held] = k
    return folds


def backtest_splits(dates, config: ModelConfig, main: TimeSplit) -> tuple[list[TimeSplit], list[str]]:
    """Rolling-origin splits: fold 1 is ``main``; fold k moves every window back by k-1 test spans.

    Folds without enough history are left out and named in the returned notes.
    """
    dates = pd.DatetimeIndex(sorted(set(pd.DatetimeIndex(dates)))).as_unit("ns")
    n_test, n_cal = len(main.test), len(main.calibration)
    folds, notes = [main], []
    for k in range(1, config.backtest_folds):
        cut = len(dates) - k * n_test
        try:
            folds.append(time_split(dates[:cut], config, n_test=n_test, n_cal=n_cal))
        except InsufficientDataError:
            notes.append(
                f"backtest: only {len(folds)} of {config.backtest_folds} folds fit in the history "
                f"({len(dates)} labeled dates, test windows of {n_test})."
            )
            break
    return folds, notes


@dataclass
class Dataset:
    """Stacked observations with features, label and the MRR at stake, plus the split.

    ``frame`` columns: ``account_id, as_of``, the features, ``label`` (0/1 float),
    ``event_mrr`` (what the outcome moves in the label window, :func:`event_mrr`; 0 when the
    event does not happen) and ``window`` (``None`` for as_of dates in a gap). Only labeled
    observations are kept.
    """

    frame: pd.DataFrame
    feature_names: list[str]
    categorical: list[str]
    split: TimeSplit
    target: str
    dropped_features: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def part(self, window: str) -> pd.DataFrame:
        """Rows of one window (``train``, ``calibration`` or ``test``)."""
        return self.frame[self.frame["window"] == window]

    def evaluation_rows(self) -> pd.DataFrame:
        """The rows the reported metrics are measured on: the test window; under the
        cross-sectional policy every row (each is held out by one fold)."""
        return self.frame if self.split.cross_sectional else self.part("test")

    def refold(self, split: TimeSplit, config: ModelConfig) -> "Dataset":
        """The same observations and features under another split (a backtest fold)."""
        # shallow: pandas' copy-on-write keeps self.frame as it is when the copy's window column
        # is replaced, and the other columns (2+ GB on a 50,000-account book) are not copied
        frame = self.frame.copy(deep=False)
        frame["window"] = split.window_of(frame["as_of"]).to_numpy()
        check_windows(frame, config, split)
        return Dataset(frame, self.feature_names, self.categorical, split, self.target,
                       self.dropped_features)

    def fingerprint(self) -> dict:
        """Row counts, positives and date range per window, for the run log."""
        out: dict = {"rows": int(len(self.frame)), "accounts": int(self.frame["account_id"].nunique())}
        out.update({k: v for k, v in self.split.describe().items()})
        # counted from the two columns alone: ``part`` copies every column of a window's rows
        # (training, the artifacts and the model card each take a fingerprint; at 50,000
        # accounts the three copies cost seconds)
        window = self.frame["window"].to_numpy()
        label = self.frame["label"].to_numpy(dtype="float64", na_value=np.nan)
        for name in WINDOWS:
            rows = window == name
            out[f"{name}_rows"] = int(rows.sum())
            out[f"{name}_positives"] = int(np.nansum(label[rows]))  # as pandas' sum: NaN skipped
        out["as_of_start"] = self.frame["as_of"].min().date().isoformat()
        out["as_of_end"] = self.frame["as_of"].max().date().isoformat()
        out["features"] = len(self.feature_names)
        return out


def mrr_moved(mrr_changes: pd.DataFrame, observations: pd.DataFrame, horizon_days: int,
              direction: str) -> np.ndarray:
    """MRR moved in ``[as_of, as_of + horizon)`` for each observation row: with ``direction``
    "rise" the sum of the rises from a value above 0 (rows with reason ``price_increase``
    excluded: expansion), with "fall" the sum of the falls from a value above 0 to a smaller
    value above 0 (contraction). Vectorised with per-account cumulative sums looked up by
    ``merge_asof``."""
    changes = mrr_changes.sort_values(["account_id", "effective_date"], kind="stable")
    previous = changes.groupby("account_id", sort=False)["mrr"].shift(1)
    if direction == "rise":
        moved = (changes["mrr"] - previous).where(previous > 0, 0.0).clip(lower=0).fillna(0.0)
        if "reason" in changes.columns:
            moved = moved.where(changes["reason"].astype("string").fillna("") != "price_increase",
                                0.0)
    elif direction == "fall":
        moved = (previous - changes["mrr"]).where((previous > 0) & (changes["mrr"] > 0), 0.0)
        moved = moved.clip(lower=0).fillna(0.0)
    else:
        raise ValueError(f"direction must be 'rise' or 'fall', got {direction!r}")
    events = pd.DataFrame(
        {"account_id": changes["account_id"].to_numpy(),
         "t": changes["effective_date"].astype("datetime64[ns]").to_numpy(),
         "cum": moved.groupby(changes["account_id"], sort=False).cumsum().to_numpy()}
    ).sort_values("t", kind="stable")

    def cumulative_before(times: pd.Series) -> np.ndarray:
        # cumulative move of the latest change strictly before `times` (0 when none)
        query = pd.DataFrame({"account_id": observations["account_id"].to_numpy(), "t": times.to_numpy(),
                              "row": np.arange(len(observations))}).sort_values("t", kind="stable")
        hit = pd.merge_asof(query, events, on="t", by="account_id", allow_exact_matches=False)
        return hit.sort_values("row")["cum"].fillna(0.0).to_numpy()

    start = pd.to_datetime(observations["as_of"]).astype("datetime64[ns]")
    end = start + pd.Timedelta(days=horizon_days)
    return cumulative_before(end) - cumulative_before(start)


def expansion_mrr_gained(mrr_changes: pd.DataFrame, observations: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """MRR gained by expansion in ``[as_of, as_of + horizon)`` (:func:`mrr_moved`, "rise")."""
    return mrr_moved(mrr_changes, observations, horizon_days, "rise")


def event_mrr(outcome: Outcome, frame: pd.DataFrame, mrr_at_as_of: pd.Series,
              mrr_changes: pd.DataFrame | None, horizon_days: int) -> np.ndarray:
    """What the outcome moves when it happens (0 when it does not): the MRR at as_of for an
    outcome that takes it to zero, the MRR risen or fallen in the label window otherwise
    (NaN without the revenue history)."""
    label = frame["label"].to_numpy(dtype="float64")
    if outcome.label_rule == "mrr_reaches_zero":
        return mrr_at_as_of.fillna(0.0).to_numpy(dtype="float64") * label
    if mrr_changes is None:
        return np.full(len(frame), np.nan)
    direction = {"mrr_rises": "rise", "mrr_falls_above_zero": "fall"}[outcome.label_rule]
    return mrr_moved(mrr_changes, frame, horizon_days, direction) * label


def feature_kinds(frame: pd.DataFrame, feature_names: list[str]) -> list[str]:
    """Names of the categorical features: string / object / category columns."""
    return [
        c for c in feature_names
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]


def select_features(frame: pd.DataFrame, candidates: list[str], train_mask) -> tuple[list[str], list[str], dict[str, str]]:
    """Keep the usable feature columns: drop those empty or constant in training and
    categorical identifiers (more than ``MAX_CATEGORY_LEVELS`` levels). Returns
    ``(features, categorical, dropped {name: why})``."""
    train = frame.loc[train_mask, candidates]
    categorical = set(feature_kinds(frame, candidates))
    keep, dropped = [], {}
    for name in candidates:
        col = train[name]
        nunique = col.nunique(dropna=True)
        if nunique == 0:
            dropped[name] = "empty in the training window"
        elif nunique == 1 and not col.isna().any():
            dropped[name] = "constant in the training window"
        elif name in categorical and nunique > MAX_CATEGORY_LEVELS:
            dropped[name] = f"categorical with {nunique} levels (an identifier, not a signal)"
        else:
            keep.append(name)
    return keep, [c for c in keep if c in categorical], dropped


def check_windows(frame: pd.DataFrame, config: ModelConfig, split: TimeSplit | None = None) -> None:
    """Raise :class:`InsufficientDataError` when a window has too few positives (or no negatives).

    Under the short policy there is no calibration window; under the cross-sectional policy
    the folds are checked instead (:func:`cross_sectional_folds`)."""
    if split is not None and split.cross_sectional:
        cross_sectional_folds(frame, config)
        return
    windows = WINDOWS if split is None or split.policy == "time" else ("train", "test")
    for window in windows:
        part = frame[frame["window"] == window]
        needed = config.min_positives * (2 if window == "train" else 1)
        positives = int(part["label"].sum())
        if positives < needed or positives == len(part):
            span = (f"{part['as_of'].min().date()} to {part['as_of'].max().date()}, "
                    if len(part) else "")
            raise InsufficientDataError(
                f"{config.target}: the {window} window ({span}{len(part)} observations) has "
                f"{positives} positive labels; at least {needed} positives and some negatives are "
                f"needed for an honest {'fit' if window == 'train' else 'evaluation'}."
            )


def _same_keys(features: pd.DataFrame, labels: pd.DataFrame) -> bool:
    """True when ``labels`` has exactly ``features``' (account_id, as_of) rows in the same
    order, strictly increasing by (as_of, account_id), so without a duplicate: then the
    one-to-one inner join keeps every feature row as it is."""
    if len(features) != len(labels):
        return False
    as_of, accounts = features["as_of"].to_numpy(), features["account_id"].to_numpy(dtype=object)
    if not (np.array_equal(as_of, labels["as_of"].to_numpy())
            and np.array_equal(accounts, labels["account_id"].to_numpy(dtype=object))):
        return False
    same_date = as_of[1:] == as_of[:-1]
    later = as_of[1:] > as_of[:-1]
    return bool(np.all(later | (same_date & (accounts[1:] > accounts[:-1]))))


def assemble(
    features: pd.DataFrame,
    grid: pd.DataFrame,
    config: ModelConfig,
    split: TimeSplit,
    mrr_changes: pd.DataFrame | None = None,
) -> Dataset:
    """Join features with the observation grid's labels; keep the labeled observations.

    ``features``: ``account_id, as_of`` + features (as ``build_features`` returns);
    ``grid``: ``account_id, as_of, mrr, churn, expansion, labeled`` (``observation_grid``).
    Rows whose as_of falls in a gap keep ``window = None`` (the backtest folds use them).
    """
    for name, frame, cols in (("features", features, ["account_id", "as_of"]),
                              ("observation grid", grid, ["account_id", "as_of", "mrr", config.target])):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise SchemaError(f"{name}: missing column(s) {missing}")
    labels = grid[["account_id", "as_of", "mrr", config.target]].rename(
        columns={"mrr": "_mrr_at_as_of", config.target: "label"}
    )
    # unlabeled rows leave before the join: one copy of the (large) feature frame, not two
    labels = labels[labels["label"].notna()]
    if _same_keys(features, labels):
        # the usual case (build_dataset: features and grid of the same labeled dates, both in
        # (as_of, account_id) order): the inner join is the feature frame itself, so it is
        # not copied (a shallow copy; pandas' copy-on-write leaves ``features`` as it is)
        frame = features.copy(deep=False)
        frame["_mrr_at_as_of"] = labels["_mrr_at_as_of"].to_numpy()
        frame["label"] = labels["label"].to_numpy()
    else:
        frame = features.merge(labels, on=["account_id", "as_of"], how="inner", validate="one_to_one")
    frame = frame.reset_index(drop=True)
    frame["label"] = frame["label"].astype("float64")
    frame["event_mrr"] = event_mrr(get_outcome(config.target), frame, frame["_mrr_at_as_of"],
                                   mrr_changes, config.horizon_days)
    frame = frame.drop(columns=["_mrr_at_as_of"])
    if split.cross_sectional:
        frame = frame[frame["as_of"] == split.train[0]].reset_index(drop=True)
    frame["window"] = split.window_of(frame["as_of"]).to_numpy()
    check_windows(frame, config, split)
    if split.cross_sectional:
        frame["fold"] = cross_sectional_folds(frame, config)
    candidates = [c for c in features.columns if c not in ("account_id", "as_of")]
    names, categorical, dropped = select_features(frame, candidates, frame["window"] == "train")
    return Dataset(frame, names, categorical, split, config.target, dropped)


def build_dataset(book, config: ModelConfig, catalog=None, progress=None) -> Dataset:
    """Features and labels of ``book`` for ``config.target`` on every labeled as_of date."""
    from churnml.features.build import build_features
    from churnml.features.labels import observation_grid

    dates = labeled_as_of_dates(book, config)
    split = choose_split(dates, config)
    clock = time.perf_counter()
    grid = observation_grid(book, dates, config.horizon_days, expansion_min_share=config.expansion_min_share)
    labels_seconds = time.perf_counter() - clock
    if config.target in grid.columns:
        positives = grid.groupby("as_of")[config.target].sum()
        split = events_policy(split, positives, config)
    if split.cross_sectional:  # features at the one date only
        dates = split.train
        grid = grid[grid["as_of"].isin(dates)]
    if progress is not None:
        progress.note(f"features for {len(dates)} as_of date{'s' if len(dates) != 1 else ''} "
                      f"({split.policy} split)")
    clock = time.perf_counter()
    features = build_features(book, dates, catalog=catalog)
    built = time.perf_counter()
    dataset = assemble(features, grid, config, split, mrr_changes=book.mrr_changes)
    dataset.timings = {"features_seconds": built - clock, "labels_seconds": labels_seconds}
    return dataset
