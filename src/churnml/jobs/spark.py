"""The Spark engine of ``churnml score --engine spark``: features per account shard, scoring
through MLflow's Spark UDF, the rest of the output row per shard with the local code.

Three steps, each on the executors:

1. **Features per shard** (``applyInArrow``, record batches in and out). Spark reads the
   book's table files, stacks them in one frame keyed by account (each table's columns
   prefixed ``<table>__`` with their own types; a row's other tables' columns are null) and
   hashes accounts into shards: at least ``shards``, more for a large book, so that a shard
   holds at most ``shard_accounts`` accounts (:func:`shard_count`). Per shard, each Arrow
   batch is split into its tables' own columns as it arrives, each table is cast back to the
   Arrow schema of its file (nanosecond timestamps, which Spark reads as longs, become
   timestamps again, exactly) and handed to pandas as ``load_book`` reads it
   (:func:`_shard_tables`); then ``validate_frames`` and ``build_features`` (the local
   engine's code) give the shard's feature rows. Their Spark schema is learnt on the driver
   by running the same functions on a handful of accounts (:func:`feature_columns`).
   Step 1 also builds each shard's compared features a week before as_of
   (``churnml.scoring.compare``), carried to step 3 as ``_wb_<feature>`` columns.
2. **Scoring through ``mlflow.pyfunc.spark_udf``**, one UDF per outcome with a model, on the registered
   pyfunc (``churnml.models.pyfunc_model``) of the version being used: ``models:/churnml-
   <target>/<version>``, the champion's version resolved once on the driver so that every row
   carries the version that scored it even if the alias moves during the run. The UDF returns
   ``probability double, reasons string`` (the reasons as the pyfunc's JSON records) and runs
   in the executors' own Python (``env_manager="local"``). The time-to-event champion
   (``churnml-time-to-event``), when there is one, runs the same way on its registered pyfunc
   (``churnml.models.pyfunc_survival``), returning one double per float column of
   ``churnml.scoring.schema.time_to_event_columns`` and its timing reasons per outcome as JSON
   text (``time_to_event_result_type``; a version registered before the timing reasons,
   without ``churnml_timing_reasons`` in its MLflow metadata, gives the floats only and its
   timing reasons stay empty).
3. **The rest of the row per shard** (``applyInPandas`` again): health, alerts, next best
   action and revenue by :func:`churnml.scoring.frame.score_frame`, unchanged, given
   :class:`PrecomputedModel` objects that hand it the UDF's probabilities and reasons for the
   shard's accounts instead of running the models again (and a :class:`PrecomputedTimeToEvent`
   with the time-to-event UDF's columns).

The driver collects the scored rows in account order, decides this week's queue over the whole
book (:func:`churnml.scoring.queue.queue_tables`: the ranking is per owner across every shard,
so it runs once all rows are on the driver, as in the local engine; the driver holds the
week's output rows, not the features) and writes them with the local engine's writer (same
schema, atomic rename). Every per-account number is computed by the same
code on the same features, which the parity test checks (probabilities to 1e-9, every other
column identical). See docs/operations.md ("Running on a Spark cluster").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnml.errors import ChurnMLError, UsageError
from churnml.features.windows import to_as_of
from churnml.jobs.partitions import (
    DEFAULT_HISTORY_WEEKS,
    REPORT_NAME,
    SCORES_NAME,
    OutputLock,
    WeeklyResult,
    begin_partition,
    describe_skipped,
    incomplete_partitions,
    list_partitions,
    mark_complete,
    partition_dir,
    to_arrow,
    write_parquet_atomic,
)
from churnml.models import registry
from churnml.outcomes import OUTCOMES, TIME_TO_EVENT, get_outcome, model_name_of
from churnml.scoring.actions import Playbooks, load_playbooks
from churnml.scoring.compare import compared_features
from churnml.scoring.compare import week_before as book_week_before
from churnml.scoring.frame import catalog_dimensions, score_frame
from churnml.jobs import effects as play_effects
from churnml.scoring.queue import queue_tables
from churnml.scoring.schema import (
    arrow_schema,
    declared_columns,
    output_columns,
    time_to_event_floats,
    time_to_event_reason_columns,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame

#: the output columns with nested values (carried through Spark as JSON text)
_NESTED = tuple(name for name, col, _ in declared_columns([])
                if col.type in ("reasons", "strings", "action"))
_SEP = "__"
_FEATURES = "_features"  # the ``_table`` marker of feature rows in step 3's input
_EARLIER = ("_previous", "_history")
_WEEK_BEFORE = "_wb_"  # prefix of the compared features a week before as_of (step 1 -> 3)
# What the registered pyfunc returns per row (registry's signature: probability, JSON reasons).
UDF_RESULT_TYPE = "probability double, reasons string"
TOP_K = 3  # reasons per account: what score_frame asks for and the pyfunc's default
#: the time-to-event model's float output columns (declared once in the output schema)
_TTE_FLOATS = tuple(time_to_event_floats())
#: its reason columns, JSON text from the pyfunc (declared once in the output schema)
_TTE_REASONS = tuple(time_to_event_reason_columns())
_TTE = "_tte_"  # prefix of the time-to-event UDF's columns (step 2 -> 3)


def time_to_event_result_type(reasons: bool = True) -> str:
    """What the time-to-event pyfunc's Spark UDF returns per row: one double per float column
    of the output schema's time-to-event columns and, with ``reasons``, one JSON string per
    timing reason column (MLflow picks them by name from the pyfunc's frame, which has
    survival columns too)."""
    return ", ".join([f"`{c}` double" for c in _TTE_FLOATS]
                     + ([f"`{c}` string" for c in _TTE_REASONS] if reasons else []))


#: the most accounts a shard holds by default (more shards for a larger book): a shard's
#: Python worker holds its typed tables and features, measured in benchmarks/README.md
#: ("Spark engine on a standalone cluster")
SHARD_ACCOUNTS = 2_500


class SparkEngineError(ChurnMLError):
    """The Spark engine could not run (no Java, a failed Spark job, no pyspark): exit code 1."""


# ---- session -------------------------------------------------------------------------------
def spark_session(master: str | None = None):
    """The active SparkSession, or a new one with UTC session time and Arrow transfers.

    Master: ``master``, else ``CHURNML_SPARK_MASTER``, else the one spark-submit configured,
    else ``local[2]``. Raises :class:`UsageError` when pyspark is not installed and
    :class:`SparkEngineError` when the session cannot start (e.g. no Java)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise UsageError("--engine spark needs pyspark (pip install 'pyspark>=4.1,<5', or "
                         "churnml's dev extra); the local engine needs nothing more") from exc

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName("churnml-score")
    master = master or os.environ.get("CHURNML_SPARK_MASTER")
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = "local[2]"  # not under spark-submit (which sets the master itself)
    if master:
        builder = builder.master(master)
    try:
        return (builder.config("spark.sql.session.timeZone", "UTC")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.shuffle.partitions", "8")
                # pandas writes nanosecond timestamps, which Spark reads only as longs
                .config("spark.sql.legacy.parquet.nanosAsLong", "true")
                .getOrCreate())
    except Exception as exc:  # py4j / JVM start-up failures have no common base class
        raise SparkEngineError(
            f"could not start a Spark session (master {master or 'from spark-submit'}): "
            f"{_first_line(exc)}. The Spark engine needs Java 17 (JAVA_HOME) and, on a "
            "cluster, a reachable master; `churnml score` without --engine spark runs locally."
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_WORKER_ERROR = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.*)$")


