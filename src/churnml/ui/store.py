"""Read-only access to the weekly output folder for ``churnml ui``.

The pages read what the one output schema (:mod:`churnml.scoring.schema`) declares, from the
complete partitions only (:func:`churnml.jobs.partitions.list_partitions`):

- a week's *list frame*: every scalar column of ``scores.parquet`` (whatever the file holds,
  so a column added to the schema appears without code here), the next best action's fields
  as ``action_<field>`` and the alerts as ``alerts_text`` / ``alerts_count``; read once per
  file with column projection and kept while the file's modification time is unchanged;
- one account's full row of a week (reasons, alerts, action) by a filtered read;
- ``OUT/monitoring/*.parquet`` (realized performance, and whatever monitoring files exist);
- ``OUT/effects/effects.parquet`` and ``dimensions.parquet`` (``churnml effects``).

Nothing here writes: the folder may be in use by the weekly job at the same time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.errors import UsageError
from churnml.jobs.effects import DIMENSIONS_NAME, EFFECTS_DIR, EFFECTS_NAME
from churnml.jobs.layout import SCORES_NAME
from churnml.jobs.monitoring import MONITORING_DIR, REALIZED_NAME
from churnml.jobs.partitions import incomplete_partitions, list_partitions
from churnml.outcomes import OUTCOMES
from churnml.scoring.schema import COLUMNS, SCHEMA_VERSION, OutputColumn, declared_columns

#: the next best action's fields shown in lists (``action_<field>`` in the list frame)
ACTION_FIELDS = ("playbook", "action", "owner", "severity", "respond_within", "reason")
#: tiers in display order (best first); a tier not listed here is shown after them
TIER_ORDER = ("thriving", "healthy", "needs_attention", "at_risk", "critical",
              "insufficient_data")
#: weeks whose full table (reasons and all) is kept in memory for the account page
FULL_TABLES_KEPT = 2


class NotScored(LookupError):
    """The asked week is not scored (or no week is): a 404 page with the message."""


@dataclass(frozen=True)
class Week:
    as_of: pd.Timestamp
    path: Path  # the scores.parquet file
    mtime_ns: int


def column_meanings(columns: list[str]) -> dict[str, OutputColumn]:
    """The schema declaration of each of ``columns`` (those it declares): the health
    dimensions are read from the columns themselves (``health_<dimension>``)."""
    fixed = {c.name.format(dimension="") for c in COLUMNS if c.per == "row"}
    dims = [c[len("health_"):] for c in columns
            if c.startswith("health_") and c not in fixed]
    return {name: col for name, col, _ in declared_columns(dims) if name in columns}


def dimension_columns(columns: list[str]) -> list[str]:
    """The health dimension columns (``health_<dimension>``) among ``columns``, in order."""
    return [name for name, col in column_meanings(columns).items() if col.per == "dimension"]


def tier_rank(tiers) -> list[str]:
    """``tiers`` in display order (:data:`TIER_ORDER`, others after, alphabetically)."""
    known = [t for t in TIER_ORDER if t in set(tiers)]
    return known + sorted(set(tiers) - set(TIER_ORDER))


def _list_frame(path: Path) -> pd.DataFrame:
    """A week's list frame (see the module docstring), sorted by account_id."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    scalar = [f.name for f in schema
              if not (pa.types.is_struct(f.type) or pa.types.is_list(f.type)
                      or pa.types.is_large_list(f.type))]
    nested = [n for n in ("next_best_action", "alerts") if n in schema.names]
    table = pq.read_table(path, columns=scalar + nested)
    out = table.select(scalar)
    if "next_best_action" in nested:
        action = table.column("next_best_action").combine_chunks()
        for name in ACTION_FIELDS:
            if action.type.get_field_index(name) >= 0:
                out = out.append_column(f"action_{name}", action.field(name))
    if "alerts" in nested:
        alerts = table.column("alerts")
        out = out.append_column("alerts_count",
                                pc.fill_null(pc.list_value_length(alerts), 0))
        out = out.append_column("alerts_text",
                                pc.fill_null(pc.binary_join(alerts, ", "), ""))
    out = out.take(pc.sort_indices(out, [("account_id", "ascending")]))
    columns: dict[str, Any] = {}
    limit = max(64, out.num_rows // 100)
    for name in out.column_names:
        col = out.column(name).combine_chunks()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            if name != "account_id" and pc.count_distinct(col).as_py() <= limit:
                # low-cardinality text (tiers, owners, segments, versions) as categories in
                # sorted order: filters and group-bys on them are integer work
                values = col.dictionary_encode().to_pandas()
                columns[name] = values.cat.reorder_categories(
                    sorted(values.cat.categories))
            else:
                # plain object arrays (pandas 3 would make Arrow-backed strings, whose
                # to_numpy and take copy on every access)
                columns[name] = col.to_numpy(zero_copy_only=False)
        else:
            columns[name] = col.to_pandas()
    return pd.DataFrame(columns)


class ScoreStore:
    """The output folder ``scores_dir`` (and the book ``data_dir``, optional), read-only,
    with per-file caches keyed by modification time. Thread-safe."""

    def __init__(self, scores_dir: str | Path, data_dir: str | Path | None = None) -> None:
        self.scores_dir = Path(scores_dir)
        self.data_dir = None if data_dir is None else Path(data_dir)
        self._lock = threading.Lock()
        self._frames: dict[Path, tuple[int, pd.DataFrame]] = {}
        self._views: dict[tuple, pd.DataFrame] = {}
        self._book: tuple[tuple, dict[str, pd.DataFrame]] | None = None
        self._small: dict[Path, tuple[int, pd.DataFrame]] = {}
        self._tiers: dict[Path, tuple[int, pd.DataFrame]] = {}
        # full tables (every column) of the most recently opened weeks, for the account page
        self._full: dict[Path, tuple[int, Any, np.ndarray, np.ndarray]] = {}

    # --- partitions ---------------------------------------------------------------------
    def weeks(self) -> list[Week]:
        """Complete partitions, oldest first."""
        out = []
        for as_of, part in list_partitions(self.scores_dir):
            path = part / SCORES_NAME
            try:
                out.append(Week(as_of, path, path.stat().st_mtime_ns))
            except FileNotFoundError:  # replaced between listing and stat: skip this time
                continue
        return out

    def warm(self) -> None:
        """Read every week's list frame and tier counts into the caches, newest first (run
        in a background thread at start-up, so that the first page does not wait for them)."""
        weeks = self.weeks()
        for week in reversed(weeks):
            try:
                self.trend([week])
            except Exception:  # noqa: BLE001 - a page reading this week reports the problem
                continue

    def skipped(self) -> list[str]:
        """Partitions left out as incomplete (``as_of=... (reason)``)."""
        return [f"{p.name} ({why})" for _d, p, why in incomplete_partitions(self.scores_dir)]

    def week_for(self, as_of: str | None) -> tuple[Week, Week | None, list[Week]]:
        """``(week, previous week or None, all weeks)`` for ``as_of`` (YYYY-MM-DD; None: the
        latest). Raises :class:`NotScored` when no such week (or none at all) is scored."""
        weeks = self.weeks()
        if not weeks:
            raise NotScored(f"no complete weekly partition (as_of=YYYY-MM-DD/{SCORES_NAME} "
                              f"with a _SUCCESS marker) in {self.scores_dir}")
        if as_of is None:
            i = len(weeks) - 1
        else:
            try:
                wanted = pd.Timestamp(str(as_of)[:10])
            except (ValueError, TypeError):
                raise NotScored(f"not a date: {as_of[:40]!r}") from None
            matches = [k for k, w in enumerate(weeks) if w.as_of == wanted]
            if not matches:
                raise NotScored(f"week {wanted:%Y-%m-%d} is not scored in {self.scores_dir}")
            i = matches[0]
        return weeks[i], (weeks[i - 1] if i > 0 else None), weeks

    def frame(self, week: Week) -> pd.DataFrame:
        """The week's list frame (cached while the file is unchanged). Do not modify it."""
        with self._lock:
            hit = self._frames.get(week.path)
            if hit is not None and hit[0] == week.mtime_ns:
                return hit[1]
        frame = _list_frame(week.path)
        version = frame["schema_version"].iloc[0] if len(frame) and "schema_version" in frame else None
        frame.attrs["schema_version"] = None if pd.isna(version) else int(version)
        with self._lock:
            self._frames[week.path] = (week.mtime_ns, frame)
        return frame

    def view(self, week: Week, previous: Week | None) -> pd.DataFrame:
        """The week's list frame with ``health_change`` (health score minus last scored
        week's; NaN for an account not scored then) and, with a book, the accounts table's
        ``name`` and ``segment`` when it has them. Cached."""
        book_key = self._book_key()
        key = (week.path, week.mtime_ns, None if previous is None else
               (previous.path, previous.mtime_ns), book_key)
        with self._lock:
            hit = self._views.get(key)
        if hit is not None:
            return hit
        frame = self.frame(week).copy()
        if previous is not None:
            prev = self.frame(previous)
            pos = np.searchsorted(prev["account_id"].to_numpy(), frame["account_id"].to_numpy())
            pos = np.clip(pos, 0, max(len(prev) - 1, 0))
            found = (prev["account_id"].to_numpy()[pos] == frame["account_id"].to_numpy()
                     if len(prev) else np.zeros(len(frame), dtype=bool))
            before = prev["health_score"].to_numpy(dtype=float)[pos] if len(prev) else 0.0
            frame["health_change"] = np.where(found, frame["health_score"].to_numpy(dtype=float)
                                              - before, np.nan)
        else:
            frame["health_change"] = np.nan
        accounts = self.book().get("accounts")
        if accounts is not None:
            extra = [c for c in ("name", "segment") if c in accounts.columns
                     and c not in frame.columns]
            if extra:
                attrs = accounts.drop_duplicates("account_id").set_index("account_id")[extra]
                joined = attrs.reindex(frame["account_id"].to_numpy())
                for c in extra:
                    frame[c] = joined[c].to_numpy()
        text = frame["account_id"].astype(str)
        if "name" in frame:
            text = text + "\x00" + frame["name"].fillna("").astype(str)
        frame["search_text"] = text.str.lower().astype(object)
        with self._lock:
            self._views = {k: v for k, v in self._views.items() if k[0] != week.path}
            self._views[key] = frame
        return frame

    def history(self, account_id: str, weeks: list[Week], columns: list[str]) -> pd.DataFrame:
        """The account's ``columns`` (those a week has) over ``weeks`` (those it was scored
        in), oldest first."""
        rows = []
        for week in weeks:
            frame = self.frame(week)
            ids = frame["account_id"].to_numpy()
            i = int(np.searchsorted(ids, account_id))
            if i < len(ids) and ids[i] == account_id:
                rows.append({c: frame[c].iat[i] for c in columns if c in frame.columns})
        return pd.DataFrame(rows, columns=columns)

    def account_row(self, week: Week, account_id: str) -> dict[str, Any] | None:
        """The account's full row of the week (every column, nested ones as Python lists and
        dicts), or None when not scored that week."""
        import pyarrow.parquet as pq

        with self._lock:
            hit = self._full.get(week.path)
        if hit is None or hit[0] != week.mtime_ns:
            table = pq.read_table(week.path)
            ids = table.column("account_id").to_numpy(zero_copy_only=False).astype(str)
            order = np.argsort(ids, kind="stable")
            hit = (week.mtime_ns, table, ids[order], order)
            with self._lock:
                self._full.pop(week.path, None)
                self._full[week.path] = hit
                while len(self._full) > FULL_TABLES_KEPT:  # oldest opened first
                    self._full.pop(next(iter(self._full)))
        _mtime, table, sorted_ids, order = hit
        i = int(np.searchsorted(sorted_ids, account_id))
        if i >= len(sorted_ids) or sorted_ids[i] != account_id:
            return None
        return table.slice(int(order[i]), 1).to_pylist()[0]

    def trend(self, weeks: list[Week]) -> pd.DataFrame:
        """Per week and health tier: accounts and MRR (``as_of, health_tier, accounts, mrr``)."""
        parts = []
        for week in weeks:
            with self._lock:
                hit = self._tiers.get(week.path)
            if hit is None or hit[0] != week.mtime_ns:
                frame = self.frame(week)
                g = frame.groupby("health_tier", observed=True).agg(
                    accounts=("account_id", "size"), mrr=("mrr", "sum")).reset_index()
                g["health_tier"] = g["health_tier"].astype(str)
                g.insert(0, "as_of", week.as_of)
                hit = (week.mtime_ns, g)
                with self._lock:
                    self._tiers[week.path] = hit
            parts.append(hit[1])
        if not parts:
            return pd.DataFrame(columns=["as_of", "health_tier", "accounts", "mrr"])
        return pd.concat(parts, ignore_index=True)

    # --- monitoring ---------------------------------------------------------------------
    def monitoring_files(self) -> dict[str, Path]:
        """``name -> path`` of every ``OUT/monitoring/*.parquet`` (sorted by name)."""
        folder = self.scores_dir / MONITORING_DIR
        if not folder.is_dir():
            return {}
        return {p.stem: p for p in sorted(folder.glob("*.parquet"))
                if not p.name.startswith((".", "_")) and ".tmp-" not in p.name}

    def read_small(self, path: Path) -> pd.DataFrame:
        """A small parquet file (a monitoring table), cached by modification time."""
        mtime = path.stat().st_mtime_ns
        with self._lock:
            hit = self._small.get(path)
            if hit is not None and hit[0] == mtime:
                return hit[1]
        frame = pd.read_parquet(path)
        with self._lock:
            self._small[path] = (mtime, frame)
        return frame

    def realized(self) -> tuple[pd.DataFrame | None, str | None]:
        """``(monitoring/realized.parquet or None, why it could not be read or None)``."""
        return self.read_optional(self.scores_dir / MONITORING_DIR / REALIZED_NAME)

    def read_optional(self, path: Path) -> tuple[pd.DataFrame | None, str | None]:
        """``(frame, None)`` for a readable small file, ``(None, None)`` when it is absent,
        ``(None, why)`` when it cannot be read (a page shows why instead of failing)."""
        if not path.is_file():
            return None, None
        try:
            return self.read_small(path), None
        except Exception as exc:  # noqa: BLE001 - shown on the page, never a 5xx
            return None, f"{path.name} could not be read ({type(exc).__name__}: {str(exc)[:200]})"

    def effects(self) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str | None]:
        """``(effects, dimensions, problem)`` from ``OUT/effects/`` (``churnml effects``):
        None for a file not written yet; ``problem`` names an unreadable one."""
        folder = self.scores_dir / EFFECTS_DIR
        table, bad = self.read_optional(folder / EFFECTS_NAME)
        dims, bad_dims = self.read_optional(folder / DIMENSIONS_NAME)
        return table, dims, bad or bad_dims

    # --- the book (optional) ------------------------------------------------------------
    def _book_files(self) -> dict[str, Path]:
        if self.data_dir is None:
            return {}
        from churnml.data.io import find_table_files

        files, _ = find_table_files(self.data_dir)
        return {n: files[n] for n in ("accounts", "mrr_changes") if n in files}

    def _book_key(self) -> tuple:
        return tuple((n, str(p), p.stat().st_mtime_ns) for n, p in self._book_files().items())

    def book(self) -> dict[str, pd.DataFrame]:
        """``accounts`` and ``mrr_changes`` of ``--data`` (validated as the weekly job reads
        them; no rejects file is written), or ``{}`` without ``--data``."""
        if self.data_dir is None:
            return {}
        key = self._book_key()
        with self._lock:
            if self._book is not None and self._book[0] == key:
                return self._book[1]
        from churnml.data.io import read_table, validate_frames

        frames = {n: read_table(p) for n, p in self._book_files().items()}
        book, _ = validate_frames(frames, source=str(self.data_dir))
        tables = {n: book[n] for n in frames}
        with self._lock:
            self._book = (key, tables)
        return tables


def check_scores_dir(scores_dir: str | Path) -> None:
    """Refuse to start on a folder that is not there (exit 2); an empty folder starts (the
    pages say no week is scored yet)."""
    path = Path(scores_dir)
    if not path.is_dir():
        raise UsageError(f"--scores: {path} is not a folder (expected the output folder of "
                         "churnml score, with as_of=YYYY-MM-DD/ partitions)")


def outcome_columns(frame_columns) -> list[dict[str, Any]]:
    """Per outcome of the registry whose probability column is present: ``{name, title,
    probability, value, value_meaning, is_risk}``."""
    cols = set(frame_columns)
    return [{"name": o.name, "title": o.title, "probability": f"{o.name}_probability",
             "value": o.value_column if o.value_column in cols else "",
             "value_meaning": o.value_meaning, "is_risk": o.is_risk}
            for o in OUTCOMES if f"{o.name}_probability" in cols]


__all__ = ["NotScored", "ScoreStore", "Week", "check_scores_dir", "column_meanings", "dimension_columns",
           "outcome_columns", "tier_rank", "ACTION_FIELDS", "SCHEMA_VERSION"]
