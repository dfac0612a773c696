"""Validation of a book of business: typed schemas, rows set aside, errors for unusable input.

Two outcomes for bad input (see ``docs/data_contract.md``):

- **error** (:class:`~churnml.errors.SchemaError`, exit code 2): the input cannot be used as
  given: a required table or column is missing, a numeric column holds text that is not a
  number, a timestamp column holds numbers, or nothing usable is left of a required table.
  Every problem found is gathered first and raised once, each naming the table, the column,
  the count and up to five examples.
- **reject** (the row is set aside, with its reason, in :attr:`ValidationReport.rejects`):
  a null in a required column, an unparseable timestamp, a value outside its range, an
  account that is not in ``accounts``, a duplicate. A row is rejected once, for the first
  reason that applies (in the order of :data:`REJECT_REASONS`), so per table
  ``read == accepted + rejected``.

Everything is vectorised: the cost is a handful of passes over each column, and the only
per-row objects built are those of the rejected rows. Text and id columns read through Arrow
are dictionary-encoded once and checked, compared and sorted as integer codes (see
:class:`_Text`); typed timestamp and number columns are not re-parsed. Measured in
``benchmarks/loading.py`` (50,000 accounts, 25M usage events: 66 s and 8.2 GB before, about
1.5-2x a plain pyarrow read and 3.4 GB after).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa

from churnml.data.dates import (
    DEFAULT_FUTURE_MARGIN_DAYS,
    MIN_ACCOUNTS_FOR_EXPORT_DATE,
    REFERENCE_COLUMNS,
    BulkEnd,
)
from churnml.data.tables import (
    MRR_REASONS,
    TABLES,
    TOUCHPOINT_KINDS,
    Book,
    TableSpec,
    playbook_names,
)
from churnml.errors import SchemaError, format_examples
from churnml.outcomes import EXPECTED_DAYS_COLUMN, OUTCOME_NAMES, OUTCOMES, TIME_TO_EVENT_DAYS

REJECTS_COLUMNS = ["table", "row", "column", "value", "reason"]

# Reasons a row is set aside, in the order they are checked: a row gets the first that applies.
MISSING = "missing required value"
BAD_TIMESTAMP = "unparseable timestamp"
FUTURE_DATED = "dated after the export"
NEGATIVE = "negative value"
SCORE_RANGE = "score outside 0-10"
SCORE_NOT_INTEGER = "score not an integer"
UNKNOWN_ACCOUNT = "unknown account"
UNKNOWN_PLAYBOOK = "unknown playbook"
DUPLICATE_ACCOUNT = "duplicate account_id"
DUPLICATE_INVOICE = "duplicate invoice_id"
DUPLICATE_ROW = "duplicate row"
REJECT_REASONS = (
    MISSING, BAD_TIMESTAMP, FUTURE_DATED, NEGATIVE, SCORE_RANGE, SCORE_NOT_INTEGER, UNKNOWN_ACCOUNT,
    UNKNOWN_PLAYBOOK, DUPLICATE_ACCOUNT, DUPLICATE_INVOICE, DUPLICATE_ROW,
)
_REASON_CODE = {reason: i + 1 for i, reason in enumerate(REJECT_REASONS)}  # 0 = accepted

# Columns whose values must not be negative (others may be, e.g. touchpoints.value).
NON_NEGATIVE = {("mrr_changes", "mrr"), ("invoices", "amount"), ("usage_events", "quantity")}

# Report order: accounts first (the other tables are checked against its accepted ids).
TABLE_ORDER = ("accounts", "mrr_changes", "usage_events", "invoices", "nps_responses",
               "touchpoints", "cs_actions")
# Validation order: the usage before the revenue history, so the export date that both are
# checked against (churnml.data.dates) has seen the densest table first.
_VALIDATION_ORDER = ("accounts", "usage_events", "mrr_changes", "invoices", "nps_responses",
                     "touchpoints", "cs_actions")

# Event columns: a row dated after the export (by more than the margin) is set aside. Not
# `accounts.created_at`, `invoices.due_date` (an invoice may fall due after the export) nor
# `mrr_changes.term_end` (a contract date, in the future by design).
EVENT_COLUMNS = {
    "mrr_changes": ("effective_date",), "usage_events": ("ts",), "invoices": ("paid_at",),
    "nps_responses": ("ts",), "touchpoints": ("ts",), "cs_actions": ("date",),
}
# Columns where a date means "until": a date past pandas' range (after 2262-04-11, in practice
# 9999-12-31, the usual "no end") is "no end" (null), not an unparseable value.
OPEN_ENDED_COLUMNS = {("mrr_changes", "term_end")}

# Names an `accounts` column may not have: churnml's own output and key columns (the weekly
# scores' columns, churnml.scoring.schema.COLUMNS, with every outcome's probability, reasons,
# model version and value column, the health columns) and the training frame's (labels,
# windows). An attribute with such a name would overwrite them.
RESERVED_COLUMNS = frozenset({
    "as_of", "health_score", "health_tier", "health_dimensions_used", "health_overrides",
    "health_weights_version", "alerts", "next_best_action", "mrr", "value_tier",
    "lifecycle_phase", "rfm_segment", "expansion_readiness", "schema_version", "expected_value",
    "effect_source", "queue_status", "queue_rank", "queue_reason", "holdout", "policy_version",
    "label", "labeled", "event_mrr", "window",
    *OUTCOME_NAMES, *(o.value_column for o in OUTCOMES),
    # the time-to-event model's columns (``_model_version`` is a reserved suffix)
    *(f"{o.name}_probability_{d}d" for o in OUTCOMES for d in TIME_TO_EVENT_DAYS),
    EXPECTED_DAYS_COLUMN,
})
RESERVED_PREFIXES = ("health_",)
RESERVED_SUFFIXES = ("_probability", "_reasons", "_model_version")


def is_reserved_column(name: str) -> bool:
    """True when ``name`` is one of churnml's output or key columns (:data:`RESERVED_COLUMNS`,
    a ``health_`` prefix, a ``_probability`` / ``_reasons`` / ``_model_version`` suffix)."""
    name = str(name).strip()
    return (name in RESERVED_COLUMNS or name.startswith(RESERVED_PREFIXES)
            or name.endswith(RESERVED_SUFFIXES))

_NS_MIN, _NS_MAX = pd.Timestamp.min, pd.Timestamp.max


@dataclass
class ValidationReport:
    """What validation did to a book: counts per table, rows set aside, warnings.

    - ``counts``: ``{table: {"read": n, "accepted": n, "rejected": n}}`` for each table present;
      ``read == accepted + rejected`` always.
    - ``rejects``: DataFrame ``table, row, column, value, reason``, one line per rejected row;
      ``row`` is the row's 0-based position among the data rows of the source file (or frame),
      ``value`` the offending value as text (as read), ``column`` empty for a duplicate row.
    - ``warnings``: plain sentences (ignored files, unknown touchpoint kinds kept, ...).
    - ``absent``: optional tables that were not given (their features are left out).
    """

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects: pd.DataFrame = field(default_factory=lambda: _empty_rejects())
    warnings: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    source: str | None = None
    rejects_path: Path | None = None

    @property
    def total_read(self) -> int:
        return sum(c["read"] for c in self.counts.values())

    @property
    def total_accepted(self) -> int:
        return sum(c["accepted"] for c in self.counts.values())

    @property
    def total_rejected(self) -> int:
        return sum(c["rejected"] for c in self.counts.values())

    def counts_frame(self) -> pd.DataFrame:
        """Counts as a DataFrame: ``table, read, accepted, rejected`` (one row per table)."""
        rows = [{"table": t, **c} for t, c in self.counts.items()]
        return pd.DataFrame(rows, columns=["table", "read", "accepted", "rejected"])

    def reasons(self) -> pd.DataFrame:
        """Rejected rows per table and reason: ``table, reason, rows``."""
        if self.rejects.empty:
            return pd.DataFrame(columns=["table", "reason", "rows"])
        return (self.rejects.groupby(["table", "reason"], sort=False).size()
                .rename("rows").reset_index())

    def write_rejects(self, path: str | Path) -> Path:
        """Write the rejects CSV (header only when nothing was rejected, so no stale file stays).

        Cells that a spreadsheet would run as a formula get a leading ``'``
        (:mod:`churnml.data.csv_safety`); the file is written atomically
        (:func:`churnml.fsutil.atomic_write`: unique temporary file, fsync, rename)."""
        from churnml.data.csv_safety import neutralise_frame
        from churnml.fsutil import atomic_write

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w", newline="") as handle:
            neutralise_frame(self.rejects).to_csv(handle, index=False)
        self.rejects_path = path
        return path

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(f"Book of business{f': {self.source}' if self.source else ''}"))
        table.add_column("table")
        for col in ("rows read", "accepted", "rejected"):
            table.add_column(col, justify="right")
        for name, c in self.counts.items():
            table.add_row(name, f"{c['read']:,}", f"{c['accepted']:,}",
                          f"[yellow]{c['rejected']:,}[/yellow]" if c["rejected"] else "0")
        table.add_row("[bold]total[/bold]", f"[bold]{self.total_read:,}[/bold]",
                      f"[bold]{self.total_accepted:,}[/bold]",
                      f"[bold]{self.total_rejected:,}[/bold]", end_section=True)
        parts: list = [table]
        if self.absent:
            parts.append(Text(f"optional tables not given (their features are left out): "
                              f"{', '.join(self.absent)}"))
        if self.total_rejected:
            reasons = self.reasons()
            detail = "; ".join(f"{r.table}: {r.rows:,} {r.reason}" for r in reasons.itertuples())
            parts.append(Text(f"rows set aside: {detail}"))
        if self.rejects_path is not None:
            parts.append(Text(f"rejects file: {self.rejects_path}"))
        for warning in self.warnings:
            parts.append(Text.assemble(("warning: ", "yellow"), warning))
        return Group(*parts)


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame({
        "table": pd.Series([], dtype="str"), "row": pd.Series([], dtype="int64"),
        "column": pd.Series([], dtype="str"), "value": pd.Series([], dtype="str"),
        "reason": pd.Series([], dtype="str"),
    })


# --------------------------------------------------------------------------- column parsers
def _blank_to_null(text: pd.Series) -> pd.Series:
    """Strip whitespace; empty text is a null."""
    text = text.str.strip()
    return text.mask(text == "")


def _as_text(s: pd.Series) -> pd.Series:
    """Any column as the ``str`` dtype, nulls kept."""
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        return s
    return s.astype("str")


_INTEGRAL_TEXT = r"^([+-]?[0-9]+)\.0*$"  # "17.0", "17." -> "17" (digits kept: "007.0" -> "007")
_EXACT_FLOAT_INT = 2.0 ** 53  # below this, a float's integer value converts through int64


def _float_ids(values: np.ndarray) -> np.ndarray:
    """Float ids as text (object array): an integral value as its exact integer text
    (``17.0`` -> ``"17"``, ``1e20`` -> ``"100000000000000000000"``, never through int64, which
    overflows), others as Python prints them; NaN -> None."""
    values = np.asarray(values, dtype="float64")
    out = np.full(len(values), None, dtype=object)
    finite = np.isfinite(values)
    integral = finite & (values == np.round(values))
    small = integral & (np.abs(values) < _EXACT_FLOAT_INT)
    if small.any():
        out[small] = values[small].astype("int64").astype("str").astype(object)
    for i in np.flatnonzero(integral & ~small):
        out[i] = str(int(values[i]))
    for i in np.flatnonzero(~integral & ~np.isnan(values)):
        out[i] = repr(float(values[i]))
    return out


_SMALL = 256
_INTEGRAL_TEXT_RE = re.compile(_INTEGRAL_TEXT)


def normalise_id(value) -> str | None:
    """:func:`normalise_ids` for one Python value (None when it is missing or blank)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return _float_ids(np.array([value]))[0]
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    text = str(value).strip()
    if not text:
        return None
    match = _INTEGRAL_TEXT_RE.match(text)
    return match.group(1) if match else text


