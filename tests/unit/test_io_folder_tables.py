"""A table stored as a ``<table>.parquet`` folder of parquet files (Spark's output, a book
simulated in chunks) is read as the one table it holds."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from churnml.data.io import find_table_files, folder_data_end, load_book


def _split_into_parts(folder, name: str, parts: int = 3) -> None:
    path = folder / f"{name}.parquet"
    table = pq.read_table(path)
    path.unlink()
    path.mkdir()
    step = -(-table.num_rows // parts)
    for k in range(parts):
        pq.write_table(table.slice(k * step, step), path / f"part-{k:05d}.parquet")
    (path / "_SUCCESS").write_text("")  # Spark's marker: not a part


def test_a_table_folder_loads_as_the_same_table(sim_dir, tmp_path):
    import shutil

    split = tmp_path / "book"
    shutil.copytree(sim_dir, split, ignore=shutil.ignore_patterns("_truth"))
    for name in ("usage_events", "mrr_changes"):
        _split_into_parts(split, name)
    files, warnings = find_table_files(split)
    assert files["usage_events"].is_dir() and not warnings
    book, report = load_book(split)
    whole, whole_report = load_book(sim_dir)
    assert report.total_rejected == whole_report.total_rejected
    assert sorted(book.tables) == sorted(whole.tables)
    for name in whole.tables:
        pd.testing.assert_frame_equal(book[name], whole[name], check_exact=True)
    assert folder_data_end(split) == folder_data_end(sim_dir)


def test_a_table_folder_streams_into_sql_in_batches(sim_dir, tmp_path):
    import shutil

    from churnml.data.sql_write import _arrow_reader

    split = tmp_path / "book"
    shutil.copytree(sim_dir, split, ignore=shutil.ignore_patterns("_truth"))
    _split_into_parts(split, "touchpoints")
    reader = _arrow_reader(split / "touchpoints.parquet", batch_rows=1_000)
    streamed = reader.read_all()
    assert streamed.num_rows == pq.read_metadata(sim_dir / "touchpoints.parquet").num_rows
    assert streamed.sort_by("ts").equals(pq.read_table(sim_dir / "touchpoints.parquet")
                                         .sort_by("ts").cast(streamed.schema))
