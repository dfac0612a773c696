"""The Spark engine of ``churnml score --engine spark``: the local engine's whole pipeline per
account shard on the executors, this week's queue in one task, the output written in account
order without the driver holding the rows.

1. **The shards** (``groupBy(_shard).applyInArrow``, record batches in and out). Spark reads
   the book's table files and last weeks' score partitions (each table's columns prefixed
   ``<table>__`` with their own types) and hashes accounts into shards: at least ``shards``, more for a
   large book, so that a shard holds at most ``shard_accounts`` accounts (:func:`shard_count`).
   The tasks that read a table split its rows by shard and write each shard's rows as one
   compressed Arrow stream (:func:`packed_table`), so the shuffle moves a few large values
   per table and shard. Per shard the packets are opened (:func:`unpacked`) and each
   table is cast back to the Arrow schema of its file (nanosecond timestamps, which Spark
   reads as longs, become timestamps again, exactly) and handed to pandas as ``load_book``
   reads it (:func:`_shard_tables`). Then the local engine's code, unchanged:
   ``validate_frames``, ``build_features``, the compared features a week before
   (``churnml.scoring.compare``) and ``score_frame`` with the champions and the time-to-event
   model (:func:`make_shard_scorer`). The models are the local engine's objects
   (``registry.load_version`` / ``load_time_to_event``: LightGBM text and JSON), loaded once
   on the driver and shipped once as a Spark broadcast; each Python worker unpickles them
   once and keeps them for every later shard (:func:`shipped_models`). A shard's output rows
   (nested columns as JSON text) are written by Spark to a scratch folder next to the
   output; nothing comes back to the driver but per-stage seconds (an accumulator).
2. **This week's queue** ranks the whole book per owner (:func:`churnml.scoring.queue
   .queue_columns`, the local engine's code): one task reads the queue's input columns of
   every row (a few per account, not the rows) and returns the queue columns.
3. **The output**: the rows joined with their queue columns, sorted by account (range
   partitions), each partition written by its task as a typed Arrow part (the local writer's
   schema); the driver streams the parts in order into ``scores.parquet`` (one row group at a
   time, atomic rename) and removes the scratch folder.

Every per-account number is computed by the same code on the same inputs as the local engine,
which the parity test checks (probabilities to 1e-9, the whole table identical). The driver's
memory does not grow with the book. See docs/operations.md ("Running on a Spark cluster") and
benchmarks/README.md ("Spark engine on a standalone cluster").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnml.errors import ChurnMLError, UsageError
from churnml.features.windows import to_as_of
from churnml.jobs import effects as play_effects
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
    rows_of_accounts,
    to_arrow,
    write_parquet_atomic,
)
from churnml.models import registry
from churnml.scoring.actions import Playbooks, load_playbooks
from churnml.scoring.compare import week_before as book_week_before
from churnml.scoring.frame import catalog_dimensions, score_frame
from churnml.scoring.queue import INPUT_COLUMNS, queue_columns, uplift_inputs
from churnml.scoring.schema import arrow_schema, declared_columns, output_columns

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame

#: the output columns with nested values (carried through Spark as JSON text)
_NESTED = tuple(name for name, col, _ in declared_columns([])
                if col.type in ("reasons", "strings", "action"))
_SEP = "__"
_EARLIER = ("_previous", "_history")  # last weeks' score rows (the alerts), stacked as tables
_EARLIER_COLUMNS = ["account_id", "as_of", "health_score", "health_tier"]  # load_earlier_weeks'
#: the next-best-action fields the queue reads, carried beside the JSON as ``_q_<field>``
_ACTION_FIELDS = ("playbook", "owner", "severity", "reason_feature")
_Q = "_q_"
#: the queue task's output columns (Spark DDL)
_QUEUE_DDL = ("account_id string, queue_status string, queue_rank int, holdout boolean, "
              "queue_reason string, expected_value double, effect_source string")


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


#: the most rows a packing task holds before it writes one packet per shard
PACK_ROWS = 1_000_000
#: Spark schema of the packed book (one row per table, shard and packing flush)
PACKED_DDL = "_shard bigint, _table string, _packet binary"


def packed_table(name: str, sdf, shard_of):
    """One table of the book as packets: its rows split by shard inside each task and each
    shard's rows written as one compressed Arrow IPC stream (``_packet``), so that the shuffle
    to the shards moves a few large values per table and shard instead of every row with every
    other table's columns null (the JVM's row-to-Arrow conversion of that wide frame was most of
    a shard's time). Columns are named ``<table>__<column>`` with their own Spark types."""
    from pyspark.sql import functions as F

    cols = [F.col(c).alias(f"{name}{_SEP}{c}") for c in sdf.columns]
    return sdf.select(*cols, shard_of.alias("_shard")).mapInArrow(
        make_packer(name), PACKED_DDL)


