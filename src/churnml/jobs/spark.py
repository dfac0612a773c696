"""The Spark engine of ``churnml score --engine spark``: the same builders, shard by shard.

Spark reads the book's table files (and the earlier partitions the alerts need), stacks them in
one frame keyed by account (each table's columns prefixed ``<table>__``, values as text so
every table fits one schema), and hashes accounts into shards. ``applyInPandas`` then runs, per
shard, exactly what the local engine runs per chunk: ``validate_frames`` (the same parsing and
dtypes as ``load_book``), ``build_features`` and :func:`~churnml.jobs.scoring.score_frame` with
the same ``TargetModel`` objects, shipped to the executors with the function. Every
per-account number is therefore computed by the same code on the same inputs, which is what
the parity test checks (to 1e-9). The driver streams the scored rows back in account order and
writes them with the local engine's writer (same schema, atomic rename, byte-identical reruns).

Why the shards call the ``TargetModel`` rather than ``mlflow.pyfunc.spark_udf``: the output
row needs the probabilities, the reasons (one TreeSHAP pass), the health score, the alerts and
the next best action together; a UDF column per model would add two passes over the features
and a join back by account, and a second code path for probabilities that could drift from
the one the HTTP service and the local job use. The models are the registry's champions
(loaded once on the driver from ``models:/churnml-<target>@champion``), so the versions in the
output are the same as with the pyfunc. See docs/operations.md.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from churnml.features.windows import to_as_of
from churnml.jobs.weekly import (
    ALERT_INPUT_FEATURES,
    ALERT_INPUTS_NAME,
    DEFAULT_HISTORY_WEEKS,
    SCORES_NAME,
    OutputLock,
    WeeklyResult,
    arrow_schema,
    list_partitions,
    partition_dir,
    remove_stale_temporaries,
    to_arrow,
    write_parquet_atomic,
)

_NESTED = ("churn_reasons", "expansion_reasons", "alerts", "next_best_action")
_SEP = "__"


def spark_session(master: str | None = None):
    """The active SparkSession, or a new one with UTC session time and Arrow transfers.

    Master: ``master``, else ``CHURNML_SPARK_MASTER``, else the one spark-submit configured,
    else ``local[2]``."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName("churnml-score")
    master = master or os.environ.get("CHURNML_SPARK_MASTER")
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = "local[2]"  # not under spark-submit (which sets the master itself)
    if master:
        builder = builder.master(master)
    return (builder.config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "8")
            # pandas writes nanosecond timestamps, which Spark reads only as longs
            .config("spark.sql.legacy.parquet.nanosAsLong", "true")
            .getOrCreate())


def _read(spark, path: Path):
    if path.suffix.lower() == ".csv":
        return spark.read.option("header", True).option("inferSchema", False).csv(str(path))
    return spark.read.parquet(str(path))


def _stacked(spark, tables: dict[str, "object"]):
    """One Spark frame: ``_table``, ``account_id`` and ``<table>__<column>`` text columns."""
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


def _unstack(pdf: pd.DataFrame) -> dict[str, pd.DataFrame]:
    frames = {}
    for name, rows in pdf.groupby("_table", sort=True):
        prefix = f"{name}{_SEP}"
        cols = [c for c in rows.columns if c.startswith(prefix)]
        frame = rows[cols].rename(columns=lambda c: c[len(prefix):]).reset_index(drop=True)
        frames[name] = frame.astype(object).where(frame.notna(), None)
    return frames


