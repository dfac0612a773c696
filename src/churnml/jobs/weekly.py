"""The weekly job's engine (``churnml score``): partitions, lock, account chunks, atomic write.

Layout of the output folder::

    OUT/.churnml-score.lock                  held while a run writes (filelock)
    OUT/as_of=YYYY-MM-DD/scores.parquet      the one output schema (churnml.scoring.schema), one
                                             row per active account
    OUT/as_of=YYYY-MM-DD/report.html         the CS leader's report (churnml.jobs.report)
    OUT/as_of=YYYY-MM-DD/_SUCCESS            completion marker, written last (churnml.jobs.completion)

Guarantees:

- atomic: each file is written to a unique temporary file in its partition
  (``<name>.tmp-<random>``, ``churnml.fsutil.atomic_write``: never through a symlink, fsync-ed,
  removed on failure) and renamed with ``os.replace``; a run killed midway leaves at most a
  temporary file, which the next run on that partition deletes, never a partial
  ``scores.parquet``; a full disk is ``DiskFullError`` ("disk full writing <path>");
- complete or ignored: a partition counts only with its ``_SUCCESS`` marker, removed first
  and written last by every run; partitions without one are skipped (and reported) by every
  reader and replaced by the next run of their week;
- reproducible: rows sorted by account_id, no wall-clock time inside the files, a fixed arrow
  schema: the same inputs, models and weights give byte-identical parquet;
- isolated: only the partition of ``as_of`` is written; earlier weeks are only read ("last
  week" = the latest earlier partition that has a ``scores.parquet``; history = the earlier
  partitions within ``history_weeks``), for the alerts on the health score's own movement;
  signals compared with a week before (critical actions, ``champion_left``) are read from the
  book itself (``churnml.scoring.compare``), so a first run or a backfill gives the same
  actions as a weekly run;
- bounded memory: features, scores and alerts are computed per chunk of ``chunk_size``
  accounts; each chunk's output rows (not its features) are kept until the whole week is
  scored, because this week's queue is ranked over the whole book per owner
  (``churnml.scoring.queue``), then each chunk is written as a row group.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

from churnml.data.sql import DatabaseSource
from churnml.data.tables import Book
from churnml.errors import LockedError, ModelNotFoundError, UsageError
from churnml.features.windows import to_as_of
from churnml.health.adopted import load_adopted_health
from churnml.models import registry
from churnml.outcomes import OUTCOMES
from churnml.scoring.actions import load_playbooks
from churnml.scoring.compare import week_before as book_week_before
from churnml.scoring.frame import catalog_dimensions, score_frame
from churnml.jobs import drift, effects as play_effects, monitoring
from churnml.scoring.queue import queue_tables
from churnml.jobs.layout import (  # noqa: F401  (part of this module's interface)
    DEFAULT_HISTORY_WEEKS,
    LOCK_NAME,
    REPORT_NAME,
    SCORES_NAME,
    OutputLock,
)
from churnml.jobs.partitions import (  # noqa: F401  (part of this module's interface)
    WeeklyResult,
    begin_partition,
    describe_skipped,
    incomplete_partitions,
    list_partitions,
    load_earlier_weeks,
    mark_complete,
    partition_dir,
    remove_stale_temporaries,
    rows_of_accounts,
    to_arrow,
    write_bytes_atomic,
    write_parquet_atomic,
)
from churnml.jobs.spark import score_book_spark
from churnml.scoring.schema import SCHEMA_VERSION, TIME_TO_EVENT_VERSION_COLUMN, arrow_schema

DEFAULT_CHUNK_SIZE = 10_000

def sorted_bounds(column: pd.Series, first_ids: np.ndarray) -> np.ndarray | None:
    """The row bounds ``[0, cut_2, ..., cut_n, len]`` of each chunk when ``column`` is sorted
    ascending (``cut_k``: the first row whose id is at or after ``first_ids[k-2]``), else None.

    A string column backed by Arrow (pandas' default ``str``, and what ``load_book`` leaves) is
    checked by one vectorised comparison of neighbours and cut by bisection over its rows, so no
    Python string is made per row (``to_numpy()`` of 20 million ids took seconds at 50,000
    accounts). Other columns take pandas' monotonic check and ``np.searchsorted``. UTF-8 byte
    order is code-point order, the order of ``np.sort`` on the ids."""
    n = len(column)
    arrow = _arrow_strings(column)
    if arrow is None:
        if not column.is_monotonic_increasing:
            return None
        cuts = np.searchsorted(column.to_numpy(), first_ids, side="left")
    else:
        import pyarrow.compute as pc

        if arrow.null_count or (n > 1 and not pc.all(
                pc.less_equal(arrow.slice(0, n - 1), arrow.slice(1))).as_py()):
            return None
        cuts = np.array([bisect.bisect_left(range(n), str(first), key=lambda i: arrow[i].as_py())
                         for first in first_ids], dtype=np.int64)
    return np.concatenate([[0], cuts, [n]]).astype(np.int64)


def _arrow_strings(column: pd.Series):
    """The column's Arrow string data without a copy (``__arrow_array__`` of a pyarrow-backed
    ``StringDtype``), or None for any other column."""
    import pyarrow as pa

    dtype = column.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return None
    arrow = column.array.__arrow_array__()
    if isinstance(arrow, pa.Array):
        arrow = pa.chunked_array([arrow])
    if not (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)):
        return None
    return arrow


def account_chunks(book: Book, chunk_size: int) -> Iterator[Book]:
    """Split a book into books of at most ``chunk_size`` accounts (by sorted account_id).

    Every table row goes to the chunk of its account, so per-account features are unchanged.
    Tables sorted by account_id (as ``load_book`` leaves them) are cut into contiguous slices
    (no copy, no per-row work); others are grouped through a stable argsort."""
    ids = np.sort(book.accounts["account_id"].astype(str).unique())
    n_chunks = max(1, -(-len(ids) // chunk_size))
    first_ids = ids[::chunk_size][1:]  # the first account of chunks 2..n
    cuts: dict[str, tuple] = {}
    for name, table in book.tables.items():
        if "account_id" not in table.columns:
            continue
        column = table["account_id"]
        bounds = sorted_bounds(column, first_ids)
        if bounds is not None:
            cuts[name] = ("slice", bounds)
            continue
        codes = np.searchsorted(ids, column.astype(str).to_numpy())
        chunk = np.minimum(codes, max(len(ids) - 1, 0)) // chunk_size
        order = np.argsort(chunk, kind="stable")
        bounds = np.searchsorted(chunk[order], np.arange(n_chunks + 1))
        cuts[name] = ("take", order, bounds)
    for k in range(n_chunks):
        tables = {}
        for name, table in book.tables.items():
            cut = cuts.get(name)
            if cut is None:
                tables[name] = table
            elif cut[0] == "slice":
                tables[name] = table.iloc[cut[1][k]:cut[1][k + 1]].reset_index(drop=True)
            else:
                order, bounds = cut[1], cut[2]
                tables[name] = table.iloc[order[bounds[k]:bounds[k + 1]]].reset_index(drop=True)
        yield Book(tables=tables, source=book.source, meta=dict(book.meta))


def score_book(
    book: Book,
    as_of,
    out_dir: str | Path,
    models: Mapping[str, Any],
    health,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    history_weeks: int = DEFAULT_HISTORY_WEEKS,
    playbooks=None,
    build_features: Callable | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    feature_dimensions=None,
    lock: bool = True,
    timer: Callable[[str], contextlib.AbstractContextManager[object]] | None = None,
    complete: bool = True,
    on_features: Callable[[pd.DataFrame], None] | None = None,
    uplift: Any = "saved",
    time_to_event: Any = None,
) -> WeeklyResult:
    """Score every active account of ``book`` at ``as_of`` into ``OUT/as_of=DATE/``.

    ``models``: outcome name -> model for the outcomes that have one (the others' columns are
    null). Holds the output folder's lock for the whole run (LockedError if held), removes
    temporary files of a killed run, computes features per account chunk with
    ``build_features(book, [as_of])`` (default ``churnml.features.build.build_features``) and
    the compared features a week before as_of (``churnml.scoring.compare``), scores each chunk
    with :func:`~churnml.scoring.frame.score_frame` against the earlier partitions, and writes
    ``scores.parquet`` atomically. ``on_chunk(accounts_done, accounts_total)`` is called after
    each chunk (progress bar). Returns what was written and the wall time of each stage
    (features, scoring, write). ``lock=False`` when the caller already holds
    :class:`OutputLock` (``run_job``). ``on_features(features)`` sees each chunk's features
    (``churnml.jobs.drift.FeatureDrift.add``). The partition's ``_SUCCESS`` marker is removed
    first and, with ``complete=True``, written last; ``run_job`` passes False and writes it after
    the report. ``uplift``: the plays' learned effects for the queue (an ``UpliftSet``, None
    for the priors only; default: the ones the last effects run saved in ``OUT/effects/``,
    used only when they saw no outcome on or after ``as_of``). ``time_to_event``: the
    ``churnml-time-to-event`` champion (its columns are null without it).
    """
    if chunk_size < 1:
        raise UsageError(f"The 'chunk_size' parameter must be a positive integer. Got {chunk_size}.")
    as_of = to_as_of(as_of)
    if build_features is None:
        from churnml.features.build import build_features as default_build_features

        build_features = default_build_features
    playbooks = playbooks if playbooks is not None else load_playbooks()
    if feature_dimensions is None:
        feature_dimensions = catalog_dimensions()
    out_dir = Path(out_dir)
    partition = partition_dir(out_dir, as_of)
    stage = {"features": 0.0, "scoring": 0.0, "queue": 0.0, "write": 0.0}
    with (OutputLock(out_dir) if lock else contextlib.nullcontext()):
        replaced = begin_partition(partition, stale=(REPORT_NAME,))
        skipped = describe_skipped(incomplete_partitions(out_dir, before=as_of))
        previous, history = load_earlier_weeks(out_dir, as_of, history_weeks)
        dimensions = list(health.dimension_names)
        schema = arrow_schema(dimensions)
        n_total = int(book.accounts["account_id"].nunique())

        def chunks() -> Iterator:
            done = 0
            for part in account_chunks(book, chunk_size):
                t0 = time.perf_counter()
                with (timer("features") if timer else contextlib.nullcontext()):
                    features = build_features(part, [as_of])
                    before = book_week_before(part, as_of, playbooks,
                                              build_features=build_features)
                features = features.sort_values("account_id", kind="stable").reset_index(drop=True)
                if on_features is not None:
                    on_features(features)
                t1 = time.perf_counter()
                ids = features["account_id"].astype(str).to_numpy()
                scored = score_frame(features, models, health,
                                     previous=rows_of_accounts(previous, ids),
                                     history=rows_of_accounts(history, ids),
                                     week_before=before, playbooks=playbooks,
                                     feature_dimensions=feature_dimensions, timer=timer,
                                     time_to_event=time_to_event)
                t2 = time.perf_counter()
                table = to_arrow(scored, schema)
                stage["features"] += t1 - t0
                stage["scoring"] += t2 - t1
                stage["write"] += time.perf_counter() - t2
                done += int(part.accounts["account_id"].nunique())
                if on_chunk is not None:
                    on_chunk(done, n_total)
                yield table

        t0 = time.perf_counter()
        scores_path = partition / SCORES_NAME
        # this week's queue is decided over the whole book (per owner), so the chunks' output
        # rows (not their features) are held until the last one is scored
        scored_tables = list(chunks())
        t1 = time.perf_counter()
        with (timer("queue") if timer else contextlib.nullcontext()):
            scored_tables = queue_tables(scored_tables, playbooks,
                                         uplift=play_effects.usable_uplift(
                                             uplift, out_dir, as_of))
        stage["queue"] = time.perf_counter() - t1
        rows = write_parquet_atomic(scores_path, iter(scored_tables), schema)
        stage["write"] += (time.perf_counter() - t0) - stage["features"] - stage["scoring"] \
            - stage["write"] - stage["queue"]
        if complete:
            mark_complete(partition, as_of, rows, [SCORES_NAME])
    return WeeklyResult(
        as_of=as_of, partition=partition, scores_path=scores_path, rows=rows,
        previous_as_of=None if previous is None else pd.Timestamp(previous["as_of"].iloc[0])
        if len(previous) else None,
        stage_seconds=stage, skipped_partitions=skipped, replaced_incomplete=replaced,
    )


WEEKLY_EXPERIMENT = "churnml-weekly"


@dataclass
class JobResult:
    weekly: WeeklyResult
    report_path: Path
    summary: dict[str, float]
    run_id: str | None
    health_version: str
    stage_seconds: dict[str, float]
    #: outcome -> model version scored; the outcomes without a champion (null columns)
    model_versions: dict[str, str] = field(default_factory=dict)
    missing_outcomes: list[str] = field(default_factory=list)
    report_logged: bool = False  # report.html sent to the MLflow store as an artifact
    #: ``--out`` was a database: where the rows went (``churnml_scores`` in it; password hidden)
    database: str | None = None
    #: the ``churnml-time-to-event`` champion's version scored (None: no champion, its columns null)
    time_to_event_version: str | None = None


def write_report(result: WeeklyResult, book: Book, out_dir: Path,
                 realized: pd.DataFrame | None = None,
                 train_ends: dict[str, str | None] | None = None,
                 effects: Any = None,
                 status: "drift.WeekStatus | None" = None) -> tuple[Path, dict[str, float]]:
    """Build ``report.html`` for a scored partition (atomic write); returns path and summary.
    ``realized``: the realized-performance table (``churnml.jobs.monitoring``); ``train_ends``:
    per outcome, the end of its model's training span (:func:`train_ends`); ``effects``: the
    plays' measured effects (``churnml.jobs.effects.EffectsResult``); ``status``: this
    week's drift, estimate and retrain trigger (``churnml.jobs.drift``)."""
    from churnml.jobs.report import build_report

    earlier = [p for d, p in list_partitions(out_dir) if d < result.as_of]
    previous_path = earlier[-1] / SCORES_NAME if earlier else None
    page, summary = build_report(result.scores_path, book.mrr_changes, previous_path=previous_path,
                                 realized=realized, train_ends=train_ends,
                                 effects=None if effects is None else effects.table,
                                 effects_by_dimension=None if effects is None
                                 else effects.dimensions, status=status)
    path = result.partition / REPORT_NAME
    write_bytes_atomic(path, page.encode("utf-8"))
    return path, summary