def normalise_ids(s: pd.Series) -> pd.Series:
    """Account ids as text (the ``str`` dtype), one rule on every path (files, in-memory frames,
    the HTTP service, Spark):

    - whitespace is stripped; empty text is null;
    - integral numbers are their integer text: ``17``, ``17.0``, ``"17.0"``, ``" 17 "`` -> ``"17"``;
      large integers keep every digit (``12345678901234567890`` stays itself; a float id is
      written out exactly, never through int64);
    - other text stays as it is (``"007"`` keeps its zeros, ``"A-17"``).
    """
    if len(s) <= _SMALL and pd.api.types.is_object_dtype(s.dtype):
        # a few Python values (an HTTP request): the same rule value by value, without the
        # vectorised passes' fixed cost (about 2 ms)
        return pd.Series([normalise_id(v) for v in s.tolist()], index=s.index, dtype="str")
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_integer_dtype(s.dtype):
        text = s.astype("str")
    elif pd.api.types.is_float_dtype(s.dtype):
        text = pd.Series(_float_ids(s.to_numpy(dtype="float64", na_value=np.nan)),
                         index=s.index, dtype="str")
    elif pd.api.types.is_object_dtype(s.dtype):
        # mixed Python values (JSON rows): numbers by the numeric rules, the rest as text
        values = s.to_numpy()
        is_float = np.fromiter((isinstance(v, (float, np.floating)) for v in values), bool,
                               len(values))
        if is_float.any():
            values = values.copy()
            values[is_float] = _float_ids(values[is_float].astype("float64"))
        text = pd.Series(values, index=s.index, dtype=object).astype("str")
    else:
        text = _as_text(s)
    text = _blank_to_null(text)
    return text.str.replace(_INTEGRAL_TEXT, r"\1", regex=True)


