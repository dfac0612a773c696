"""One row per customer -> a book of business (``churnml convert snapshot``).

A *snapshot* table is the usual public churn export (the telco datasets and their kind): one
row per customer with an id, a churn flag, a tenure in months, a monthly charge and the date
the table was taken, plus account attributes. :func:`convert_snapshot` maps it onto the data
contract (``docs/data_contract.md``, "Converting a one-row-per-customer table"):

- ``accounts``: ``account_id``, ``created_at`` = snapshot date - tenure months, and every other
  column as a static attribute (numbers as ``float64``, anything else as text);
- ``mrr_changes``: a ``new`` row at ``created_at`` with ``mrr`` = the monthly charge; for a
  churned customer a ``churn`` row with ``mrr`` 0 on the day before the snapshot date
  (:func:`churn_dates`); for every customer who stayed a `renewal` row at the same charge on
  the snapshot date (the revenue history runs to the snapshot: its data end).

Every customer becomes an account or nothing is converted: bad input is a
:class:`~churnml.errors.SchemaError` naming the column, the count and up to five examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churnml.data.validation import (
    is_reserved_column,
    normalise_ids,
    parse_numbers,
    parse_text,
    parse_timestamps,
)
from churnml.errors import SchemaError, UsageError, format_examples

__all__ = [
    "DEFAULT_CHURN_VALUES", "DEFAULT_STAY_VALUES", "AVERAGE_MONTH_DAYS", "SnapshotSpec",
    "SnapshotBook", "churn_dates", "convert_snapshot", "created_dates", "parse_flag_values",
]

DEFAULT_CHURN_VALUES = ("yes", "1", "true")
DEFAULT_STAY_VALUES = ("no", "0", "false")
# the fraction of a fractional tenure (2.5 months) is counted in days of an average month
AVERAGE_MONTH_DAYS = 365.25 / 12
# output columns an attribute may not be named like (besides churnml's reserved names)
OUTPUT_COLUMNS = frozenset({"account_id", "created_at", "effective_date", "reason", "term_end"})


@dataclass(frozen=True)
class SnapshotSpec:
    """Which input column is what; exactly one of ``snapshot_date`` / ``snapshot_date_column``."""

    id_column: str
    churn_column: str
    tenure_column: str
    charge_column: str
    snapshot_date: str | None = None
    snapshot_date_column: str | None = None
    churn_values: tuple[str, ...] = DEFAULT_CHURN_VALUES
    stay_values: tuple[str, ...] = DEFAULT_STAY_VALUES

    @property
    def named_columns(self) -> dict[str, str]:
        """``{option: input column}`` of the columns the options name (not attributes)."""
        named = {"--id-column": self.id_column, "--churn-column": self.churn_column,
                 "--tenure-column": self.tenure_column, "--charge-column": self.charge_column}
        if self.snapshot_date_column is not None:
            named["--snapshot-date-column"] = self.snapshot_date_column
        return named


@dataclass
class SnapshotBook:
    """The converted tables and what the conversion counted."""

    accounts: pd.DataFrame
    mrr_changes: pd.DataFrame
    customers: int
    churned: int
    attributes: dict[str, str] = field(default_factory=dict)  # name -> "number" | "text"
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        return {"accounts": self.accounts, "mrr_changes": self.mrr_changes}


def parse_flag_values(text: str | None, default: tuple[str, ...], option: str) -> tuple[str, ...]:
    """``"yes,1,true"`` -> ``("yes", "1", "true")`` (stripped, lower case, no empties)."""
    if text is None:
        return default
    values = tuple(dict.fromkeys(v.strip().lower() for v in text.split(",") if v.strip()))
    if not values:
        raise UsageError(f"{option} needs at least one value (comma-separated). Got {text!r}.")
    return values


def _flag_text(s: pd.Series) -> pd.Series:
    """A churn flag as comparable text: stripped, lower case; booleans ``true``/``false``;
    integral numbers without a fraction (``1.0`` -> ``1``); null stays null."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.map(lambda v: None if pd.isna(v) else ("true" if v else "false")).astype("str")
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.map(lambda v: None if pd.isna(v) else (
            str(int(v)) if float(v).is_integer() else str(v))).astype("str")
    text = parse_text(s)
    return text.str.lower().str.replace(r"^([+-]?[0-9]+)\.0*$", r"\1", regex=True)


