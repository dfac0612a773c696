"""The Spark engine's shard transport without Spark: the Arrow batches a shard receives (every
table's columns typed, side by side, nanosecond timestamps as longs as Spark reads them) are
split back into the tables ``load_book`` reads, and the feature builder run on them gives
the local engine's features. The Spark runs themselves are in tests/integration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnml.data.io import find_table_files, load_book, read_table, validate_frames
from churnml.jobs.spark import (
    _SEP,
    _shard_tables,
    feature_schema,
    make_feature_builder,
    shard_count,
    table_schema,
)


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


def test_the_feature_builder_gives_the_local_engines_features(sim_dir):
    from churnml.features.build import build_features
    from churnml.features.labels import latest_scoring_date
    from churnml.scoring.actions import load_playbooks

    local, _ = load_book(sim_dir)
    as_of = latest_scoring_date(local)
    expected = build_features(local, [as_of]).sort_values("account_id").reset_index(drop=True)
    kinds = [(c, "double" if expected[c].dtype == np.float64 else "string")
             for c in expected.columns if c not in ("account_id", "as_of")]
    playbooks = load_playbooks()
    batches, schemas, _ = _stacked_batches(sim_dir, seed=5)
    builder = make_feature_builder(as_of, schemas, kinds, playbooks)
    out = pa.Table.from_batches(list(builder(iter(batches))))
    assert out.schema.names == [n for n, _ in feature_schema(kinds, playbooks)]
    got = out.to_pandas()
    assert got["account_id"].tolist() == expected["account_id"].tolist()
    assert (got["_shard"] == 0).all()
    for name, kind in kinds:
        if kind == "double":
            np.testing.assert_array_equal(got[name].to_numpy("float64"),
                                          expected[name].to_numpy("float64"), err_msg=name)
        else:
            assert got[name].astype(object).where(got[name].notna(), None).tolist() == \
                expected[name].astype(object).where(expected[name].notna(), None).tolist(), name


@pytest.mark.parametrize("accounts,shards,per,expected", [
    (10_000, 8, 2_500, 8), (10_000, 2, 2_500, 4), (10_001, 2, 2_500, 5),
    (1_000_000, 8, 2_500, 400), (500, 8, None, 8), (0, 3, 2_500, 3)])
def test_shard_count_bounds_the_accounts_per_shard(accounts, shards, per, expected):
    assert shard_count(accounts, shards, per) == expected