def make_packer(name: str, max_rows: int = PACK_ROWS):
    """The ``mapInArrow`` function of :func:`packed_table`: batches of one table (its
    prefixed columns and ``_shard``) in, ``(_shard, _table, _packet)`` rows out."""

    def flush(held: list[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        table = pa.Table.from_batches(held)
        shard = table.column("_shard")
        table = table.drop_columns(["_shard"])
        order = pc.sort_indices(shard)
        shard = shard.take(order).to_numpy()
        table = table.take(order)
        cuts = np.flatnonzero(np.diff(shard)) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [len(shard)]])
        shards, packets = [], []
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        for a, b in zip(starts, ends):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
                writer.write_table(table.slice(a, b - a))
            shards.append(int(shard[a]))
            packets.append(sink.getvalue().to_pybytes())
        yield pa.RecordBatch.from_pydict(
            {"_shard": shards, "_table": [name] * len(shards), "_packet": packets},
            schema=pa.schema([("_shard", pa.int64()), ("_table", pa.string()),
                              ("_packet", pa.binary())]))

    def pack(batches):
        held, rows = [], 0
        for batch in batches:
            if not batch.num_rows:
                continue
            held.append(batch)
            rows += batch.num_rows
            if rows >= max_rows:
                yield from flush(held)
                held, rows = [], 0
        if held:
            yield from flush(held)

    return pack


def unpacked(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """A shard's packets (:data:`PACKED_DDL` batches) back to record batches of the stacked
    form :func:`_shard_tables` splits: ``_table`` and the table's ``<table>__<column>``."""
    for batch in batches:
        names = batch.column(batch.schema.get_field_index("_table")).to_pylist()
        packets = batch.column(batch.schema.get_field_index("_packet"))
        for i, name in enumerate(names):
            with pa.ipc.open_stream(packets[i].as_buffer()) as reader:
                for part in reader:
                    if part.num_rows:
                        yield part.append_column("_table", pa.array([name] * part.num_rows))


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



def _file_schema(path: Path, columns: list[str]) -> pa.Schema:
    """The Arrow schema of ``columns`` of a parquet file, with its metadata (how
    ``pd.read_parquet(path, columns=...)`` reads them)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    return pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)


# ---- the models: loaded once on the driver, once per Python worker ---------------------------
#: unpickled models per Python worker process, by the digest of what the driver shipped
_WORKER_MODELS: dict[str, Any] = {}


def load_models(models: Mapping[str, object], time_to_event: object | None):
    """``({outcome: model}, time-to-event model or None)`` as the local engine scores with:
    a value with a ``version`` and the model's methods is used as it is; a version string is
    loaded from the registry (``registry.load_version`` / ``load_time_to_event``: LightGBM
    text and JSON, no code from the registry runs)."""
    loaded = {name: m if hasattr(m, "predict_with_reasons")
              else registry.load_version(name, str(getattr(m, "version", m)))
              for name, m in models.items()}
    tte = None
    if time_to_event is not None:
        tte = time_to_event if hasattr(time_to_event, "predict") else \
            registry.load_time_to_event(str(getattr(time_to_event, "version", time_to_event)))
    return loaded, tte


def shipped_models(spark, models: Mapping[str, object], time_to_event: object | None):
    """A handle the shards resolve to the loaded models: ``(digest, broadcast)``.

    The driver pickles the models once (its own objects, loaded by :func:`load_models`) into
    a Spark broadcast: each executor fetches it once, and each Python worker unpickles it the
    first time a shard asks (:func:`worker_models`), then keeps it for every later shard (the
    workers are reused: ``spark.python.worker.reuse``, on by default)."""
    blob = pickle.dumps(load_models(models, time_to_event), protocol=pickle.HIGHEST_PROTOCOL)
    digest = hashlib.sha256(blob).hexdigest()
    return digest, spark.sparkContext.broadcast(blob)


def worker_models(handle) -> tuple[dict[str, Any], Any]:
    """The models of a :func:`shipped_models` handle, unpickled once per Python worker."""
    digest, broadcast = handle
    got = _WORKER_MODELS.get(digest)
    if got is None:
        _WORKER_MODELS.clear()  # one run's models at a time
        got = _WORKER_MODELS[digest] = pickle.loads(broadcast.value)
    return got


# ---- step 1: the whole pipeline per shard ---------------------------------------------------
def transport_ddl(dimensions: list[str]) -> str:
    """Spark schema of a shard's output rows: the output columns (scalars typed, nested
    columns as JSON text, as_of as ``YYYY-MM-DD``) then the queue's action fields."""
    return output_ddl(dimensions) + "".join(f", `{_Q}{f}` string" for f in _ACTION_FIELDS)


