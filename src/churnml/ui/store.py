"""Read-only access to the weekly scores for ``churnml ui``.

The pages see one small interface, :class:`ScoreStore`, whatever holds the weeks. Where the
weeks come from is a *week source* (:class:`WeekSource`): :class:`FolderSource` reads the
complete partitions of an output folder (:func:`churnml.jobs.partitions.list_partitions`);
:class:`churnml.ui.sql_source.SqlSource` reads the ``churnml_scores`` table that ``churnml score
--out <database URL>`` writes (DuckDB or PostgreSQL). A source answers four questions: which
weeks there are (each with a version that changes when the week is rewritten), a week's list
frame, one account's full row of a week, and which folder holds the monitoring and effects
files (if any). The store adds the caches, the derived views and the unreadable weeks: a week
whose data cannot be read (a corrupt file, a table without the columns the pages need) is left
out and named on every page (:meth:`ScoreStore.unreadable`), never a 5xx.

The pages read what the one output schema (:mod:`churnml.scoring.schema`) declares:

- a week's *list frame*: every scalar column of the week (whatever the file or table holds,
  so a column added to the schema appears without code here), the next best action's fields
  as ``action_<field>`` and the alerts as ``alerts_text`` / ``alerts_count``; read once per
  week with column projection (the reasons are never read for it) and kept while the week's
  version (file modification time; the table's row count and sums) is unchanged;
- one account's full row of a week (reasons, alerts, action; JSON columns decoded);
- ``OUT/monitoring/*.parquet`` (realized performance, and whatever monitoring files exist);
- ``OUT/effects/effects.parquet`` and ``dimensions.parquet`` (``churnml effects``).

Nothing here writes: the folder or table may be in use by the weekly job at the same time.
"""

from __future__ import annotations

import datetime as _dt
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.errors import UsageError
from churnml.jobs.effects import DIMENSIONS_NAME, EFFECTS_DIR, EFFECTS_NAME
from churnml.jobs.monitoring import MONITORING_DIR, REALIZED_NAME
from churnml.outcomes import OUTCOMES
from churnml.scoring.schema import COLUMNS, SCHEMA_VERSION, OutputColumn, declared_columns
from churnml.ui.weeks import (  # noqa: F401 - the week-source interface, re-exported
    ACTION_FIELDS,
    REQUIRED_COLUMNS,
    FolderSource,
    SourceUnavailable,
    UnreadableWeek,
    Week,
    WeekSource,
    finish_list_frame,
    reason_text,
)

#: tiers in display order (best first); a tier not listed here is shown after them
TIER_ORDER = ("thriving", "healthy", "needs_attention", "at_risk", "critical",
              "insufficient_data")


class NotScored(LookupError):
    """The asked week is not scored (or no week is): a 404 page with the message."""


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