def _revenue_book(data_dir) -> Book:
    """Just ``accounts``, ``mrr_changes`` and ``cs_actions`` (the measured effects) of a book,
    validated as ``load_book`` would."""
    from churnml.data.io import find_table_files, read_table, validate_frames

    files, _ = find_table_files(data_dir)
    frames: dict[str, pd.DataFrame] = {name: read_table(files[name])
                                       for name in ("accounts", "mrr_changes", "cs_actions")
                                       if name in files}
    book, _ = validate_frames(frames, source=str(data_dir))
    return book


def train_ends(models: dict[str, Any]) -> dict[str, str | None]:
    """Per outcome, the last as_of date its champion was fitted on (``train_end``; a version
    registered before it was recorded: None). ``models``: loaded models, or version strings
    (the Spark engine), whose registry tag is read."""
    out: dict[str, str | None] = {}
    for name, model in models.items():
        if isinstance(model, str):
            out[name] = next((v.get("train_end") for v in registry.list_versions(name)
                              if v.get("version") == model), None)
        else:
            info = getattr(model, "info", None)
            out[name] = info.get("train_end") if isinstance(info, dict) else None
    return out


def champion_models(versions_only: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The champions of every outcome that has one: ``({outcome: model}, [outcomes without
    a champion])`` (``versions_only``: the version strings only). None has a champion:
    ModelNotFoundError."""
    models: dict[str, Any] = {}
    missing: list[str] = []
    for outcome in OUTCOMES:
        version = registry.champion_version(outcome.name)
        if version is None:
            missing.append(outcome.name)
        elif versions_only:
            models[outcome.name] = str(version)
        else:
            models[outcome.name] = registry.load_version(outcome.name, str(version))
    if not models:
        raise ModelNotFoundError(
            "no champion model for any outcome "
            f"({', '.join(o.model_name for o in OUTCOMES)}): run `churnml train --target "
            "churn` (and the other outcomes) first")
    return models, missing


def champion_time_to_event(version_only: bool = False) -> Any:
    """The ``churnml-time-to-event`` champion (``SurvivalModel``), None when it has none;
    ``version_only``: just its version string."""
    from churnml.outcomes import TIME_TO_EVENT

    version = registry.champion_version(TIME_TO_EVENT)
    if version is None or version_only:
        return None if version is None else str(version)
    return registry.load_time_to_event(str(version))


def run_job(
    data_dir: str | Path | DatabaseSource,
    as_of,
    out_dir: str | Path | DatabaseSource,
    *,
    engine: str = "local",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_stage: Callable[[str], None] | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    log_to_mlflow: bool = True,
    shards: int = 8,
) -> JobResult:
    """``churnml score``: load the book, the champions and the adopted health weights, score
    every active account (``engine`` "local" or "spark"), write the report and log the run
    (experiment ``churnml-weekly``: params, summary metrics, the report as artifact when
    :func:`churnml.config.log_report_to_mlflow` allows it).

    The output folder's lock is held from before the book is read until the partition's
    ``_SUCCESS`` marker is written, after the report.
    """
    from churnml.config import log_report_to_mlflow
    from churnml.data.io import load_book
    from churnml.data.sql import is_database_url, parse_source
    from churnml.jobs import sql_scores

    if engine not in ("local", "spark"):
        raise UsageError(f"The 'engine' parameter must be one of ['local', 'spark']. Got {engine!r}.")
    as_of = to_as_of(as_of)
    if is_database_url(data_dir):  # printed and logged with the password hidden
        data_dir = parse_source(data_dir)
        if engine == "spark":
            raise UsageError("--engine spark reads a folder of table files; a database book "
                             "is scored with --engine local")
    # a database output: the partitions stay in a local work folder; the week's rows go to
    # churnml_scores in one transaction once the partition is complete (churnml.jobs.sql_scores)
    database = parse_source(out_dir) if is_database_url(out_dir) else None
    out_dir = (sql_scores.work_dir(database) if isinstance(database, DatabaseSource)
               else Path(str(out_dir)))
    stage = on_stage or (lambda name: None)
    times: dict[str, float] = {}
    send_report = log_to_mlflow and log_report_to_mlflow()  # a bad setting fails before the run
    with OutputLock(out_dir):
        t0 = time.perf_counter()
        stage("loading the book")
        if engine == "spark":
            # the executors read the event tables; the driver needs only the revenue history
            # (portfolio metrics of the report)
            book = _revenue_book(data_dir)
        else:
            book, _report = load_book(data_dir)
            if _report.total_rejected:
                stage(f"{_report.total_rejected:,} input rows set aside (run churnml validate)")
        times["load"] = time.perf_counter() - t0
        stage("loading the champion models and health weights")
        # both engines score with these objects (Spark ships them to its Python workers once)
        models, missing = champion_models()
        stage("scoring " + ", ".join(f"{name} (v{getattr(m, 'version', m)})"
                                     for name, m in models.items())
              + (f"; no champion for {', '.join(missing)} (columns left null)"
                 if missing else ""))
        time_to_event = champion_time_to_event()
        tte_version = None if time_to_event is None else str(getattr(time_to_event, "version",
                                                                     time_to_event))
        if tte_version is not None:
            stage(f"time to event: churnml-time-to-event v{tte_version}")
        health = load_adopted_health()
        facts = drift.JobFacts(models)  # the registry only for registered champions
        profiles = {name: p for name, m in models.items()
                    if (p := facts.profile(name, str(getattr(m, "version", m)))) is not None}
        features_seen = drift.FeatureDrift(profiles)
        stage(f"scoring accounts ({engine})")
        t1 = time.perf_counter()
        if engine == "spark":
            assert not isinstance(data_dir, DatabaseSource)  # refused above
            weekly = score_book_spark(data_dir, as_of, out_dir, models, health, lock=False,
                                      shards=shards, complete=False,
                                      time_to_event=time_to_event)
        else:
            weekly = score_book(book, as_of, out_dir, models, health,
                                chunk_size=chunk_size, on_chunk=on_chunk, lock=False,
                                complete=False, on_features=features_seen.add,
                                time_to_event=time_to_event)
        times.update(weekly.stage_seconds)
        times["score_total"] = time.perf_counter() - t1
        stage("checking the weeks whose outcomes are now known")
        t_m = time.perf_counter()
        realized = monitoring.update_realized(out_dir, book, spans=monitoring.registry_spans)
        stage("measuring drift and the retrain rules")
        status = drift.update_week(out_dir, as_of, facts=facts, realized=realized,
                                   feature_counts=features_seen.counts if engine == "local"
                                   else None)
        drift_metrics, drift_tags = drift.mlflow_figures(status)
        times["monitoring"] = time.perf_counter() - t_m
        stage("measuring the plays against the holdout")
        t_e = time.perf_counter()
        measured = play_effects.measure(out_dir, book)
        play_effects.write_effects(measured, out_dir)
        times["effects"] = time.perf_counter() - t_e
        stage("writing the report")
        t2 = time.perf_counter()
        report_path, summary = write_report(weekly, book, out_dir, realized, train_ends(models),
                                            effects=measured, status=status)
        saved = play_effects.mlflow_figures(measured.table)["mrr_saved_to_date"]
        summary = {**summary, **monitoring.latest_figures(realized), **drift_metrics,
                   "mrr_saved_to_date": saved}
        times["report"] = time.perf_counter() - t2
        # last: from here on the week counts as complete
        mark_complete(weekly.partition, as_of, weekly.rows,
                      [SCORES_NAME, REPORT_NAME])
        if isinstance(database, DatabaseSource):
            stage(f"writing the scores to {database}")
            t3 = time.perf_counter()
            sql_scores.publish_partition(database, weekly.scores_path, as_of,
                                         health.dimension_names)
            times["database"] = time.perf_counter() - t3
    run_id = None
    if log_to_mlflow:
        stage("logging the run to MLflow")
        run_id = registry.log_job_run(
            WEEKLY_EXPERIMENT,
            params={"as_of": f"{as_of:%Y-%m-%d}", "engine": engine, "data": str(data_dir),
                    "out": str(database if database is not None else out_dir),
                    **{o.version_column: str(getattr(models[o.name], "version",
                                                     models[o.name]))
                       if o.name in models else "" for o in OUTCOMES},
                    TIME_TO_EVENT_VERSION_COLUMN: tte_version or "",
                    "health_weights_version": health.version,
                    "previous_as_of": "" if weekly.previous_as_of is None
                    else f"{weekly.previous_as_of:%Y-%m-%d}",
                    "schema_version": SCHEMA_VERSION},
            metrics={**summary, **{f"seconds_{k}": v for k, v in times.items()}},
            artifacts={"report": report_path} if send_report else {},
            tags={"churnml.job": "weekly-score",
                  "churnml.report_logged": "true" if send_report else "false", **drift_tags},
            run_name=f"score {as_of:%Y-%m-%d}",
        )
    return JobResult(weekly=weekly, report_path=report_path, summary=summary, run_id=run_id,
                     model_versions={k: str(getattr(m, "version", m)) for k, m in models.items()},
                     missing_outcomes=missing,
                     health_version=str(health.version), stage_seconds=times,
                     report_logged=bool(run_id) and send_report,
                     database=None if database is None else str(database),
                     time_to_event_version=tte_version)