def _transport(table: pa.Table) -> pa.Table:
    """A shard's typed output rows (the local writer's Arrow schema) as Spark carries them:
    nested columns as JSON text, as_of as a date string, plus ``_q_<field>`` of the next best
    action (what the queue reads, without parsing JSON)."""
    columns, names = [], []
    action = table.column("next_best_action").combine_chunks()
    for name, column in zip(table.column_names, table.columns):
        if name in _NESTED:
            column = pa.array([json.dumps(v, allow_nan=False) for v in column.to_pylist()],
                              type=pa.string())
        elif name == "as_of":
            column = pc.strftime(column, format="%Y-%m-%d")
        elif pa.types.is_large_string(column.type):
            column = column.cast(pa.string())
        columns.append(column)
        names.append(name)
    for field in _ACTION_FIELDS:
        columns.append(action.field(field).cast(pa.string()))
        names.append(f"{_Q}{field}")
    return pa.Table.from_arrays(columns, names=names)


class _Clock:
    """Seconds per stage of a shard's work, added to a Spark accumulator (a dict)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def seconds_accumulator(spark):
    """A Spark accumulator of ``{stage: seconds}`` dicts (added key by key)."""
    from pyspark.accumulators import AccumulatorParam

    class _Seconds(AccumulatorParam):
        def zero(self, value):
            return {}

        def addInPlace(self, a, b):
            for key, seconds in b.items():
                a[key] = a.get(key, 0.0) + seconds
            return a

    return spark.sparkContext.accumulator({}, _Seconds())


def make_shard_scorer(as_of, schemas: Mapping[str, pa.Schema], models_handle, health,
                      playbooks: Playbooks, feature_dimensions, dimensions: list[str],
                      seconds=None):
    """Step 1, the function ``applyInArrow`` runs per shard (Arrow record batches in and out):
    the shard's output rows as the local engine computes them (:func:`transport_ddl`).

    ``schemas``: each stacked table's Arrow schema (the book's tables and ``_previous`` /
    ``_history``, last weeks' score rows); ``models_handle``: :func:`shipped_models` (or a
    ``(models, time_to_event)`` pair, used as it is); ``seconds``: an accumulator of the
    seconds per stage (:func:`seconds_accumulator`), or None."""
    as_of = to_as_of(as_of)
    schemas = dict(schemas)
    schema = arrow_schema(list(dimensions))

    def score_shard(batches):
        from churnml.data.io import validate_frames
        from churnml.features.build import build_features

        clock = _Clock()
        with clock("shard_read"):
            batches = iter(batches)
            first = next(batches)  # a group has at least one row
            shard = first.column(first.schema.get_field_index("_shard"))[0].as_py()
            frames = _shard_tables(unpacked(_chain(first, batches)), schemas)
            del first
        previous = frames.pop("_previous", None)
        history = frames.pop("_history", None)
        if previous is not None:  # load_earlier_weeks' order: by week, then account
            previous = previous.sort_values("account_id", kind="stable").reset_index(drop=True)
            history = history.sort_values(["as_of", "account_id"], kind="stable") \
                .reset_index(drop=True)
        with clock("validate"):
            book, _ = validate_frames(frames, source=f"Spark shard {shard}")
            del frames
        with clock("features"):
            features = build_features(book, [as_of])
        with clock("week_before"):
            before = book_week_before(book, as_of, playbooks)
        del book
        features = features.sort_values("account_id", kind="stable").reset_index(drop=True)
        with clock("models_load"):
            models, time_to_event = (models_handle if isinstance(models_handle[0], dict)
                                     else worker_models(models_handle))
        ids = features["account_id"].astype(str).to_numpy()
        scored = score_frame(features, models, health,
                             previous=rows_of_accounts(previous, ids),
                             history=rows_of_accounts(history, ids),
                             week_before=before, playbooks=playbooks,
                             feature_dimensions=feature_dimensions, timer=clock,
                             time_to_event=time_to_event)
        del features, before
        with clock("to_arrow"):
            table = to_arrow(scored, schema)
            del scored
        with clock("transport"):
            out = _transport(table)
        if seconds is not None:
            seconds.add({f"shard:{k}": v for k, v in clock.seconds.items()} | {"shard:count": 1})
        yield from out.to_batches()

    # pyspark picks the record-batch iterator form of applyInArrow from the type hints
    score_shard.__annotations__ = {"batches": Iterator[pa.RecordBatch],
                                   "return": Iterator[pa.RecordBatch]}
    return score_shard


def _chain(first, rest):
    yield first
    yield from rest


# ---- step 2: this week's queue over the whole book ------------------------------------------
def queue_input_columns(uplift) -> list[str]:
    """The columns of step 1's rows the queue task reads."""
    plain = [c if c not in _ACTION_FIELDS else f"{_Q}{c}" for c in INPUT_COLUMNS]
    return list(dict.fromkeys([*plain, "effect_source", *uplift_inputs(uplift)]))