def _plain(value: Any) -> Any:
    """A row value as the pages expect it: timestamps as pandas Timestamps (whatever the
    reader gave), nested lists and dicts likewise."""
    if isinstance(value, _dt.datetime):
        return pd.Timestamp(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def open_source(scores: Any) -> WeekSource:
    """The week source of ``--scores``: a folder, or a database URL (text or
    :class:`churnml.data.sql.DatabaseSource`) for its ``churnml_scores`` table."""
    if isinstance(scores, (FolderSource,)) or hasattr(scores, "list_frame"):
        return scores
    from churnml.data.sql import DatabaseSource, parse_source

    parsed = scores if isinstance(scores, (Path, DatabaseSource)) else parse_source(str(scores))
    if isinstance(parsed, DatabaseSource):
        from churnml.ui.sql_source import SqlSource

        return SqlSource(parsed)
    return FolderSource(parsed)


class ScoreStore:
    """The weeks of a :class:`WeekSource` (a folder or a table, see :func:`open_source`) and
    the book ``data_dir`` (optional), read-only, with per-week caches keyed by the week's
    version, and the weeks that could not be read. Thread-safe."""

    def __init__(self, scores: Any, data_dir: str | Path | None = None) -> None:
        self.source = open_source(scores)
        self.description = self.source.description
        self.data_dir = None if data_dir is None else Path(data_dir)
        self._lock = threading.Lock()
        self._frames: dict[Any, tuple[int, pd.DataFrame]] = {}
        self._loading: dict[Any, threading.Lock] = {}
        self._views: dict[tuple, pd.DataFrame] = {}
        self._book: tuple[tuple, dict[str, pd.DataFrame]] | None = None
        self._small: dict[Path, tuple[int, pd.DataFrame]] = {}
        self._tiers: dict[Any, tuple[int, pd.DataFrame]] = {}
        # weeks that could not be read: key -> (version, "name: reason")
        self._bad: dict[Any, tuple[int, str]] = {}
        self._last_weeks: list[Week] = []

    @property
    def scores_dir(self) -> Path | None:
        """The output folder (a folder source), else None."""
        return getattr(self.source, "scores_dir", None)

    # --- weeks --------------------------------------------------------------------------
    def weeks(self) -> list[Week]:
        """The readable weeks, oldest first (a week recorded as unreadable is left out until
        its version changes)."""
        found = self.source.weeks()
        with self._lock:
            bad = dict(self._bad)
        out = [w for w in found if bad.get(w.path, (None,))[0] != w.mtime_ns]
        self._last_weeks = found
        return out

    def unreadable(self) -> list[str]:
        """``"name: reason"`` of every week left out because it could not be read (those still
        present in the source), for the banner on every page."""
        return [text for _week, text in self._unreadable_weeks()]

    def banner(self) -> list[str]:
        """What every page says is left out: the unreadable weeks, and why the source has no
        week at all (a missing table, a table of another schema version)."""
        out = self.unreadable()
        if len(out) < len(self._last_weeks):  # some week is readable: nothing else to say
            return out
        try:
            problem = self.source.problem()
        except SourceUnavailable as exc:
            problem = str(exc)
        if problem and not out:
            out.append(problem)
        return out

    def _unreadable_weeks(self) -> list[tuple[Week, str]]:
        with self._lock:
            bad = dict(self._bad)
        return [(w, bad[w.path][1]) for w in self._last_weeks
                if w.path in bad and bad[w.path][0] == w.mtime_ns]

    def _record_bad(self, week: Week, exc: BaseException) -> UnreadableWeek:
        text = f"{week.name}: {exc if isinstance(exc, UnreadableWeek) else reason_text(exc)}"
        with self._lock:
            self._bad[week.path] = (week.mtime_ns, text)
            self._frames.pop(week.path, None)
            self._tiers.pop(week.path, None)
        return UnreadableWeek(text)

    def warm(self) -> None:
        """Read every week's list frame and tier counts into the caches, newest first (run
        in a background thread at start-up, so that the first page does not wait for them;
        an unreadable week is recorded here, so the banner names it from the start)."""
        try:
            weeks = self.weeks()
        except Exception:  # noqa: BLE001 - a page reports the problem
            return
        for week in reversed(weeks):
            try:
                self.trend([week])
            except Exception:  # noqa: BLE001 - recorded, or a page reports the problem
                continue

    def skipped(self) -> list[str]:
        """Partitions left out as incomplete (``as_of=... (reason)``)."""
        return self.source.skipped()

    def week_for(self, as_of: str | None) -> tuple[Week, Week | None, list[Week]]:
        """``(week, previous week or None, all weeks)`` for ``as_of`` (YYYY-MM-DD; None: the
        latest). Raises :class:`NotScored` when no such week (or none at all) is scored."""
        weeks = self.weeks()
        if not weeks:
            problems = self.unreadable()
            raise NotScored(("no readable week: " + "; ".join(problems)) if problems
                            else (self.source.problem() or f"no scored week in {self.description}"))
        if as_of is None:
            i = len(weeks) - 1
        else:
            try:
                wanted = pd.Timestamp(str(as_of)[:10])
            except (ValueError, TypeError):
                raise NotScored(f"not a date: {as_of[:40]!r}") from None
            matches = [k for k, w in enumerate(weeks) if w.as_of == wanted]
            if not matches:
                bad = [t for w, t in self._unreadable_weeks() if w.as_of == wanted]
                raise NotScored(f"week {wanted:%Y-%m-%d} cannot be read: " + "; ".join(bad)
                                if bad else
                                f"week {wanted:%Y-%m-%d} is not scored in {self.description}")
            i = matches[0]
        return weeks[i], (weeks[i - 1] if i > 0 else None), weeks

    def frame(self, week: Week) -> pd.DataFrame:
        """The week's list frame (cached while the week's version is unchanged). Do not
        modify it. Raises :class:`UnreadableWeek` (after recording the week) when it cannot
        be read or lacks :data:`REQUIRED_COLUMNS`."""
        with self._lock:
            hit = self._frames.get(week.path)
            if hit is not None and hit[0] == week.mtime_ns:
                return hit[1]
            loading = self._loading.setdefault(week.path, threading.Lock())
        with loading:  # one reader per week; the others wait for its frame
            with self._lock:
                hit = self._frames.get(week.path)
            if hit is not None and hit[0] == week.mtime_ns:
                return hit[1]
            try:
                frame = self.source.list_frame(week)
            except SourceUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded and named on every page
                raise self._record_bad(week, exc) from None
            missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
            if missing:
                raise self._record_bad(week, UnreadableWeek(
                    f"no column(s) {', '.join(missing)}: not the output of churnml score"))
            version = (frame["schema_version"].iloc[0]
                       if len(frame) and "schema_version" in frame else None)
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
        dicts, timestamps as pandas Timestamps), or None when not scored that week. Raises
        :class:`UnreadableWeek` (after recording the week) when the week cannot be read."""
        try:
            row = self.source.account_row(week, account_id)
        except SourceUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded and named on every page
            raise self._record_bad(week, exc) from None
        return None if row is None else {k: _plain(v) for k, v in row.items()}

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
        """``name -> path`` of every ``OUT/monitoring/*.parquet`` (sorted by name; none for
        a source without a side folder)."""
        if self.source.side_dir is None:
            return {}
        folder = self.source.side_dir / MONITORING_DIR
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
        if self.source.side_dir is None:
            return None, None
        return self.read_optional(self.source.side_dir / MONITORING_DIR / REALIZED_NAME)

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
        if self.source.side_dir is None:
            return None, None, None
        folder = self.source.side_dir / EFFECTS_DIR
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
    pages say no week is scored yet). A database URL: see
    :func:`churnml.ui.sql_source.check_database`."""
    from churnml.data.sql import DatabaseSource

    if isinstance(scores_dir, DatabaseSource):
        from churnml.ui.sql_source import check_database

        check_database(scores_dir)
        return
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


__all__ = ["NotScored", "ScoreStore", "Week", "WeekSource", "FolderSource", "UnreadableWeek",
           "SourceUnavailable", "open_source", "check_scores_dir", "column_meanings", "dimension_columns",
           "outcome_columns", "tier_rank", "ACTION_FIELDS", "SCHEMA_VERSION"]