def _bad(column: str, what: str, values: pd.Series, total: int, count: int | None = None) -> str:
    """``column 'x' must be >= 0: 3 of 5,000 rows, e.g. ['-1', ...]`` (count = len(values))."""
    count = len(values) if count is None else count
    return (f"column {column!r} {what}: {count:,} of {total:,} rows, "
            f"e.g. {format_examples(values.tolist())}")


def _rows(mask: pd.Series) -> pd.Series:
    """``row N`` labels (0-based data rows) where ``mask`` holds: examples for missing values."""
    return pd.Series([f"row {i}" for i in np.flatnonzero(mask.to_numpy())], dtype="object")


def created_dates(snapshot: pd.Series, tenure: pd.Series) -> pd.Series:
    """``snapshot - tenure months``: whole months by the calendar (``2026-03-31`` minus one
    month is ``2026-02-28``: the day is clipped to the month's end), the fraction of a month
    in days of an average month (30.44 days), rounded to whole days."""
    pairs = pd.DataFrame({"day": snapshot.to_numpy(), "months": tenure.to_numpy()})
    unique = pairs.drop_duplicates()  # few distinct (date, tenure) pairs: computed once each
    dates = []
    for day, months in zip(unique["day"], unique["months"]):
        whole = math.floor(months)
        extra = round((months - whole) * AVERAGE_MONTH_DAYS)
        try:
            dates.append(day - pd.DateOffset(months=whole) - pd.Timedelta(days=extra))
        except (OverflowError, ValueError):  # before 1677: left null, refused by the caller
            dates.append(pd.NaT)
    unique = unique.assign(created=pd.to_datetime(pd.Series(dates, dtype="object"))
                           .astype("datetime64[ns]").to_numpy())
    out = pairs.merge(unique, on=["day", "months"], how="left")["created"]
    return pd.Series(out.to_numpy(), index=snapshot.index).astype("datetime64[ns]")


def churn_dates(snapshot: pd.Series, created: pd.Series) -> pd.Series:
    """When a churned customer's MRR falls to 0: the day before the snapshot date.

    The flag only says the customer had left by the snapshot (the telco exports: "left within
    the last month"), so the churn is dated inside the last month, as late as it can be while
    still before the snapshot: the last day before it. Then the account is churned at the
    snapshot date, every churn falls in any horizon ending at the snapshot (a cross-sectional
    book's churn events all fall in its last horizon), and the tenure the table gives (months
    from ``created_at`` to the snapshot) is the customer's whole life. A customer who joined
    on the snapshot date itself (tenure 0) churns on ``created_at`` (the same day as its
    ``new`` row, written after it), never before it joined.
    """
    day_before = snapshot - pd.Timedelta(days=1)
    return day_before.where(day_before >= created, created)