def _parse_scores(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Earlier-week rows that came through Spark as text, back to their types."""
    if frame is None or not len(frame):
        return None
    out = frame.copy()
    out["account_id"] = out["account_id"].astype(str)
    out["as_of"] = pd.to_datetime(out["as_of"]).astype("datetime64[ns]")
    for c in out.columns:
        if c not in ("account_id", "as_of", "health_tier"):
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out


def output_ddl(dimensions: list[str]) -> str:
    """Spark schema of a shard's result: scalars typed, nested columns as JSON text."""
    from churnml.jobs.scoring import output_columns

    schema = arrow_schema(dimensions)
    parts = []
    for f in schema:
        if f.name in _NESTED or f.name == "as_of":
            kind = "string"
        elif str(f.type) == "double":
            kind = "double"
        elif str(f.type) == "int32":
            kind = "int"
        else:
            kind = "string"
        parts.append(f"`{f.name}` {kind}")
    parts += [f"`_in_{c}` double" for c in ALERT_INPUT_FEATURES]
    assert [p.split("`")[1] for p in parts[:len(schema)]] == output_columns(dimensions)
    return ", ".join(parts)


def make_shard_scorer(as_of, churn_model, expansion_model, health, dimensions, playbooks,
                      feature_dimensions):
    """The function ``applyInPandas`` runs per shard (a closure over the models)."""
    as_of = to_as_of(as_of)

    def score_shard(pdf: pd.DataFrame) -> pd.DataFrame:
        from churnml.data.io import validate_frames
        from churnml.features.build import build_features
        from churnml.jobs.scoring import score_frame

        frames = _unstack(pdf)
        previous = _parse_scores(frames.pop("_previous", None))
        history = _parse_scores(frames.pop("_history", None))
        book, _ = validate_frames(frames, source="spark shard")
        features = build_features(book, [as_of])
        features = features.sort_values("account_id", kind="stable").reset_index(drop=True)
        scored = score_frame(features, churn_model, expansion_model, health, previous=previous,
                             history=history, playbooks=playbooks,
                             feature_dimensions=feature_dimensions)
        for c in _NESTED:
            scored[c] = [json.dumps(v, allow_nan=False) for v in scored[c]]
        scored["as_of"] = scored["as_of"].dt.strftime("%Y-%m-%d")
        for c in ALERT_INPUT_FEATURES:
            scored[f"_in_{c}"] = (features[c].astype("float64").to_numpy()
                                  if c in features.columns else np.nan)
        return scored

    return score_shard


def score_book_spark(
    data_dir: str | Path,
    as_of,
    out_dir: str | Path,
    churn_model,
    expansion_model,
    health,
    *,
    shards: int = 8,
    history_weeks: int = DEFAULT_HISTORY_WEEKS,
    playbooks=None,
    feature_dimensions=None,
    lock: bool = True,
    spark=None,
    batch_rows: int = 25_000,
) -> WeeklyResult:
    """Score the book in ``data_dir`` on Spark into ``OUT/as_of=DATE/`` (same files as the
    local engine; see the module docstring). ``shards``: number of account shards."""
    import contextlib

    import pyarrow as pa
    from pyspark.sql import functions as F

    from churnml.data.io import find_table_files
    from churnml.jobs.actions import load_playbooks
    from churnml.jobs.scoring import _feature_dimensions

    as_of = to_as_of(as_of)
    out_dir = Path(out_dir)
    playbooks = playbooks if playbooks is not None else load_playbooks()
    if feature_dimensions is None:
        feature_dimensions = _feature_dimensions() \
            or dict(getattr(churn_model, "dimensions", None) or {})
    spark = spark or spark_session()
    partition = partition_dir(out_dir, as_of)
    stage: dict[str, float] = {}
    with (OutputLock(out_dir) if lock else contextlib.nullcontext()):
        t0 = time.perf_counter()
        partition.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(partition)
        files, _ = find_table_files(data_dir)
        tables = {name: _read(spark, path) for name, path in sorted(files.items())}
        earlier = [(d, p) for d, p in list_partitions(out_dir) if d < as_of]
        previous_as_of = None
        if earlier:
            previous_as_of, last = earlier[-1]
            cols = ["account_id", "as_of", "health_score", "health_tier"]
            prev = _read(spark, last / SCORES_NAME).select(*cols)
            if (last / ALERT_INPUTS_NAME).is_file():
                inputs = _read(spark, last / ALERT_INPUTS_NAME).drop("as_of")
                prev = prev.join(inputs, on="account_id", how="left")
            tables["_previous"] = prev
            start = as_of - pd.Timedelta(weeks=history_weeks)
            paths = [str(p / SCORES_NAME) for d, p in earlier if d >= start]
            tables["_history"] = spark.read.parquet(*paths).select(*cols)
        stacked = _stacked(spark, tables)
        stacked = stacked.withColumn("_shard", F.pmod(F.xxhash64("account_id"), F.lit(shards)))
        dimensions = list(health.dimension_names)
        scorer = make_shard_scorer(as_of, churn_model, expansion_model, health, dimensions,
                                   playbooks, feature_dimensions)
        spark.conf.set("spark.sql.shuffle.partitions", str(shards))  # one task per shard
        scored = stacked.groupBy("_shard").applyInPandas(scorer, schema=output_ddl(dimensions))
        scored = scored.orderBy("account_id")
        schema = arrow_schema(dimensions)
        alert_inputs: list[pd.DataFrame] = []

        def batches():
            rows = []
            columns = None
            for row in scored.toLocalIterator(prefetchPartitions=True):
                if columns is None:
                    columns = list(row.__fields__)
                rows.append(tuple(row))
                if len(rows) >= batch_rows:
                    yield _to_table(rows, columns)
                    rows = []
            if rows:
                yield _to_table(rows, columns)

        def _to_table(rows, columns):
            frame = pd.DataFrame.from_records(rows, columns=columns)
            for c in _NESTED:
                frame[c] = [json.loads(v) for v in frame[c]]
            frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[ns]")
            inputs = frame[["account_id", "as_of"]].copy()
            for c in ALERT_INPUT_FEATURES:
                inputs[c] = frame[f"_in_{c}"].astype("float64")
            alert_inputs.append(inputs)
            return to_arrow(frame, schema)

        rows = write_parquet_atomic(partition / SCORES_NAME, batches(), schema)
        inputs = (pd.concat(alert_inputs, ignore_index=True) if alert_inputs
                  else pd.DataFrame({"account_id": pd.Series(dtype="str"),
                                     "as_of": pd.Series(dtype="datetime64[ns]")}))
        table = pa.Table.from_pandas(inputs, preserve_index=False)
        write_parquet_atomic(partition / ALERT_INPUTS_NAME, iter([table]), table.schema)
        stage["spark_total"] = time.perf_counter() - t0
    return WeeklyResult(as_of=as_of, partition=partition, scores_path=partition / SCORES_NAME,
                        rows=rows, previous_as_of=previous_as_of, stage_seconds=stage)