def make_queue_task(playbooks: Playbooks, uplift):
    """Step 2, the function of the one task that decides this week's queue: the queue's
    input columns of every row in, ``account_id`` and the queue columns out
    (:func:`churnml.scoring.queue.queue_columns`)."""

    def queue_task(batches):
        table = pa.Table.from_batches(list(batches))
        order = pc.sort_indices(table, sort_keys=[("account_id", "ascending")])
        table = table.take(order)
        data = {}
        for c in (*INPUT_COLUMNS, "effect_source"):
            source = f"{_Q}{c}" if c in _ACTION_FIELDS else c
            data[c] = table.column(source).to_numpy(zero_copy_only=False)
        columns = {c: table.column(c).to_numpy(zero_copy_only=False)
                   for c in uplift_inputs(uplift) if c in table.column_names}
        del table
        queue, _written = queue_columns(pd.DataFrame(data), columns, playbooks, uplift)
        def plain(values):  # queue_tables' hand-over: missing as None
            values = pd.Series(values, dtype=object)
            return values.where(values.notna(), None).tolist()

        out = pa.table({
            "account_id": pa.array(data["account_id"], type=pa.string()),
            "queue_status": pa.array(plain(queue["queue_status"]), type=pa.string()),
            "queue_rank": pa.array(plain(queue["queue_rank"]), type=pa.int32()),
            "holdout": pa.array(plain(queue["holdout"]), type=pa.bool_()),
            "queue_reason": pa.array(plain(queue["queue_reason"]), type=pa.string()),
            "expected_value": pa.array(plain(queue["expected_value"]), type=pa.float64()),
            "effect_source": pa.array(plain(queue["effect_source"]), type=pa.string()),
        })
        yield from out.to_batches()

    queue_task.__annotations__ = {"batches": Iterator[pa.RecordBatch],
                                  "return": Iterator[pa.RecordBatch]}
    return queue_task