def _attribute(raw: pd.Series) -> tuple[pd.Series, str]:
    """An attribute column typed: numbers as ``float64``, anything else as text."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return _flag_text(raw), "text"
    if pd.api.types.is_numeric_dtype(raw.dtype):
        values, _ = parse_numbers(raw)
        return values, "number"
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed, _ = parse_timestamps(raw)
        return parsed.dt.strftime("%Y-%m-%dT%H:%M:%S").astype("str"), "text"
    text = parse_text(raw)
    values, bad = parse_numbers(text)
    if text.notna().any() and not bad.any():
        return values, "number"
    return text, "text"


def convert_snapshot(frame: pd.DataFrame, spec: SnapshotSpec) -> SnapshotBook:
    """Convert a one-row-per-customer table (as read: CSV all text, parquet typed).

    Raises :class:`SchemaError` naming every problem at once (a missing named column, a churn
    flag outside the churn and stay values, a tenure or charge that is missing, not a number
    or negative, a missing or repeated id, an unparseable snapshot date, an attribute named
    like an output column).
    """
    if (spec.snapshot_date is None) == (spec.snapshot_date_column is None):
        raise UsageError("give exactly one of --snapshot-date DATE and "
                         "--snapshot-date-column COLUMN")
    overlap = set(spec.churn_values) & set(spec.stay_values)
    if overlap:
        raise UsageError(f"--churn-values and --stay-values share {format_examples(sorted(overlap))}")
    columns = [str(c).strip() for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    problems: list[str] = []
    repeated_names = sorted({c for c in columns if columns.count(c) > 1})
    if repeated_names:
        raise SchemaError(f"column names appear more than once: {format_examples(repeated_names)}")
    seen: dict[str, str] = {}
    for option, column in spec.named_columns.items():
        if column not in columns:
            problems.append(f"{option} {column!r}: no such column (columns found: "
                            f"{format_examples(columns, limit=20)})")
        elif column in seen:
            problems.append(f"{option} and {seen[column]} name the same column {column!r}")
        seen.setdefault(column, option)
    if problems:
        raise SchemaError("\n".join(problems))
    total = len(frame)
    if total == 0:
        raise SchemaError("the table has no rows: nothing to convert")
    frame = frame.reset_index(drop=True)

    # the id: present and unique
    ids = normalise_ids(frame[spec.id_column])
    if ids.isna().any():
        problems.append(_bad(spec.id_column, "has missing ids", _rows(ids.isna()), total))
    repeated = ids[ids.notna() & ids.duplicated(keep=False)]
    if len(repeated):
        problems.append(_bad(spec.id_column, "has repeated ids (one row per customer)",
                             repeated.drop_duplicates(), total, count=len(repeated)))

    # the churn flag: every value a churn value or a stay value
    flag = _flag_text(frame[spec.churn_column])
    churned = flag.isin(spec.churn_values).to_numpy()
    stayed = flag.isin(spec.stay_values).to_numpy()
    outside = ~(churned | stayed)
    if outside.any():
        raw = frame[spec.churn_column][outside].astype("object")
        raw = raw.where(raw.notna(), None)  # a missing flag shows as None, not nan
        problems.append(_bad(spec.churn_column, f"has values that are neither churn "
                             f"{list(spec.churn_values)} nor stay {list(spec.stay_values)} "
                             f"(--churn-values / --stay-values)", raw, total))

    # tenure and charge: numbers >= 0, never missing
    numbers = {}
    for option, column in (("--tenure-column", spec.tenure_column),
                           ("--charge-column", spec.charge_column)):
        raw = frame[column]
        values, bad = parse_numbers(raw)
        missing = values.isna() & ~bad
        negative = values < 0
        if bad.any():
            problems.append(_bad(column, "must be numeric", raw[bad], total))
        if missing.any():
            problems.append(_bad(column, "has missing values", _rows(missing), total))
        if negative.any():
            problems.append(_bad(column, "must be >= 0", raw[negative], total))
        numbers[column] = values

    # the snapshot date(s)
    if spec.snapshot_date_column is not None:
        raw = frame[spec.snapshot_date_column]
        if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
            problems.append(f"column {spec.snapshot_date_column!r} holds numbers, not dates "
                            f"(give ISO dates like 2026-11-16)")
            snapshot = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
        else:
            snapshot, unparseable = parse_timestamps(raw)
            bad = unparseable | snapshot.isna()
            if bad.any():
                problems.append(_bad(spec.snapshot_date_column,
                                     "must hold ISO 8601 dates (none missing)", raw[bad], total))
    else:
        one, unparseable = parse_timestamps(pd.Series([spec.snapshot_date], dtype="object"))
        if unparseable.any() or one.isna().any():
            raise UsageError(f"--snapshot-date must be an ISO date like 2026-11-16. "
                             f"Got {spec.snapshot_date!r}.")
        snapshot = pd.Series(one.iloc[0], index=frame.index, dtype="datetime64[ns]")
    snapshot = snapshot.dt.normalize()  # a date: midnight UTC

    # attributes: every other column, named unlike any output column
    named = set(spec.named_columns.values())
    attribute_names = [c for c in columns if c not in named]
    refused = [c for c in attribute_names
               if c.strip() in OUTPUT_COLUMNS or is_reserved_column(c) or not c.strip()]
    if refused:
        problems.append(f"{len(refused):,} attribute column(s) are named like churnml's output "
                        f"or key columns (account_id, created_at, as_of, mrr, churn, label, "
                        f"health_*, *_probability, ...; see docs/data_contract.md): "
                        f"{format_examples(refused)}; rename them in the input")
    if problems:
        raise SchemaError("cannot convert the table:\n" + "\n".join(problems))

    tenure = numbers[spec.tenure_column]
    charge = numbers[spec.charge_column]
    created = created_dates(snapshot, tenure)
    too_early = created.isna()
    if too_early.any():  # a tenure of centuries
        raise SchemaError(_bad(spec.tenure_column, "reaches back before the year 1677",
                               frame[spec.tenure_column][too_early], total))

    accounts = pd.DataFrame({"account_id": ids.astype("str"), "created_at": created})
    types: dict[str, str] = {}
    for name in attribute_names:
        accounts[name], types[name] = _attribute(frame[name])

    new_rows = pd.DataFrame({"account_id": accounts["account_id"], "effective_date": created,
                             "mrr": charge.astype("float64"), "reason": "new", "_order": 0})
    churn_index = np.flatnonzero(churned)
    churn_rows = pd.DataFrame({
        "account_id": accounts["account_id"].iloc[churn_index],
        "effective_date": churn_dates(snapshot.iloc[churn_index], created.iloc[churn_index]),
        "mrr": 0.0, "reason": "churn", "_order": 1})
    # Every customer still there at the snapshot gets a `renewal` row on the snapshot date
    # at its charge (no change of MRR, so no label and no feature moves): the revenue history
    # then runs up to the snapshot date, so the book's data end is the snapshot date and the
    # churns of the day before fall inside the last label window. Without these rows the
    # data end would be the churn day itself, whose rows wait for the next run (a partial
    # day), and no churn would ever be labeled.
    stays = np.flatnonzero(~np.asarray(churned, dtype=bool)
                           & (created < snapshot).to_numpy() & (charge > 0).to_numpy())
    stay_rows = pd.DataFrame({
        "account_id": accounts["account_id"].iloc[stays],
        "effective_date": snapshot.iloc[stays].to_numpy(),
        "mrr": charge.iloc[stays].astype("float64").to_numpy(), "reason": "renewal",
        "_order": 2})
    mrr = (pd.concat([new_rows, churn_rows, stay_rows], ignore_index=True)
           .sort_values(["account_id", "effective_date", "_order"], kind="stable")
           .drop(columns="_order").reset_index(drop=True))
    mrr["reason"] = mrr["reason"].astype("str")

    warnings = []
    zero = int((charge == 0).sum())
    if zero:
        warnings.append(f"{zero:,} customer(s) have a monthly charge of 0: their `new` row has "
                        f"mrr 0, so they are never active (never scored, never labeled)")
    if len(accounts) != total:  # pragma: no cover - rows in = rows out, by construction
        raise SchemaError(f"rows in ({total:,}) != accounts out ({len(accounts):,})")
    return SnapshotBook(accounts=accounts, mrr_changes=mrr, customers=total,
                        churned=int(churned.sum()), attributes=types, warnings=warnings)