@contextlib.contextmanager
def spark_errors(stage: str) -> Iterator[None]:
    """Turn a failed Spark job into a clear churnml error naming the stage.

    A churnml error raised on an executor (say a table that fails validation in one shard)
    comes back as the same kind of error with its own message (exit code 2 for bad input);
    anything else becomes :class:`SparkEngineError` with the worker's last error line."""
    try:
        yield
    except ChurnMLError:
        raise
    except Exception as exc:
        try:
            from pyspark.errors import PySparkException
            from py4j.protocol import Py4JError
        except ImportError:  # pragma: no cover - pyspark is imported by then
            raise exc
        if not isinstance(exc, (PySparkException, Py4JError)):
            raise
        lines = [ln.strip() for ln in str(exc).splitlines() if _WORKER_ERROR.match(ln.strip())]
        if lines:
            match = _WORKER_ERROR.match(lines[-1])
            assert match is not None  # `lines` holds only the lines that match
            kind, message = match.groups()
            import churnml.errors as errors

            cls = getattr(errors, kind.rsplit(".", 1)[-1], None) \
                if kind.startswith("churnml.errors.") else None
            if isinstance(cls, type) and issubclass(cls, ChurnMLError):
                raise cls(f"{message} (Spark engine, {stage})") from exc
            detail = f"{kind.rsplit('.', 1)[-1]}: {message}"
        else:
            detail = _first_line(exc)
        raise SparkEngineError(f"the Spark job failed while {stage}: {detail} (full trace in "
                               "the Spark driver and executor logs)") from exc


# ---- step 0: the book as one frame keyed by account ----------------------------------------
def _read(spark, path: Path):
    if path.suffix.lower() == ".csv":
        return spark.read.option("header", True).option("inferSchema", False).csv(str(path))
    return spark.read.parquet(str(path))


def table_schema(path: Path, sdf) -> pa.Schema:
    """The Arrow schema ``load_book`` reads a table file with: the parquet file's own (with
    its pandas metadata; a folder of parquet files: its dataset's), every column text for a
    CSV file; in the column order Spark reads."""
    if path.suffix.lower() == ".csv":
        return pa.schema([(c, pa.string()) for c in sdf.columns])
    if path.is_dir():
        import pyarrow.dataset as ds

        schema = ds.dataset(str(path), format="parquet").schema
    else:
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
    fields = {f.name: f for f in schema}
    missing = [c for c in sdf.columns if c not in fields]
    if missing:  # pragma: no cover - Spark reads the file's own columns
        raise ValueError(f"{path}: Spark read columns the file's schema lacks: {missing}")
    return pa.schema([fields[c] for c in sdf.columns], metadata=schema.metadata)