def parse_ids(s: pd.Series) -> pd.Series:
    """Account ids as stripped strings (:func:`normalise_ids`)."""
    return normalise_ids(s)


def parse_numbers(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Numbers as float64; returns (values, bad) where ``bad`` marks text that is not a finite
    number. Nulls and empty text are nulls (not bad)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        values = s.astype("float64")
        return values, pd.Series(False, index=s.index)
    if pd.api.types.is_numeric_dtype(s.dtype):
        values = s.astype("float64")
        return values, pd.Series(np.isinf(values.to_numpy()), index=s.index)
    text = _blank_to_null(_as_text(s))
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = (values.isna() & text.notna()) | np.isinf(values)
    return values.mask(bad), bad


def parse_timestamps(s: pd.Series, open_ended: bool = False) -> tuple[pd.Series, pd.Series]:
    """Timestamps as naive ``datetime64[ns]`` meaning UTC; returns (values, unparseable).

    Aware values are converted to UTC and made naive; naive values are taken as UTC; text must
    be ISO 8601 (``2026-11-16``, ``2026-11-16T09:30:00``, ``...+02:00``, ``...Z``); a date is
    midnight. Null / empty text is null (not unparseable). Values outside the nanosecond range
    (years before 1677 or after 2262) are unparseable, except with ``open_ended``: a column
    where a date means "until" (``term_end``) reads a date after 2262 (``9999-12-31``, the usual
    "no end") as null, "no end". Caller checks numbers are not given.
    """
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        parsed = s.dt.tz_convert("UTC").dt.tz_localize(None)
        original_null = s.isna()
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        parsed = s
        original_null = s.isna()
    else:
        if pd.api.types.is_object_dtype(s.dtype):
            # mixed Python objects (dates, datetimes, text): blank text is null
            is_blank = s.map(lambda v: isinstance(v, str) and not v.strip())
            s = s.mask(is_blank)
            original_null = s.isna()
            parsed = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
        else:
            text = _blank_to_null(_as_text(s))
            original_null = text.isna()
            parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        parsed = parsed.dt.tz_localize(None)
    after = parsed > _NS_MAX
    out_of_range = (parsed < _NS_MIN) | after
    if out_of_range.any():
        parsed = parsed.mask(out_of_range)
        if open_ended:
            original_null = original_null | after
    parsed = parsed.astype("datetime64[ns]")
    return parsed, parsed.isna() & ~original_null


def parse_text(s: pd.Series) -> pd.Series:
    """Text as the ``str`` dtype, stripped; empty text is null."""
    return _blank_to_null(_as_text(s))


# --------------------------------------------------------------------------- text as codes
# pandas 3's default string dtype; cast: pandas-stubs type ``Series.dtype`` as
# ``np.dtype | ExtensionDtype`` whatever the dtype asked for, and "str" is a StringDtype
_STR = cast(pd.StringDtype, pd.Series([], dtype="str").dtype)


@dataclass
class _Text:
    """A text or id column after normalisation (stripped, blank = null), as integer codes.

    ``codes[i]`` is row i's value as a position in the column's distinct values (-1 = null);
    equal values have equal codes. Rows are then checked, compared and ordered on integers,
    and strings are built only for the accepted rows, in their final order.

    Arrow-backed ``str`` columns (parquet and CSV reads) are dictionary-encoded by Arrow and
    only the distinct values are stripped (``uniques``); any other dtype is parsed row by row
    (``parse_ids`` / ``parse_text``) into ``parsed`` and factorised. ``source`` is the input
    column itself when normalising changed none of its values (then it is reused as is).
    """

    codes: np.ndarray
    uniques: pa.Array | None = None
    parsed: pd.Series | None = None
    source: pd.Series | None = None
    _distinct: np.ndarray | None = None

    def isna(self) -> np.ndarray:
        return self.codes < 0

    def distinct(self) -> np.ndarray:
        """The distinct values (object array), in code order."""
        if self._distinct is None:
            assert self.uniques is not None  # _distinct is set on creation otherwise
            self._distinct = np.asarray(self.uniques.to_pylist(), dtype=object)
        return self._distinct

    def take(self, rows: np.ndarray, in_place: bool = False) -> pd.Series:
        """The normalised values at positions ``rows`` on a RangeIndex; ``in_place`` says
        ``rows`` is every row in source order."""
        if in_place and self.source is not None:
            return self.source.reset_index(drop=True)  # every row, in place: no copy
        if self.uniques is None:
            assert self.parsed is not None  # a _Text has either uniques or parsed
            return self.parsed.take(rows).reset_index(drop=True)
        codes = self.codes[rows]
        null = codes < 0
        indices = pa.array(codes, type=pa.int32(), mask=null if null.any() else None)
        decoded = pa.DictionaryArray.from_arrays(indices, self.uniques).dictionary_decode()
        out = decoded.to_pandas()
        return out if out.dtype == _STR else out.astype(_STR)


def _encode_text(s: pd.Series, kind: str) -> _Text:
    """A column of kind ``id`` or ``string`` as :class:`_Text` (the same values as
    :func:`parse_ids` / :func:`parse_text` give, without a Python string per row)."""
    if s.dtype == _STR and _STR.storage == "pyarrow":
        chunked = s.array.__arrow_array__()
        if isinstance(chunked, pa.Array):
            chunked = pa.chunked_array([chunked])
        encoded = chunked.dictionary_encode()
        codes: np.ndarray = np.empty(len(s), dtype=np.int32)
        if encoded.num_chunks == 0:
            dictionary = pa.array([], type=chunked.type)
        else:
            dictionary = encoded.chunks[0].dictionary
            # Arrow encodes a chunked array with one dictionary shared by every chunk; unifying
            # (costly: it rehashes every chunk's dictionary) only if that ever changes
            if not all(c.dictionary.equals(dictionary) for c in encoded.chunks[1:]):
                encoded = encoded.unify_dictionaries()
                dictionary = encoded.chunks[0].dictionary
            at = 0
            for chunk in encoded.chunks:
                codes[at:at + len(chunk)] = chunk.indices.fill_null(-1).to_numpy(
                    zero_copy_only=False)
                at += len(chunk)
        # each distinct value normalised once, exactly as parse_text does it row by row
        raw_values = dictionary.to_pandas()
        normalised = (normalise_ids if kind == "id" else parse_text)(raw_values.astype(_STR))
        if len(dictionary) == 0 or (normalised.notna().all() and
                                    (normalised.to_numpy(object) == raw_values.to_numpy(object)).all()):
            return _Text(codes, uniques=dictionary, source=s)
        new_codes, new_uniques = pd.factorize(normalised, use_na_sentinel=True)
        remap = np.append(new_codes, -1).astype(np.int32)  # old null (-1) stays null
        uniques = pa.array(np.asarray(new_uniques, dtype=object), type=pa.large_string())
        return _Text(remap[codes], uniques=uniques)
    parsed = parse_ids(s) if kind == "id" else parse_text(s)
    codes, uniques = pd.factorize(parsed, use_na_sentinel=True)
    return _Text(np.asarray(codes, dtype=np.int64), parsed=parsed,
                 _distinct=np.asarray(uniques, dtype=object))


def _row_hashes(columns: list, rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row of ``rows`` over ``columns`` (each a :class:`_Text` or a Series):
    rows equal as ``DataFrame.duplicated`` sees them (NaN equals NaN, 0.0 equals -0.0) hash
    equally. Unequal rows may collide: callers confirm candidates exactly."""
    h = np.zeros(len(rows), dtype=np.uint64)
    for col in columns:
        if isinstance(col, _Text):
            values = col.codes[rows].astype(np.int64)
        elif col.dtype == np.dtype("float64"):
            values = col.to_numpy()[rows] + 0.0  # -0.0 becomes 0.0
            values[np.isnan(values)] = np.nan  # one NaN bit pattern
            values = values.view(np.int64)
        elif isinstance(col.dtype, np.dtype) and col.dtype.kind in "mM":
            values = col.to_numpy()[rows].view(np.int64)  # NaT is one value
        else:
            codes, _ = pd.factorize(col, use_na_sentinel=True)
            values = np.asarray(codes, dtype=np.int64)[rows]
        hashed = pd.util.hash_array(values)
        h ^= hashed
        h *= np.uint64(0x100000001B3)
        h += np.uint64(0x9E3779B97F4A7C15)
    return h


# --------------------------------------------------------------------------- table validation
@dataclass
class _TableResult:
    frame: pd.DataFrame | None
    rejects: pd.DataFrame
    read: int
    # mrr_changes: accepted accounts none of whose revenue rows was accepted (not scorable)
    lost_accounts: list = field(default_factory=list)


class _ExportDate:
    """The export date as the tables come in (``churnml.data.dates``): the reference tables'
    dates are added as they are validated; ``cutoff()`` is the latest date an event row may
    carry (None when there is too little to judge, or the check is off)."""

    def __init__(self, margin_days: float | None):
        self.margin_days = margin_days
        self.bulk = BulkEnd(gap_days=margin_days if margin_days is not None else 0)
        self.accounts = 0

    def add(self, values: pd.Series, n_accounts: int) -> None:
        self.bulk.add(values)
        self.accounts = max(self.accounts, n_accounts)

    def cutoff(self) -> pd.Timestamp | None:
        if self.margin_days is None or self.accounts < MIN_ACCOUNTS_FOR_EXPORT_DATE:
            return None
        end = self.bulk.end()
        return None if pd.isna(end) else end + pd.Timedelta(days=self.margin_days)


def _bad_values_message(table: str, column: str, what: str, raw: pd.Series, bad: pd.Series) -> str:
    examples = pd.unique(raw[bad].astype("str"))
    return (f"{table}: column '{column}' must be {what}; {int(bad.sum()):,} bad values of "
            f"{len(raw):,}, e.g. {format_examples(examples)}")


def _validate_table(name: str, raw: pd.DataFrame, spec: TableSpec,
                    known_accounts: pd.Series | None, problems: list[str],
                    warnings: list[str], export: _ExportDate | None = None,
                    known_playbooks: Collection[str] | None = None) -> _TableResult:
    n = len(raw)
    raw = raw.reset_index(drop=True)  # the index is the row's position in the source
    raw.columns = [str(c).strip() for c in raw.columns]
    dup_cols = raw.columns[raw.columns.duplicated()].unique().tolist()
    if dup_cols:
        problems.append(f"{name}: column names appear more than once: {format_examples(dup_cols)}")
        return _TableResult(None, _empty_rejects(), n)
    missing_cols = [c for c in spec.required_columns if c not in raw.columns]
    for col in missing_cols:
        problems.append(f"{name}: missing required column '{col}' "
                        f"(columns found: {format_examples(list(raw.columns), limit=20)})")
    if missing_cols:
        return _TableResult(None, _empty_rejects(), n)
    if name == "accounts":
        reserved = [c for c in raw.columns if spec.column(c) is None and is_reserved_column(c)]
        for column in reserved:
            problems.append(
                f"accounts: column '{column}' is named like one of churnml's output or key columns "
                f"(as_of, *_probability, *_reasons, health_*, schema_version, labels, ...): as a "
                f"static attribute it would overwrite them; rename it (e.g. 'crm_{column}') or drop "
                f"it")
        if reserved:
            return _TableResult(None, _empty_rejects(), n)

    # out: every column after normalisation, text as _Text (codes), the rest as Series
    out: dict[str, _Text | pd.Series] = {}
    code = np.zeros(n, dtype=np.int8)  # reject reason code per row, 0 = accepted
    code_col = np.zeros(n, dtype=np.int16)  # index into `names` of the offending column
    names = [""] + list(raw.columns)
    col_index = {c: i for i, c in enumerate(names)}
    table_ok = True

    def reject(mask, reason: str, column: str) -> None:
        mask = np.asarray(mask, dtype=bool) & (code == 0)
        code[mask] = _REASON_CODE[reason]
        code_col[mask] = col_index[column]

    def isna(column: str) -> np.ndarray:
        values = out[column]
        return values.isna() if isinstance(values, _Text) else values.isna().to_numpy()

    def numbers(column: str) -> pd.Series:
        values = out[column]
        assert isinstance(values, pd.Series)  # only id and string columns are _Text
        return values

    # 1. parse every column of the contract; text where numbers belong is an error
    unparseable: dict[str, pd.Series] = {}
    values: pd.Series | _Text  # a column's values; _Text (codes) for id and string columns
    for col_spec in spec.columns:
        if col_spec.name not in raw.columns:
            continue
        s = raw[col_spec.name]
        if col_spec.kind in ("id", "string"):
            out[col_spec.name] = _encode_text(s, col_spec.kind)
        elif col_spec.kind in ("number", "integer"):
            if pd.api.types.is_datetime64_any_dtype(s.dtype):
                problems.append(f"{name}: column '{col_spec.name}' must be numeric; got timestamps")
                table_ok = False
                continue
            values, bad = parse_numbers(s)
            if bad.any():
                what = "an integer" if col_spec.kind == "integer" else "numeric"
                problems.append(_bad_values_message(name, col_spec.name, what, s, bad))
                table_ok = False
            out[col_spec.name] = values
        elif col_spec.kind == "timestamp":
            if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
                nonnull = s.dropna()
                problems.append(
                    f"{name}: column '{col_spec.name}' must hold timestamps (ISO 8601 text or a "
                    f"timestamp type), not numbers; {len(nonnull):,} numeric values of {n:,}, "
                    f"e.g. {format_examples(nonnull.unique())}")
                table_ok = False
                continue
            values, bad = parse_timestamps(
                s, open_ended=(name, col_spec.name) in OPEN_ENDED_COLUMNS)
            out[col_spec.name] = values
            unparseable[col_spec.name] = bad
    if not table_ok:
        return _TableResult(None, _empty_rejects(), n)

    # 2. rows set aside, in the order of REJECT_REASONS (a row keeps its first reason)
    for col in spec.required_columns:
        # an unparseable timestamp is not "missing": it is reported as unparseable below
        missing = isna(col)
        if col in unparseable:
            missing = missing & ~unparseable[col].to_numpy()
        reject(missing, MISSING, col)
    for col, bad in unparseable.items():
        reject(bad, BAD_TIMESTAMP, col)
    if export is not None and name in EVENT_COLUMNS:
        reference = REFERENCE_COLUMNS.get(name)
        if reference is not None:
            ids = out["account_id"]
            assert isinstance(ids, _Text)
            export.add(pd.Series(out[reference]), len(ids.distinct()))
        cutoff = export.cutoff()
        if cutoff is not None:
            for col in EVENT_COLUMNS[name]:
                if col in out:
                    reject((pd.Series(out[col]) > cutoff).to_numpy(), FUTURE_DATED, col)
    for col_spec in spec.columns:
        if (name, col_spec.name) in NON_NEGATIVE and col_spec.name in out:
            reject(numbers(col_spec.name) < 0, NEGATIVE, col_spec.name)
    if name == "nps_responses":
        score = numbers("score")
        reject((score < 0) | (score > 10), SCORE_RANGE, "score")
        reject(score.notna() & (score != np.round(score)), SCORE_NOT_INTEGER, "score")
    if name != "accounts" and known_accounts is not None:
        # each distinct id is looked up once; rows follow through their codes
        ids = out["account_id"]
        known = pd.Index(ids.distinct(), dtype=object).isin(known_accounts)
        reject(~np.append(known, True)[ids.codes], UNKNOWN_ACCOUNT, "account_id")
    if name == "cs_actions" and known_playbooks is not None:
        plays = out["playbook"]
        assert isinstance(plays, _Text)
        known = pd.Index(plays.distinct(), dtype=object).isin(list(known_playbooks))
        reject(~np.append(known, True)[plays.codes], UNKNOWN_PLAYBOOK, "playbook")

    # extra columns: accounts' become static features (numbers when they all parse)
    extra = [c for c in raw.columns if spec.column(c) is None]
    for col in extra:
        s = raw[col]
        if name == "accounts" and not pd.api.types.is_numeric_dtype(s.dtype) \
                and not pd.api.types.is_datetime64_any_dtype(s.dtype):
            values, bad = parse_numbers(s)
            text = parse_text(s)
            out[col] = values if (not bad.any() and values.notna().any()) else text
        else:
            out[col] = s
    columns = list(raw.columns)
    if name == "usage_events":
        # the contract's default: an event counts once unless it says otherwise
        if "quantity" in out:
            out["quantity"] = numbers("quantity").fillna(1.0)
        else:
            out["quantity"] = pd.Series(1.0, index=raw.index)
            columns.append("quantity")

    # duplicates among the rows still standing: keep the first
    for table, column, reason in (("accounts", "account_id", DUPLICATE_ACCOUNT),
                                  ("invoices", "invoice_id", DUPLICATE_INVOICE)):
        if name == table:
            alive = np.flatnonzero(code == 0)
            repeated = np.zeros(n, dtype=bool)
            repeated[alive] = pd.Series(out[column].codes[alive]).duplicated(
                keep="first").to_numpy()
            reject(repeated, reason, column)
    # rows standing, in (account_id, time) order: equal rows have equal keys, so only rows
    # that share their key with a neighbour can repeat another row; they are hashed, and
    # those sharing a hash too are compared value by value (pandas' own `duplicated`)
    order = _standing_order(out, np.flatnonzero(code == 0), spec.time_column)
    dup_row_of: pd.Series | None = None
    candidates = _same_key_rows(out, order, spec.time_column)
    if len(candidates):
        hashes = _row_hashes([out[c] for c in columns], candidates)
        candidates = candidates[pd.Series(hashes).duplicated(keep=False).to_numpy()]
    if len(candidates):
        involved = pd.DataFrame(
            {c: (out[c].take(candidates).set_axis(candidates)
                 if isinstance(out[c], _Text) else out[c].take(candidates))
             for c in columns},
            index=candidates, columns=columns)
        dup = involved.duplicated(keep="first")
        if dup.any():
            # name the row each duplicate repeats
            involved = involved[involved.duplicated(keep=False)]
            group = involved.groupby(list(involved.columns), dropna=False, sort=False).ngroup()
            first = pd.Series(involved.index, index=involved.index).groupby(group) \
                .transform("min")
            dup_row_of = first[dup[dup].index]
            mask = np.zeros(n, dtype=bool)
            mask[dup[dup].index.to_numpy()] = True
            reject(mask, DUPLICATE_ROW, "")

    lost_accounts: list = []
    if name == "mrr_changes":
        ids = out["account_id"]
        considered = (code != 0) & (code != _REASON_CODE[UNKNOWN_ACCOUNT]) & (ids.codes >= 0)
        if considered.any():
            gone = np.setdiff1d(np.unique(ids.codes[considered]), np.unique(ids.codes[code == 0]))
            lost_accounts = sorted(str(v) for v in ids.distinct()[gone])

    # 3. the rejects, built only for the rejected rows
    rejected_pos = np.flatnonzero(code)
    rejects = _empty_rejects()
    if len(rejected_pos):
        cols = code_col[rejected_pos]
        values = pd.Series("", index=rejected_pos, dtype="str")
        for ci in np.unique(cols):
            at = rejected_pos[cols == ci]
            if ci == 0:
                assert dup_row_of is not None  # column 0 is the duplicate-row reason's
                values.loc[at] = "same as row " + dup_row_of.loc[at].astype("str")
            else:
                v = raw[names[ci]].iloc[at]
                values.loc[at] = v.astype("str").fillna("").to_numpy()
        reason_names = np.array(("",) + REJECT_REASONS, dtype=object)
        rejects = pd.DataFrame({
            "table": pd.Series(name, index=range(len(rejected_pos)), dtype="str"),
            "row": rejected_pos.astype("int64"),
            "column": pd.Series(np.array(names, dtype=object)[cols], dtype="str"),
            "value": pd.Series(values.to_numpy(), dtype="str"),
            "reason": pd.Series(reason_names[code[rejected_pos]], dtype="str"),
        })
    # 4. the accepted rows, typed and sorted by (account_id, time)
    rows = order[code[order] == 0]  # a stable order stays one without the duplicates
    in_place = len(rows) == n and bool(np.all(rows[1:] > rows[:-1]))
    if not in_place:
        for values in out.values():
            if isinstance(values, _Text):
                values.source = None  # the copies are built from the codes
    # the raw and parsed columns go as soon as they are not needed (when the caller holds no
    # other reference to the raw frame, as in load_book), so the accepted copy can reuse
    # their memory: a column's codes right after its accepted values are built
    del raw, s, order
    accepted_columns: dict[str, pd.Series] = {}
    for c in columns:
        values = out.pop(c)
        if isinstance(values, _Text):
            accepted_columns[c] = values.take(rows, in_place)
        else:  # every row in source order: the column as it is (copy-on-write)
            accepted_columns[c] = (values if in_place else values.take(rows)).reset_index(drop=True)
        del values
    accepted = pd.DataFrame(accepted_columns, columns=columns, copy=False)
    if name == "nps_responses":
        accepted["score"] = accepted["score"].astype("int64")

    if name == "touchpoints":
        _warn_vocabulary(accepted, "kind", TOUCHPOINT_KINDS, "touchpoints", "kinds", warnings)
    if name == "mrr_changes" and "reason" in accepted.columns:
        _warn_vocabulary(accepted, "reason", MRR_REASONS, "mrr_changes", "reasons", warnings)
    return _TableResult(accepted, rejects, n, lost_accounts)


def _standing_order(out: dict, keep: np.ndarray, time_column: str | None) -> np.ndarray:
    """The positions ``keep`` in (account_id, time) order, ties in source order.

    Integer keys: an account's rank among the sorted distinct ids (ids are compared once per
    distinct value, not per row) and the time as int64 nanoseconds. Input already in that
    order (an export sorted by account and time) is detected in one pass and not sorted.
    Rows at ``keep`` have an id and a time (required columns)."""
    ids = out["account_id"]
    distinct = ids.distinct()
    rank = np.empty(len(distinct) + 1, dtype=np.int32 if len(distinct) < 2**31 - 1 else np.int64)
    rank[np.argsort(distinct, kind="stable")] = np.arange(len(distinct))
    rank[-1] = -1  # null ids (never among `keep`)
    account = rank[ids.codes[keep]]
    if time_column is None:
        if np.all(account[1:] >= account[:-1]):
            return keep
        return keep[np.argsort(account, kind="stable")]
    time = out[time_column].to_numpy()[keep].view("int64")
    step = np.diff(account)
    if np.all(step >= 0) and np.all((time[1:] >= time[:-1])[step == 0]):
        return keep
    return keep[np.lexsort([time, account])]


def _same_key_rows(out: dict, order: np.ndarray, time_column: str | None) -> np.ndarray:
    """Positions (ascending) of the rows of ``order`` (sorted by account and time) whose
    account and time equal those of a neighbour: the only rows that can be duplicates."""
    if len(order) < 2:
        return np.zeros(0, dtype=np.int64)
    same = out["account_id"].codes[order[1:]] == out["account_id"].codes[order[:-1]]
    if time_column is not None:
        time = out[time_column].to_numpy().view("int64")
        same &= time[order[1:]] == time[order[:-1]]
    if not same.any():
        return np.zeros(0, dtype=np.int64)
    pair = np.flatnonzero(same)
    return np.unique(np.concatenate([order[pair], order[pair + 1]]))


def _warn_vocabulary(frame: pd.DataFrame, column: str, known: tuple[str, ...], table: str,
                     what: str, warnings: list[str]) -> None:
    values = frame[column]
    unknown = values[values.notna() & ~values.isin(known)]
    if len(unknown):
        top = unknown.value_counts().head(5)
        shown = ", ".join(f"{k!r}: {v:,}" for k, v in top.items())
        more = len(unknown.unique()) - len(top)
        warnings.append(f"{table}: {len(unknown):,} rows with {what} outside the known vocabulary "
                        f"were kept ({shown}{f', and {more} more' if more > 0 else ''})")


def validate_frames(frames: Mapping[str, pd.DataFrame], source: str = "in-memory frames",
                    warnings: list[str] | None = None,
                    future_margin_days: float | None = DEFAULT_FUTURE_MARGIN_DAYS,
                    known_playbooks: Collection[str] | None = None,
                    ) -> tuple[Book, ValidationReport]:
    """Validate in-memory tables of the data contract (the same rules as :func:`load_book`).

    ``frames`` maps table names to DataFrames as read (any dtypes; text is parsed). Names that
    are not tables of the contract are ignored with a warning. Returns the :class:`Book` of
    accepted rows with normalised dtypes and the :class:`ValidationReport`. Raises
    :class:`SchemaError` (every problem at once) when the input cannot be used.

    ``future_margin_days``: event rows dated more than this many days after the export date
    estimated from the bulk of the data are set aside as :data:`FUTURE_DATED`
    (``churnml.data.dates``); None turns the check off.

    ``known_playbooks``: the playbook names a ``cs_actions`` row may name (others are set
    aside as :data:`UNKNOWN_PLAYBOOK`); default: those of the project's
    ``features/playbooks.yaml``.
    """
    report = ValidationReport(source=source, warnings=list(warnings or []))
    problems: list[str] = []
    for extra in sorted(set(frames) - set(TABLES)):
        report.warnings.append(f"'{extra}' is not a table of the data contract; ignored")
    for spec in TABLES.values():
        if spec.required and spec.name not in frames:
            problems.append(f"{spec.name}: required table is missing "
                            f"(expected {spec.name}.parquet or {spec.name}.csv)")
    if problems:
        raise SchemaError("\n".join(problems))

    tables: dict[str, pd.DataFrame] = {}
    rejects: dict[str, pd.DataFrame] = {}
    known_accounts = None
    export = _ExportDate(future_margin_days)
    for name in _VALIDATION_ORDER:
        if name not in frames:
            report.absent.append(name)
            continue
        if name == "cs_actions" and known_playbooks is None:
            known_playbooks = playbook_names()
        result = _validate_table(name, frames[name], TABLES[name], known_accounts, problems,
                                 report.warnings, export, known_playbooks)
        if result.frame is None:
            continue
        if name == "accounts":
            known_accounts = result.frame["account_id"]
        accepted = len(result.frame)
        report.counts[name] = {"read": result.read, "accepted": accepted,
                               "rejected": len(result.rejects)}
        if TABLES[name].required and accepted == 0:
            if result.read == 0:
                problems.append(f"{name}: the table has no rows")
            else:
                top = result.rejects["reason"].value_counts()
                problems.append(
                    f"{name}: no usable rows: all {result.read:,} rows were set aside ("
                    + ", ".join(f"{v:,} {k}" for k, v in top.items()) + "); e.g. "
                    + format_examples((result.rejects["column"] + "=" + result.rejects["value"])
                                      .unique()))
        tables[name] = result.frame
        if len(result.rejects):
            rejects[name] = result.rejects
        if result.lost_accounts:
            lost = result.lost_accounts
            report.warnings.append(
                f"{name}: {len(lost):,} account{'s' if len(lost) != 1 else ''} of accounts had "
                f"every revenue row set aside, so {'they' if len(lost) != 1 else 'it'} will not "
                f"be scored (see the rejects), e.g. {format_examples(lost)}")
    if problems:
        raise SchemaError("\n".join(problems))
    # the report in the contract's order, whatever the validation order
    report.counts = {t: report.counts[t] for t in TABLE_ORDER if t in report.counts}
    report.absent = [t for t in TABLE_ORDER if t in report.absent]
    tables = {t: tables[t] for t in TABLE_ORDER if t in tables}
    if rejects:
        report.rejects = pd.concat([rejects[t] for t in TABLE_ORDER if t in rejects],
                                   ignore_index=True)
    return Book(tables=tables, source=source, meta={"counts": report.counts}), report