# ---- step 3: the output in account order ----------------------------------------------------
def typed_rows(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Rows as Spark carries them (:func:`_transport`) back to the local writer's ``schema``:
    JSON text to nested values, the date string to as_of, each scalar cast to its type."""
    columns = []
    for field in schema:
        column = table.column(field.name)
        if field.name in _NESTED:
            values = [json.loads(v) if v is not None else None for v in column.to_pylist()]
            columns.append(pa.array(values, type=field.type))
        elif field.name == "as_of":
            columns.append(pc.strptime(column, format="%Y-%m-%d", unit="ns").cast(field.type))
        else:
            columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def make_part_writer(folder: str, schema: pa.Schema):
    """Step 3, per sorted partition: its rows written to ``folder/part-<partition>.parquet``
    in the local writer's schema; returns ``(part, rows)``."""

    def write_part(batches):
        import pyarrow.parquet as pq
        from pyspark import TaskContext

        part = TaskContext.get().partitionId()
        path = Path(folder) / f"part-{part:06d}.parquet"
        rows = 0
        writer = None
        try:
            for batch in batches:
                if not batch.num_rows:
                    continue
                table = typed_rows(pa.Table.from_batches([batch]), schema)
                if writer is None:
                    writer = pq.ParquetWriter(str(path), schema, compression="zstd")
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        yield pa.RecordBatch.from_pydict({"part": [part], "rows": [rows]},
                                         schema=pa.schema([("part", pa.int64()),
                                                           ("rows", pa.int64())]))

    return write_part


def _parts(folder: Path, written: list[tuple[int, int]], batch_rows: int) -> Iterator[pa.Table]:
    """The parts' rows in partition order, ``batch_rows`` at a time (the driver holds one)."""
    import pyarrow.parquet as pq

    for part, rows in sorted(written):
        if not rows:
            continue
        with pq.ParquetFile(folder / f"part-{part:06d}.parquet") as handle:
            for batch in handle.iter_batches(batch_size=batch_rows):
                yield pa.Table.from_batches([batch])


def output_ddl(dimensions: list[str]) -> str:
    """Spark schema of the output rows: scalars typed, nested columns as JSON text."""
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

    ``models``: outcome -> the model to score with, for the outcomes that have one (a
    registered version string, or the loaded model). ``health``: a ``HealthScore``.
    ``shards``: the least number of account shards (one Spark group each in step 1); a book
    with more than ``shards * shard_accounts`` accounts gets more (:func:`shard_count`; None:
    exactly ``shards``). ``lock=False`` when the caller holds :class:`OutputLock`. Spark
    failures raise :class:`SparkEngineError` (or the churnml error an executor raised, e.g.
    ``SchemaError``), naming the step. Like the local engine, the partition's ``_SUCCESS``
    marker is removed first and, with ``complete=True``, written last; earlier partitions
    without a valid marker are skipped. ``time_to_event``: the ``churnml-time-to-event``
    model (a version string or the loaded model; its columns are null without it).
    ``stage_seconds``: the driver's wall seconds per step and, as ``shard:<stage>``, the
    seconds the executors' Python workers spent per stage of the shards (summed over shards).
    """
    from churnml.data.io import find_table_files

    if shards < 1:
        raise UsageError(f"The 'shards' parameter must be a positive integer. Got {shards}.")
    as_of = to_as_of(as_of)
    out_dir = Path(out_dir)
    playbooks = playbooks if playbooks is not None else load_playbooks()
    if feature_dimensions is None:
        feature_dimensions = catalog_dimensions()
    spark = spark or spark_session()
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
        schemas = {name: table_schema(files[name], sdf) for name, sdf in tables.items()}
        earlier = [(d, p) for d, p in list_partitions(out_dir) if d < as_of]
        previous_as_of = None
        if earlier:  # last weeks' rows, read as load_earlier_weeks reads them
            previous_as_of, last = earlier[-1]
            start = as_of - pd.Timedelta(weeks=history_weeks)
            paths = [p / SCORES_NAME for d, p in earlier if d >= start]
            with spark_errors("reading last week's partition"):
                tables["_previous"] = _read(spark, last / SCORES_NAME).select(*_EARLIER_COLUMNS)
                tables["_history"] = spark.read.parquet(*map(str, paths)) \
                    .select(*_EARLIER_COLUMNS)
            schemas["_previous"] = _file_schema(last / SCORES_NAME, _EARLIER_COLUMNS)
            schemas["_history"] = _file_schema(paths[0], _EARLIER_COLUMNS)
        t1 = time.perf_counter()
        with spark_errors("counting the accounts"):
            shards = shard_count(tables["accounts"].count(), shards, shard_accounts)
        stage["driver_count"] = time.perf_counter() - t1
        shard_of = F.pmod(F.xxhash64(F.col("account_id").cast("string")), F.lit(shards))
        packed = [packed_table(name, sdf, shard_of) for name, sdf in tables.items()]
        book_rows = packed[0]
        for more in packed[1:]:
            book_rows = book_rows.unionByName(more)
        spark.conf.set("spark.sql.shuffle.partitions", str(shards))  # one task per shard
        t1 = time.perf_counter()
        with spark_errors("loading the models"):
            handle = shipped_models(spark, models, time_to_event)
        stage["driver_models"] = time.perf_counter() - t1
        dimensions = list(health.dimension_names)
        schema = arrow_schema(dimensions)
        seconds = seconds_accumulator(spark)
        scorer = make_shard_scorer(as_of, schemas, handle, health, playbooks,
                                   feature_dimensions, dimensions, seconds)
        uplift = play_effects.usable_uplift("saved", out_dir, as_of)
        scratch = out_dir / f".spark-{as_of:%Y-%m-%d}-{uuid.uuid4().hex[:12]}"
        stage["driver_setup"] = time.perf_counter() - t0  # the two above included
        try:
            # step 1: every shard's output rows, written once to the scratch folder
            t1 = time.perf_counter()
            with spark_errors("building features and scoring the shards"):
                (book_rows.groupBy("_shard").applyInArrow(scorer, schema=transport_ddl(dimensions))
                 .write.parquet(str(scratch / "rows")))
            stage["shards"] = time.perf_counter() - t1
            rows_sdf = spark.read.parquet(str(scratch / "rows"))
            # step 2: this week's queue, over the whole book, in one task
            t1 = time.perf_counter()
            with spark_errors("deciding this week's queue"):
                queue = (rows_sdf.select(*queue_input_columns(uplift))
                         .groupBy(F.lit(0).alias("_book"))
                         .applyInArrow(make_queue_task(playbooks, uplift), schema=_QUEUE_DDL))
                queue.write.parquet(str(scratch / "queue"))
            stage["queue"] = time.perf_counter() - t1
            # step 3: the rows with their queue, in account order, as typed parts
            t1 = time.perf_counter()
            queued = spark.read.parquet(str(scratch / "queue"))
            replaced_columns = [c for c in queued.columns if c != "account_id"]
            final = (rows_sdf.drop(*replaced_columns, *[f"{_Q}{f}" for f in _ACTION_FIELDS])
                     .join(queued, "account_id", "left").select(*schema.names)
                     .orderBy("account_id"))
            (scratch / "parts").mkdir(parents=True)
            with spark_errors("writing the output in account order"):
                written = [(int(r[0]), int(r[1])) for r in final.mapInArrow(
                    make_part_writer(str(scratch / "parts"), schema),
                    "part long, rows long").collect()]
            stage["sort_and_parts"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            rows = write_parquet_atomic(partition / SCORES_NAME,
                                        _parts(scratch / "parts", written, batch_rows), schema)
            stage["write"] = time.perf_counter() - t1
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            with contextlib.suppress(Exception):
                handle[1].unpersist()
        stage.update({k: round(v, 3) for k, v in seconds.value.items()})
        stage["spark_total"] = time.perf_counter() - t0
        if complete:
            mark_complete(partition, as_of, rows, [SCORES_NAME])
    return WeeklyResult(as_of=as_of, partition=partition, scores_path=partition / SCORES_NAME,
                        rows=rows, previous_as_of=previous_as_of, stage_seconds=stage,
                        skipped_partitions=skipped, replaced_incomplete=replaced)