def shard_count(accounts: int, shards: int, shard_accounts: int | None = SHARD_ACCOUNTS) -> int:
    """Shards for a book of ``accounts`` accounts: ``shards``, or more so that a shard holds at
    most ``shard_accounts`` accounts (None: exactly ``shards``)."""
    if not shard_accounts:
        return shards
    return max(shards, -(-int(accounts) // int(shard_accounts)))


def _typed_stack(tables: Mapping[str, SparkDataFrame]):
    """One Spark frame of the book's tables: ``_table``, ``account_id`` (text, the shard key)
    and each table's columns as ``<table>__<column>`` with their own Spark types (null on the
    other tables' rows). Nothing is converted: :func:`_shard_tables` casts them back."""
    from pyspark.sql import functions as F

    parts = []
    for name, sdf in tables.items():
        cols = [F.lit(name).alias("_table"), F.col("account_id").cast("string").alias("account_id")]
        cols += [F.col(c).alias(f"{name}{_SEP}{c}") for c in sdf.columns]
        parts.append(sdf.select(*cols))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p, allowMissingColumns=True)
    return out


def _shard_tables(batches: Iterable[pa.RecordBatch],
                  schemas: Mapping[str, pa.Schema]) -> dict[str, pd.DataFrame]:
    """A shard's tables from the stacked frame's Arrow batches, as ``load_book`` reads them.

    Each batch is split as it arrives into each table's own rows and columns (the other
    tables' null columns are dropped at once, so the shard is held once, typed); each table is
    then cast back to its file's Arrow schema (``schemas``: :func:`table_schema`; Spark's
    longs for nanosecond timestamps become those timestamps again, bit for bit) and converted
    to pandas as ``read_table`` does. A table of the book with no rows in this shard is an
    empty frame with its columns and types, never absent: an absent table would drop its
    features (NaN) where the local engine computes zeros."""
    parts: dict[str, list[pa.RecordBatch]] = {name: [] for name in schemas}
    for batch in batches:
        kind = batch.column(batch.schema.get_field_index("_table"))
        for name, schema in schemas.items():
            mask = pc.equal(kind, name)
            if not pc.any(mask).as_py():
                continue
            parts[name].append(batch.select([f"{name}{_SEP}{c}" for c in schema.names])
                               .filter(mask))
    frames = {}
    for name, schema in schemas.items():
        got = parts.pop(name)
        stacked = pa.Table.from_batches(got) if got else None
        del got
        columns = []
        for i, field in enumerate(schema):
            if stacked is None:
                columns.append(pa.chunked_array([], type=field.type))
                continue
            column = stacked.column(i)
            columns.append(column if column.type == field.type else column.cast(field.type))
        del stacked
        table = pa.Table.from_arrays(columns, schema=schema)
        del columns
        # read_table's hand-over: each column freed as pandas takes it
        frames[name] = table.to_pandas(self_destruct=True, split_blocks=True)
        del table
    return frames


def _stacked(spark, tables: dict[str, SparkDataFrame]):
    """One Spark frame of earlier weeks' score rows (step 3's alerts): ``_table``,
    ``account_id`` and ``<table>__<column>`` text columns (a few columns per account)."""
    from pyspark.sql import functions as F

    from churnml.data.tables import TABLES

    parts = []
    for name, sdf in tables.items():
        spec = TABLES.get(name)
        time_columns = {"as_of"} | ({c.name for c in spec.columns if c.kind == "timestamp"}
                                    if spec is not None else set())
        cols = [F.lit(name).alias("_table"), F.col("account_id").cast("string").alias("account_id")]
        for c in sdf.columns:
            dtype = dict(sdf.dtypes)[c]
            value = F.col(c)
            if dtype == "bigint" and c in time_columns:  # nanoseconds (nanosAsLong)
                value = F.timestamp_micros(F.floor(value / 1000))
                dtype = "timestamp"
            if dtype.startswith("timestamp"):  # ISO text in UTC, parsed back as naive UTC
                value = F.date_format(value, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
            elif dtype == "date":
                value = F.date_format(value, "yyyy-MM-dd")
            cols.append(value.cast("string").alias(f"{name}{_SEP}{c}"))
        parts.append(sdf.select(*cols))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p, allowMissingColumns=True)
    return out


def _table_columns(columns: Sequence[str]) -> dict[str, list[str]]:
    """``{table: [column, ...]}`` of the stacked frame's ``<table>__<column>`` columns."""
    out: dict[str, list[str]] = {}
    for c in columns:
        if _SEP in c.lstrip("_"):  # not the _table / _shard markers
            table, column = c.split(_SEP, 1)
            out.setdefault(table, []).append(column)
    return out


def _unstack(pdf: pd.DataFrame, tables: Mapping[str, Sequence[str]]) -> dict[str, pd.DataFrame]:
    """The shard's rows of each earlier-week source (``_previous``, ``_history``), as text; a
    source with no rows in this shard is an empty frame with its columns."""
    frames = {}
    groups = dict(tuple(pdf.groupby("_table", sort=True))) if len(pdf) else {}
    for name, columns in tables.items():
        prefix = f"{name}{_SEP}"
        rows = groups.get(name)
        if rows is None:
            frames[name] = pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
            continue
        frame = rows[[prefix + c for c in columns]].rename(columns=lambda c: c[len(prefix):])
        frame = frame.reset_index(drop=True)
        frames[name] = frame.astype(object).where(frame.notna(), None)
    return frames


def _parse_scores(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Earlier-week rows that came through Spark as text, back to their types."""
    if frame is None or not len(frame):
        return None
    out = frame.copy()
    from churnml.data.validation import normalise_ids

    out["account_id"] = normalise_ids(out["account_id"])
    out["as_of"] = pd.to_datetime(out["as_of"]).astype("datetime64[ns]")
    for c in out.columns:
        if c not in ("account_id", "as_of", "health_tier"):
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out


# ---- step 1: features per shard ------------------------------------------------------------
def _shard_features(frames: dict[str, pd.DataFrame], as_of, source: str,
                    playbooks: Playbooks | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The shard's features at as_of and (with ``playbooks``) its compared features a week
    before (``churnml.scoring.compare.week_before``), both as the local engine builds them."""
    from churnml.data.io import validate_frames
    from churnml.features.build import build_features

    book, _ = validate_frames(frames, source=source)
    features = build_features(book, [as_of])
    before = book_week_before(book, as_of, playbooks) if playbooks is not None else None
    return features.sort_values("account_id", kind="stable").reset_index(drop=True), before


def feature_columns(spark, tables: Mapping[str, SparkDataFrame], stacked,
                    schemas: Mapping[str, pa.Schema], as_of,
                    sample_accounts: int = 25) -> list[tuple[str, str]]:
    """``[(feature, "double"|"string"), ...]``: the columns ``build_features`` gives this book,
    in its order, without ``account_id``/``as_of``.

    Which features exist depends only on which tables and columns the book has (and, for the
    extra ``accounts`` columns, whether they parse as numbers), so the driver runs
    ``validate_frames`` + ``build_features`` on the rows of a few accounts that have MRR
    history, with every other table present but empty."""
    from pyspark.sql import functions as F

    ids = [r[0] for r in tables["mrr_changes"].select(F.col("account_id").cast("string"))
           .where(F.col("account_id").isNotNull()).distinct().limit(sample_accounts).collect()]
    sample = (stacked.where(F.col("_table").isin("accounts", "mrr_changes")
                            & F.col("account_id").isin(ids)).toArrow())
    frames = _shard_tables(sample.to_batches(), schemas)
    features, _ = _shard_features(frames, as_of, source="Spark engine (feature schema sample)")
    out = []
    for name in features.columns:
        if name in ("account_id", "as_of"):
            continue
        out.append((name, "double" if features[name].dtype == np.float64 else "string"))
    return out


def _ddl(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"`{name}` {kind}" for name, kind in columns)


def _conform(features: pd.DataFrame, kinds: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """A shard's features with exactly the driver's columns and kinds.

    An extra ``accounts`` column is numeric when all its values parse as numbers; a shard
    whose values are all missing parses it as text: those all-missing columns are converted.
    A column that is text in one shard and numbers in another is refused (its values would
    differ from the local engine's)."""
    from churnml.errors import SchemaError, format_examples

    out = {"account_id": features["account_id"].astype(str).to_numpy(dtype=object)}
    for name, kind in kinds:
        if name not in features.columns:
            out[name] = np.full(len(features), np.nan if kind == "double" else None, dtype=object)
            continue
        column = features[name]
        is_number = column.dtype == np.float64
        if (kind == "double") != is_number and column.notna().any():
            raise SchemaError(
                f"accounts: column '{name}' is {'numbers' if is_number else 'text'} for some "
                f"accounts and {'text' if is_number else 'numbers'} for others "
                f"({column.notna().sum()} values, e.g. {format_examples(column.dropna().unique())}); "
                "make it one or the other")
        if kind == "double":
            out[name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")
        else:
            out[name] = column.astype(object).where(column.notna(), None).to_numpy(dtype=object)
    return pd.DataFrame(out, columns=["account_id", *[n for n, _ in kinds]])


def feature_schema(kinds: Sequence[tuple[str, str]], playbooks: Playbooks) -> list[tuple[str, str]]:
    """Step 1's output columns: ``_shard``, ``account_id``, the features (``kinds``), then
    ``_wb_<feature>`` for each compared feature a week before as_of."""
    return [("_shard", "bigint"), ("account_id", "string"), *kinds,
            *[(f"{_WEEK_BEFORE}{n}", "double") for n in compared_features(playbooks)]]


def make_feature_builder(as_of, schemas: Mapping[str, pa.Schema],
                         kinds: Sequence[tuple[str, str]], playbooks: Playbooks):
    """Step 1, the function ``applyInArrow`` runs per shard (Arrow record batches in and out):
    the shard's feature rows (:func:`feature_schema`'s columns, NaN where unknown)."""
    as_of = to_as_of(as_of)
    schemas = dict(schemas)
    kinds = list(kinds)
    compared = compared_features(playbooks)
    out_schema = pa.schema([(n, {"bigint": pa.int64(), "double": pa.float64()}.get(k, pa.string()))
                            for n, k in feature_schema(kinds, playbooks)])

    def build_shard(batches):
        batches = iter(batches)
        first = next(batches)  # a group has at least one row
        shard = first.column(first.schema.get_field_index("_shard"))[0].as_py()
        frames = _shard_tables(_chain(first, batches), schemas)
        del first
        features, before = _shard_features(frames, as_of, source=f"Spark shard {shard}",
                                           playbooks=playbooks)
        del frames
        out = _conform(features, kinds)
        del features
        out.insert(0, "_shard", shard)
        before = before.set_index("account_id") if before is not None else pd.DataFrame()
        for name in compared:
            values = before[name] if name in before.columns else pd.Series(dtype="float64")
            out[f"{_WEEK_BEFORE}{name}"] = values.reindex(out["account_id"]).to_numpy("float64")
        yield from pa.Table.from_pandas(out, schema=out_schema, preserve_index=False).to_batches()

    # pyspark picks the record-batch iterator form of applyInArrow from the type hints
    build_shard.__annotations__ = {"batches": Iterator[pa.RecordBatch],
                                   "return": Iterator[pa.RecordBatch]}
    return build_shard


def _chain(first, rest):
    yield first
    yield from rest


# ---- step 2: the models through MLflow's Spark UDF -----------------------------------------
def registered_model_uris(models: Mapping[str, object]) -> dict[str, tuple[str, str]]:
    """``{outcome: (models:/churnml-<outcome>/<version>, version)}`` of the versions to score.

    ``models``: outcome -> what ``run_job`` resolved (a version string, or anything with
    ``.version``, e.g. a ``TargetModel``). Pinning the number (not ``@champion``) makes the
    UDF score with the version the output records, even if someone promotes another version
    during the run."""
    out = {}
    for name, model in models.items():
        version = str(getattr(model, "version", model))
        out[name] = (f"models:/{get_outcome(name).model_name}/{version}", version)
    return out


def time_to_event_uri(model) -> tuple[str, str]:
    """``(models:/churnml-time-to-event/<version>, version)`` of the time-to-event version to
    score (a version string or anything with ``.version``), pinned like the outcomes'."""
    version = str(getattr(model, "version", model))
    return f"models:/{model_name_of(TIME_TO_EVENT)}/{version}", version


def model_udf(spark, model_uri: str):
    """``mlflow.pyfunc.spark_udf`` of a registered churnml pyfunc: ``struct<probability double,
    reasons string>`` per row, run in the executors' own Python environment.

    The driver downloads the model once; Spark ships it to the executors (local mode: they
    read the driver's copy), so the executors do not call the MLflow server."""
    # only churnml.models.registry talks to MLflow (it configures the tracking store)
    return registry.spark_udf(spark, model_uri, UDF_RESULT_TYPE, params={"top_k": TOP_K})


def udf_inputs(udf, kinds: Sequence[tuple[str, str]]) -> list[str]:
    """The model's input columns (its signature) that the book's features have; a model
    feature the book cannot build is passed as missing, as by the local engine."""
    schema = udf.metadata.get_input_schema()
    names = schema.input_names() if schema is not None else [n for n, _ in kinds]
    have = {n for n, _ in kinds}
    return [n for n in names if n in have]


# ---- step 3: the output rows per shard -----------------------------------------------------
class PrecomputedModel:
    """What ``score_frame`` needs of a model, answered from the Spark UDF's output.

    ``predict_with_reasons(features, top_k)`` returns, for the rows of ``features`` (matched
    by ``account_id``), the probabilities and reasons the registered pyfunc computed in step 2;
    ``version`` is the registered version that computed them. Raises when asked for an
    account it has no score for, or for a different number of reasons than were computed."""

    def __init__(self, version: str, account_ids, probabilities, reasons_json,
                 top_k: int = TOP_K) -> None:
        self.version = str(version)
        self.top_k = top_k
        self._ids = _unique_ids(account_ids)
        self._proba = np.asarray(probabilities, dtype="float64")
        self._reasons = list(reasons_json)

    def __repr__(self) -> str:
        return f"PrecomputedModel(version={self.version!r}, accounts={len(self._ids)})"

    def _positions(self, features: pd.DataFrame) -> np.ndarray:
        return _positions(self._ids, features)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self._proba[self._positions(features)]

    def predict_with_reasons(self, features: pd.DataFrame, top_k: int = TOP_K):
        if top_k != self.top_k:
            raise ValueError(f"the Spark UDF computed {self.top_k} reasons per account; "
                             f"{top_k} were asked for")
        pos = self._positions(features)
        reasons = [json.loads(self._reasons[i]) if self._reasons[i] is not None else []
                   for i in pos]
        return self._proba[pos], reasons

    def explain(self, features: pd.DataFrame, top_k: int = TOP_K):
        return self.predict_with_reasons(features, top_k)[1]


def _unique_ids(account_ids) -> pd.Index:
    ids = pd.Index(pd.Series(account_ids, dtype=object).astype(str))
    if ids.has_duplicates:
        raise ValueError(f"duplicate account ids in the UDF output: "
                         f"{list(ids[ids.duplicated()][:5])}")
    return ids


def _positions(ids: pd.Index, features: pd.DataFrame) -> np.ndarray:
    """Where each row of ``features`` (by ``account_id``) is in ``ids``; raises for an account
    the UDF gave nothing for."""
    wanted = features["account_id"].astype(str).to_numpy(dtype=object)
    pos = ids.get_indexer(pd.Index(wanted))
    if (pos < 0).any():
        from churnml.errors import format_examples

        raise ValueError(f"no Spark UDF score for {(pos < 0).sum()} accounts, e.g. "
                         f"{format_examples(wanted[pos < 0])}")
    return pos


class PrecomputedTimeToEvent:
    """What ``score_frame`` needs of the time-to-event model (``TimeToEventModel``), answered
    from its Spark UDF's output: ``predict(features)`` returns, for the rows of ``features``
    (matched by ``account_id``), the columns the registered pyfunc computed in step 2, and
    ``timing_reasons`` its reasons (``reasons``: outcome -> JSON text per account; None for a
    version registered before the timing reasons: no reasons)."""

    def __init__(self, version: str, account_ids, columns: pd.DataFrame,
                 reasons: Mapping[str, Sequence[str | None]] | None = None) -> None:
        self.version = str(version)
        self._ids = _unique_ids(account_ids)
        self._values = columns.reset_index(drop=True).astype("float64")
        self._reasons = None if reasons is None else {k: list(v) for k, v in reasons.items()}

    def timing_reasons(self, features: pd.DataFrame, top_k: int = TOP_K, *, catalog=None,
                       columns=None) -> dict[str, list[list[dict]]]:
        """The UDF's timing reasons of the rows of ``features`` (worded by the pyfunc with the
        default catalog; ``catalog`` and ``columns`` are not needed here)."""
        if top_k != TOP_K:
            raise ValueError(f"the Spark UDF computed {TOP_K} timing reasons per account; "
                             f"{top_k} were asked for")
        pos = _positions(self._ids, features)
        from churnml.models.survival import CLASSES

        if self._reasons is None:
            return {name: [[] for _ in pos] for name in CLASSES[1:]}
        return {name: [json.loads(values[i]) if values[i] is not None else [] for i in pos]
                for name, values in self._reasons.items()}

    def __repr__(self) -> str:
        return f"PrecomputedTimeToEvent(version={self.version!r}, accounts={len(self._ids)})"

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        return self._values.iloc[_positions(self._ids, features)].reset_index(drop=True)


def output_ddl(dimensions: list[str]) -> str:
    """Spark schema of a shard's result: scalars typed, nested columns as JSON text."""
    schema = arrow_schema(dimensions)
    parts = []
    for f in schema:
        if f.name in _NESTED or f.name == "as_of":
            kind = "string"
        elif str(f.type) == "double":
            kind = "double"
        elif str(f.type) == "int32":
            kind = "int"
        elif str(f.type) == "bool":
            kind = "boolean"
        else:
            kind = "string"
        parts.append(f"`{f.name}` {kind}")
    if [p.split("`")[1] for p in parts] != output_columns(dimensions):
        raise ValueError("arrow_schema and output_columns disagree on the output columns")
    return ", ".join(parts)


def _features_frame(rows: pd.DataFrame, as_of, kinds) -> pd.DataFrame:
    """Step 1's rows back to ``build_features``' frame: same columns, order and dtypes
    (float64 numbers, ``str`` text with NaN for missing, as_of datetime64[ns])."""
    rows = rows.sort_values("account_id", kind="stable").reset_index(drop=True)
    n = len(rows)
    columns: dict[str, object] = {
        "account_id": pd.array(rows["account_id"].astype(str).to_numpy(dtype=object), dtype="str"),
        "as_of": np.full(n, np.datetime64(as_of.to_datetime64(), "ns")),
    }
    for name, kind in kinds:
        values = rows[name]
        if kind == "double":
            columns[name] = pd.to_numeric(values).to_numpy(dtype="float64")
        else:
            columns[name] = pd.array(values.astype(object).where(values.notna(), None)
                                     .to_numpy(dtype=object), dtype="str")
    return pd.DataFrame(columns)


def make_shard_scorer(as_of, health, dimensions, playbooks, feature_dimensions,
                      kinds: Sequence[tuple[str, str]], versions: Mapping[str, str],
                      earlier_columns: Mapping[str, Sequence[str]],
                      time_to_event_version: str | None = None,
                      time_to_event_reasons: bool = True):
    """Step 3, the function ``applyInPandas`` runs per shard: ``score_frame`` on the shard's
    features with the UDF's probabilities and reasons (:class:`PrecomputedModel`) and, with
    ``time_to_event_version``, the time-to-event UDF's columns (:class:`PrecomputedTimeToEvent`;
    ``time_to_event_reasons``: the UDF gave its timing reasons too)."""
    as_of = to_as_of(as_of)
    kinds = list(kinds)
    versions = dict(versions)
    earlier_columns = {n: list(c) for n, c in earlier_columns.items()}

    def score_shard(pdf: pd.DataFrame) -> pd.DataFrame:
        is_feature = (pdf["_table"] == _FEATURES).to_numpy()
        rows = pdf[is_feature].sort_values("account_id", kind="stable").reset_index(drop=True)
        features = _features_frame(rows, as_of, kinds)
        models = {t: PrecomputedModel(versions[t], rows["account_id"],
                                      rows[f"_{t}_probability"], rows[f"_{t}_reasons"])
                  for t in versions}
        time_to_event = None if time_to_event_version is None else PrecomputedTimeToEvent(
            time_to_event_version, rows["account_id"],
            pd.DataFrame({c: pd.to_numeric(rows[f"{_TTE}{c}"]) for c in _TTE_FLOATS}),
            {o.name: rows[f"{_TTE}{o.timing_reasons_column}"].tolist() for o in OUTCOMES}
            if time_to_event_reasons else None)
        before_cols = [c for c in rows.columns if str(c).startswith(_WEEK_BEFORE)]
        week_before = rows[["account_id", *before_cols]].rename(
            columns=lambda c: c[len(_WEEK_BEFORE):] if c.startswith(_WEEK_BEFORE) else c)
        week_before["account_id"] = week_before["account_id"].astype(str)
        for c in week_before.columns[1:]:
            week_before[c] = pd.to_numeric(week_before[c], errors="coerce").astype("float64")
        earlier = _unstack(pdf[~is_feature], earlier_columns) if earlier_columns else {}
        previous = _parse_scores(earlier.get("_previous"))
        history = _parse_scores(earlier.get("_history"))
        scored = score_frame(features, models, health, previous=previous, history=history,
                             week_before=week_before, playbooks=playbooks,
                             feature_dimensions=feature_dimensions, time_to_event=time_to_event)
        for c in _NESTED:
            scored[c] = [json.dumps(v, allow_nan=False) for v in scored[c]]
        scored["as_of"] = scored["as_of"].dt.strftime("%Y-%m-%d")
        return scored

    return score_shard


# ---- the job -------------------------------------------------------------------------------
def score_book_spark(
    data_dir: str | Path,
    as_of,
    out_dir: str | Path,
    models: Mapping[str, object],
    health,
    *,
    shards: int = 8,
    shard_accounts: int | None = SHARD_ACCOUNTS,
    history_weeks: int = DEFAULT_HISTORY_WEEKS,
    playbooks=None,
    feature_dimensions=None,
    lock: bool = True,
    spark=None,
    batch_rows: int = 25_000,
    complete: bool = True,
    time_to_event: object | None = None,
) -> WeeklyResult:
    """Score the book in ``data_dir`` on Spark into ``OUT/as_of=DATE/scores.parquet`` (the
    local engine's file; see the module docstring).

    ``models``: outcome -> the registered version to score with (a version string or anything
    with ``.version``) for the outcomes that have one; they run through
    ``mlflow.pyfunc.spark_udf`` on ``models:/churnml-<outcome>/<version>``. ``health``: a ``HealthScore``. ``shards``: the least number
    of account shards (one Spark task each in steps 1 and 3); a book with more than
    ``shards * shard_accounts`` accounts gets more (:func:`shard_count`; None: exactly
    ``shards``). ``lock=False`` when the caller
    holds :class:`OutputLock`. Spark failures raise :class:`SparkEngineError` (or the churnml
    error an executor raised, e.g. ``SchemaError``), naming the step. Like the local engine,
    the partition's ``_SUCCESS`` marker is removed first and, with ``complete=True``, written
    last; earlier partitions without a valid marker are skipped. ``time_to_event``: the
    ``churnml-time-to-event`` version to score with (a version string or anything with
    ``.version``; its columns are null without it), through its registered pyfunc's UDF.
    """
    from churnml.data.io import find_table_files

    if shards < 1:
        raise UsageError(f"The 'shards' parameter must be a positive integer. Got {shards}.")
    as_of = to_as_of(as_of)
    out_dir = Path(out_dir)
    playbooks = playbooks if playbooks is not None else load_playbooks()
    if feature_dimensions is None:
        feature_dimensions = catalog_dimensions()
    uris = registered_model_uris(models)
    tte = None if time_to_event is None else time_to_event_uri(time_to_event)
    spark = spark or spark_session()
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    partition = partition_dir(out_dir, as_of)
    stage: dict[str, float] = {}
    with (OutputLock(out_dir) if lock else contextlib.nullcontext()):
        t0 = time.perf_counter()
        replaced = begin_partition(partition, stale=(REPORT_NAME,))
        skipped = describe_skipped(incomplete_partitions(out_dir, before=as_of))
        files, _ = find_table_files(data_dir)
        with spark_errors("reading the book"):
            tables = {name: _read(spark, path) for name, path in sorted(files.items())}
        if "mrr_changes" not in tables or "accounts" not in tables:
            from churnml.errors import SchemaError

            raise SchemaError(f"{data_dir}: the accounts and mrr_changes tables are required "
                              f"(found {sorted(tables) or 'no tables'})")
        earlier = [(d, p) for d, p in list_partitions(out_dir) if d < as_of]
        previous_as_of = None
        sources = dict(tables)
        if earlier:
            previous_as_of, last = earlier[-1]
            cols = ["account_id", "as_of", "health_score", "health_tier"]
            with spark_errors("reading last week's partition"):
                sources["_previous"] = _read(spark, last / SCORES_NAME).select(*cols)
                start = as_of - pd.Timedelta(weeks=history_weeks)
                paths = [str(p / SCORES_NAME) for d, p in earlier if d >= start]
                sources["_history"] = spark.read.parquet(*paths).select(*cols)
        with spark_errors("counting the accounts"):
            shards = shard_count(tables["accounts"].count(), shards, shard_accounts)
        schemas = {name: table_schema(files[name], sdf) for name, sdf in tables.items()}
        shard_of = F.pmod(F.xxhash64("account_id"), F.lit(shards))
        book_rows = _typed_stack(tables).withColumn("_shard", shard_of)
        earlier_sources = {n: sdf for n, sdf in sources.items() if n in _EARLIER}
        earlier_columns: dict[str, list[str]] = {}
        if earlier_sources:
            stacked = _stacked(spark, earlier_sources).withColumn("_shard", shard_of)
            earlier_columns = _table_columns(stacked.columns)
        spark.conf.set("spark.sql.shuffle.partitions", str(shards))  # one task per shard

        # step 1: features per shard, with the schema the builders give this book
        with spark_errors("learning the feature columns from a sample of accounts"):
            kinds = feature_columns(spark, tables, book_rows, schemas, as_of)
        builder = make_feature_builder(as_of, schemas, kinds, playbooks)
        features = book_rows.groupBy("_shard").applyInArrow(
            builder, schema=_ddl(feature_schema(kinds, playbooks)))

        # step 2: each outcome's registered pyfunc through mlflow.pyfunc.spark_udf
        for target, (uri, _version) in uris.items():
            with spark_errors(f"loading {uri} for the Spark UDF"):
                udf = model_udf(spark, uri)
            inputs = udf_inputs(udf, kinds)
            scored_col = udf(F.struct(*[F.col(f"`{c}`") for c in inputs]))
            features = (features.withColumn(f"_{target}", scored_col)
                        .withColumn(f"_{target}_probability", F.col(f"_{target}.probability"))
                        .withColumn(f"_{target}_reasons", F.col(f"_{target}.reasons"))
                        .drop(f"_{target}"))
        tte_reasons = False
        if tte is not None:  # the time-to-event pyfunc: its floats and timing reasons
            from churnml.models.survival_explain import PYFUNC_REASONS_KEY

            with spark_errors(f"loading {tte[0]} for the Spark UDF"):
                tte_reasons = bool(registry.model_metadata(tte[0]).get(PYFUNC_REASONS_KEY))
                udf = registry.spark_udf(spark, tte[0], time_to_event_result_type(tte_reasons))
            scored_col = udf(F.struct(*[F.col(f"`{c}`") for c in udf_inputs(udf, kinds)]))
            features = features.withColumn("_tte", scored_col)
            for c in _TTE_FLOATS + (_TTE_REASONS if tte_reasons else ()):
                features = features.withColumn(f"{_TTE}{c}", F.col(f"_tte.`{c}`"))
            features = features.drop("_tte")

        # step 3: score_frame per shard with the UDF's values; earlier weeks' rows join by shard
        features = features.withColumn("_table", F.lit(_FEATURES))
        step3 = features
        if earlier_columns:
            keep = ["_table", "account_id", "_shard"] + [f"{n}{_SEP}{c}" for n, cs in
                                                         earlier_columns.items() for c in cs]
            step3 = features.unionByName(stacked.select(*keep), allowMissingColumns=True)
        dimensions = list(health.dimension_names)
        scorer = make_shard_scorer(as_of, health, dimensions, playbooks, feature_dimensions,
                                   kinds, {t: v for t, (_u, v) in uris.items()}, earlier_columns,
                                   time_to_event_version=None if tte is None else tte[1],
                                   time_to_event_reasons=tte_reasons)
        scored = step3.groupBy("_shard").applyInPandas(scorer, schema=output_ddl(dimensions))
        # computed once: sorting samples the rows first, then reads them again
        scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
        schema = arrow_schema(dimensions)

        def _to_table(rows, columns):
            frame = pd.DataFrame.from_records(rows, columns=columns)
            for c in _NESTED:
                frame[c] = [json.loads(v) for v in frame[c]]
            frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[ns]")
            return to_arrow(frame, schema)

        def batches():
            rows = []
            columns = None
            for row in scored.orderBy("account_id").toLocalIterator(prefetchPartitions=True):
                if columns is None:
                    columns = list(row.__fields__)
                rows.append(tuple(row))
                if len(rows) >= batch_rows:
                    yield _to_table(rows, columns)
                    rows = []
            if rows:
                yield _to_table(rows, columns)

        try:
            with spark_errors("building features and scoring the shards"):
                # this week's queue ranks the whole book per owner: it is decided on the
                # driver once every shard's output rows are collected (the rows, not the
                # features), then written
                week = queue_tables(list(batches()), playbooks,
                                    uplift=play_effects.usable_uplift("saved", out_dir,
                                                                    as_of))
                rows = write_parquet_atomic(partition / SCORES_NAME, iter(week), schema)
        finally:
            scored.unpersist()
        stage["spark_total"] = time.perf_counter() - t0
        if complete:
            mark_complete(partition, as_of, rows, [SCORES_NAME])
    return WeeklyResult(as_of=as_of, partition=partition, scores_path=partition / SCORES_NAME,
                        rows=rows, previous_as_of=previous_as_of, stage_seconds=stage,
                        skipped_partitions=skipped, replaced_incomplete=replaced)
