"""The Spark engine's shard transport without Spark: the Arrow batches a shard receives (every
table's columns typed, side by side, nanosecond timestamps as longs as Spark reads them) are
split back into the tables ``load_book`` reads, and the shard function, the queue task and
the typed parts give the local engine's file. The Spark runs themselves are in
tests/integration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnml.data.io import find_table_files, load_book, read_table, validate_frames
from churnml.jobs.spark import _SEP, _shard_tables, shard_count, table_schema


class _Columns:  # what table_schema needs of a Spark frame
    def __init__(self, columns):
        self.columns = list(columns)


def _as_spark_gives(path, name: str) -> pa.Table:
    """The table as Spark hands it to Python: nanosecond timestamps as int64
    (spark.sql.legacy.parquet.nanosAsLong), large strings as strings, columns prefixed."""
    table = pq.read_table(path)
    columns = {"_table": pa.array([name] * table.num_rows),
               "account_id": table.column("account_id").cast(pa.string())}
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            column = column.cast(pa.int64())
        elif pa.types.is_large_string(field.type):
            column = column.cast(pa.string())
        columns[f"{name}{_SEP}{field.name}"] = column
    return pa.table(columns)


def _stacked_batches(folder, seed: int = 3, rows: int = 997):
    """Every table stacked (unionByName with the other tables' columns null), rows shuffled
    and cut into batches, as a shuffle delivers one shard."""
    files, _ = find_table_files(folder)
    parts = [_as_spark_gives(path, name) for name, path in sorted(files.items())]
    stacked = pa.concat_tables(parts, promote_options="default")
    stacked = stacked.append_column("_shard", pa.array(np.zeros(stacked.num_rows, "int64")))
    order = np.random.default_rng(seed).permutation(stacked.num_rows)
    schemas = {name: table_schema(path, _Columns(pq.read_schema(path).names))
               for name, path in files.items()}
    return stacked.take(order).to_batches(max_chunksize=rows), schemas, files


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def test_a_shard_gets_back_the_tables_load_book_reads(sim_dir):
    batches, schemas, files = _stacked_batches(sim_dir)
    frames = _shard_tables(batches, schemas)
    assert sorted(frames) == sorted(files)
    for name, path in files.items():
        expected = read_table(path)
        got = frames[name]
        assert list(got.columns) == list(expected.columns), name
        assert got.dtypes.equals(expected.dtypes), name
        pd.testing.assert_frame_equal(_sorted(got), _sorted(expected), check_exact=True)
    # validated, the shard holds the rows of the book the local engine loads, in (account,
    # time) order; rows that tie on both keep their arrival order, as they always did on Spark
    book, report = validate_frames(frames, source="shard")
    local, local_report = load_book(sim_dir)
    assert report.total_rejected == local_report.total_rejected
    for name in files:
        assert book[name].dtypes.equals(local[name].dtypes), name
        pd.testing.assert_frame_equal(_sorted(book[name]), _sorted(local[name]), check_exact=True)


def test_a_table_without_rows_in_the_shard_is_empty_and_typed(sim_dir):
    batches, schemas, files = _stacked_batches(sim_dir)
    kept = [b.filter(pa.compute.not_equal(b.column("_table"), "nps_responses")) for b in batches]
    frames = _shard_tables(kept, schemas)
    assert len(frames["nps_responses"]) == 0
    assert frames["nps_responses"].dtypes.equals(read_table(files["nps_responses"]).dtypes)


def _earlier_rows(path, name: str) -> pa.Table:
    """Last weeks' score rows as Spark stacks them (``_previous`` / ``_history``)."""
    table = pq.read_table(path, columns=["account_id", "as_of", "health_score", "health_tier"])
    columns = {"_table": pa.array([name] * table.num_rows),
               "account_id": table.column("account_id").cast(pa.string())}
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            column = column.cast(pa.int64())
        columns[f"{name}{_SEP}{field.name}"] = column
    return pa.table(columns)


def test_shards_queue_and_parts_give_the_local_engines_file(sim_dir, tmp_path):
    """Steps 1-3 of the Spark engine without Spark: the book's tables and last week's rows
    packed by shard (two shards), each shard scored by the shard function (the fakes' models and a
    time-to-event model), the queue task over every shard's rows, the rows joined with their
    queue in account order and typed back: the local engine's file, every value identical."""
    import zlib

    from churnml.features.labels import latest_scoring_date
    from churnml.health.score import HealthScore
    from churnml.jobs.spark import (
        _Q,
        make_packer,
        make_queue_task,
        make_shard_scorer,
        queue_input_columns,
        typed_rows,
    )
    from churnml.jobs.weekly import partition_dir, score_book
    from churnml.scoring.actions import load_playbooks
    from churnml.scoring.frame import catalog_dimensions
    from churnml.scoring.schema import arrow_schema
    from jobs_fakes import hazard_model, models

    local, _ = load_book(sim_dir)
    as_of = latest_scoring_date(local)
    earlier = as_of - pd.Timedelta(days=7)
    health, fakes, tte = HealthScore(), models(), hazard_model()
    for when in (earlier, as_of):
        result = score_book(local, when, tmp_path, fakes, health, chunk_size=300,
                            time_to_event=tte)
    expected = pq.read_table(result.scores_path)
    assert expected.num_rows > 100

    files, _ = find_table_files(sim_dir)
    schemas = {name: table_schema(path, _Columns(pq.read_schema(path).names))
               for name, path in files.items()}
    last = partition_dir(tmp_path, earlier) / "scores.parquet"
    parts = {name: _as_spark_gives(path, name) for name, path in files.items()}
    for name in ("_previous", "_history"):
        parts[name] = _earlier_rows(last, name)
        schema = pq.read_schema(last)
        schemas[name] = pa.schema([schema.field(c) for c in
                                   ("account_id", "as_of", "health_score", "health_tier")],
                                  metadata=schema.metadata)
    packets = []  # each table packed by shard (two shards), as the packing tasks do
    for name, table in parts.items():
        shard = np.array([zlib.crc32(str(a).encode()) % 2 for a in
                          table.column("account_id").to_pylist()], dtype="int64")
        table = table.drop_columns(["_table", "account_id"]).append_column(
            "_shard", pa.array(shard))
        packets += list(make_packer(name, max_rows=700)(iter(
            table.to_batches(max_chunksize=300))))
    packets = pa.Table.from_batches(packets)
    assert packets.num_rows > 2 * len(parts)  # several flushes per table
    playbooks = load_playbooks()
    dimensions = list(health.dimension_names)
    scorer = make_shard_scorer(as_of, schemas, (fakes, tte), health, playbooks,
                               catalog_dimensions(), dimensions)
    rows = pa.concat_tables([
        pa.Table.from_batches(list(scorer(iter(
            packets.filter(pa.compute.equal(packets.column("_shard"), k))
            .to_batches(max_chunksize=5)))))
        for k in (0, 1)])
    assert rows.num_rows == expected.num_rows
    queue = pa.Table.from_batches(list(make_queue_task(playbooks, None)(iter(
        rows.select(queue_input_columns(None)).to_batches(max_chunksize=400)))))
    replaced = [c for c in queue.column_names if c != "account_id"]
    joined = rows.drop_columns([*replaced, *[c for c in rows.column_names
                                             if c.startswith(_Q)]]).join(queue, "account_id")
    joined = joined.sort_by("account_id")
    got = typed_rows(joined.select(arrow_schema(dimensions).names), arrow_schema(dimensions))
    assert got.column("account_id").to_pylist() == expected.column("account_id").to_pylist()
    for name in expected.column_names:
        assert got.column(name).equals(expected.column(name)), name
    assert got.equals(expected)
    assert sum(len(a) for a in got.column("alerts").to_pylist()) > 0  # last week reached it


def test_each_python_worker_unpickles_the_shipped_models_once():
    import pickle

    from churnml.jobs import spark

    class Broadcast:  # what a Spark broadcast gives a worker
        reads = 0

        @property
        def value(self):
            Broadcast.reads += 1
            return pickle.dumps(({"churn": "model"}, None))

    handle = ("digest-1", Broadcast())
    spark._WORKER_MODELS.clear()
    assert spark.worker_models(handle) == ({"churn": "model"}, None)
    assert spark.worker_models(handle) == ({"churn": "model"}, None)
    assert Broadcast.reads == 1
    assert spark.worker_models(("digest-2", Broadcast()))[0] == {"churn": "model"}
    assert Broadcast.reads == 2 and list(spark._WORKER_MODELS) == ["digest-2"]


@pytest.mark.parametrize("accounts,shards,per,expected", [
    (10_000, 8, 2_500, 8), (10_000, 2, 2_500, 4), (10_001, 2, 2_500, 5),
    (1_000_000, 8, 2_500, 400), (500, 8, None, 8), (0, 3, 2_500, 3)])
def test_shard_count_bounds_the_accounts_per_shard(accounts, shards, per, expected):
    assert shard_count(accounts, shards, per) == expected
