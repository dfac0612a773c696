"""churnml.data.sql without a server: URL forms, the hidden password, the table map, and the
score table's columns derived from the one output schema (the real-database tests are
tests/integration/test_sql_sources.py and test_sql_scores.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnml.data.sql import (
    DatabaseSource,
    is_database_url,
    load_sql_config,
    parse_source,
    quote_ident,
)
from churnml.data.tables import TABLES
from churnml.errors import ConfigError, UsageError

SECRET = "s3cr:et/p@ss"  # URL-encoded below: every special character of a URL's userinfo
URL = "postgresql://churn:s3cr%3Aet%2Fp%40ss@db.internal:5433/cs?sslmode=require"


def test_postgres_url_hides_its_password_everywhere():
    src = parse_source(URL)
    assert isinstance(src, DatabaseSource) and src.kind == "postgresql"
    assert src.password == SECRET
    shown = [str(src), repr(src), f"{src}", f"loading {src}", "%s" % src, src.display]
    for text in shown:
        assert "s3cr" not in text and "***" in text, text
    assert str(src) == "postgresql://churn:***@db.internal:5433/cs?sslmode=require"
    assert src.url == URL  # the driver gets the real one
    assert src.name == "cs"
    message = f"driver said: could not connect with {URL} (password {SECRET})"
    assert "s3cr" not in src.scrub(message)


@pytest.mark.parametrize("url, expected", [
    ("postgres://u@h/db", "postgresql://u@h/db"),
    ("postgresql+psycopg://u:pw@h:1/db", "postgresql://u:pw@h:1/db"),
])
def test_postgres_url_variants_go_to_libpq_as_postgresql(url, expected):
    src = parse_source(url)
    assert src.url == expected and "pw" not in str(src)


def test_duckdb_forms(tmp_path):
    f = tmp_path / "book.duckdb"
    f.write_bytes(b"")
    assert parse_source(f"duckdb://{f}").path == f
    assert parse_source(f"duckdb:{f}").path == f
    assert parse_source(str(f)).path == f  # an existing *.duckdb file
    assert parse_source(str(tmp_path / "missing.duckdb")) == tmp_path / "missing.duckdb"
    with pytest.raises(UsageError, match="names no database file"):
        parse_source("duckdb://")


def test_folders_stay_paths(tmp_path):
    assert parse_source(str(tmp_path)) == tmp_path
    assert parse_source(tmp_path) == tmp_path
    assert not is_database_url(str(tmp_path)) and not is_database_url(tmp_path)
    assert is_database_url("postgresql://h/db") and is_database_url(parse_source("postgres://h/d"))
    assert parse_source("C:/books/q3") == Path("C:/books/q3")  # a drive letter is no scheme


@pytest.mark.parametrize("url, message", [
    ("mysql://u:hunter2@h/db", "unsupported database URL"),
    ("postgresql://u:hunter2@h:port/db", "port is not a number"),
    ("postgresql://", "no host and no database name"),
])
def test_bad_urls_are_usage_errors_without_the_password(url, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_source(url)
    assert "hunter2" not in str(info.value)
    assert info.value.exit_code == 2


def test_quote_ident():
    assert quote_ident("usage_events") == '"usage_events"'
    assert quote_ident("analytics.events") == '"analytics"."events"'
    assert quote_ident('we"ird') == '"we""ird"'
    with pytest.raises(ConfigError):
        quote_ident("analytics.")


def test_sql_config_defaults_map_and_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("CHURNML_SQL_CONFIG", raising=False)
    default = load_sql_config()
    assert default.tables == {t: t for t in TABLES} and not default.queries
    path = tmp_path / "sql.yaml"
    path.write_text("schema: mart\ntables:\n  usage_events: product_events\n"
                    "  accounts: crm.accounts\nqueries:\n  invoices: SELECT 1\n")
    monkeypatch.setenv("CHURNML_SQL_CONFIG", str(path))
    config = load_sql_config()
    assert config.tables["usage_events"] == "mart.product_events"
    assert config.tables["accounts"] == "crm.accounts"  # qualified names keep their schema
    assert config.tables["mrr_changes"] == "mart.mrr_changes"
    assert config.queries == {"invoices": "SELECT 1"}
    assert config.explicit == {"usage_events", "accounts", "invoices"}
    path.write_text("tables:\n  events: product_events\n")
    with pytest.raises(ConfigError, match="'events'"):
        load_sql_config()
    path.write_text("tabels: {}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_sql_config()


def test_score_table_columns_derive_from_the_output_schema():
    from churnml.jobs.sql_scores import create_scores_sql_postgres
    from churnml.scoring.schema import declared_columns, output_columns

    dims = ["usage", "engagement"]
    ddl = create_scores_sql_postgres(dims)
    names = output_columns(dims)
    positions = [ddl.index(f'"{n}" ') for n in names]
    assert positions == sorted(positions)  # every column, in the schema's order
    nested = [n for n, col, _ in declared_columns(dims) if col.type in ("strings", "reasons", "action")]
    assert nested and all(f'"{n}" jsonb' in ddl for n in nested)
    assert "PRIMARY KEY (account_id, as_of)" in ddl


@pytest.mark.parametrize("pages,parts", [(0, 2), (1, 2), (7, 2), (247_861, 2), (10, 3), (5, 8)])
def test_page_ranges_cover_every_page_once_in_order(pages, parts):
    """The parts of a split read: consecutive ``ctid`` ranges from page 0, the last one open
    (pages added since the size was taken are read too), so together they are one scan."""
    import re

    from churnml.data.sql import page_range_queries

    queries = page_range_queries('SELECT * FROM "usage_events"', pages, parts)
    assert len(queries) == parts
    bounds = []
    for i, query in enumerate(queries):
        assert query.startswith('SELECT * FROM "usage_events" WHERE ')
        found = [int(x) for x in re.findall(r"'\((\d+),0\)'::tid", query)]
        assert len(found) == (1 if i == parts - 1 else 2)
        bounds.append(found)
    assert bounds[0][0] == 0
    for before, after in zip(bounds, bounds[1:]):
        assert before[1] == after[0] and before[0] <= before[1]  # no gap, no overlap
    assert all(b[-1] <= pages for b in bounds)


def test_read_connections_from_the_environment(monkeypatch):
    from churnml.data.sql import DEFAULT_READ_CONNECTIONS, READ_CONNECTIONS_ENV, read_connections

    monkeypatch.delenv(READ_CONNECTIONS_ENV, raising=False)
    assert read_connections() == DEFAULT_READ_CONNECTIONS == 2
    monkeypatch.setenv(READ_CONNECTIONS_ENV, " 1 ")
    assert read_connections() == 1
    for bad in ("0", "two", "-2", "65"):
        monkeypatch.setenv(READ_CONNECTIONS_ENV, bad)
        with pytest.raises(ConfigError, match=READ_CONNECTIONS_ENV):
            read_connections()


def test_arrow_from_a_database_becomes_the_frame_a_parquet_file_gives(tmp_path):
    """PostgreSQL's Arrow (``string`` in many batches, microsecond timestamps, decimals) turns
    into the same pandas frame as the parquet file of those values; a timestamp outside the
    nanosecond range keeps its microseconds (validation sets it aside), nothing raises."""
    import datetime as dt
    from decimal import Decimal

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from churnml.data.sql import _to_pandas

    ids = ["a1", None, "a3", "b4", "b5"]
    ts = [dt.datetime(2026, 1, 1, 9, 30, 0, 123456), None, dt.datetime(2025, 12, 31),
          dt.datetime(2024, 2, 29, 23, 59, 59), dt.datetime(2026, 11, 16)]
    qty = [1.5, 2.0, None, 4.25, 0.0]
    batches = [pa.record_batch({"account_id": pa.array(ids[i:j], pa.string()),
                                "ts": pa.array(ts[i:j], pa.timestamp("us")),
                                "quantity": pa.array([None if q is None else Decimal(str(q))
                                                      for q in qty[i:j]], pa.decimal128(10, 2))})
               for i, j in ((0, 2), (2, 3), (3, 5))]
    table = pa.Table.from_batches(batches)
    frame = _to_pandas(table.column_names, table.columns)

    pq.write_table(pa.table({"account_id": pa.array(ids, pa.large_string()),
                             "ts": pa.array(ts, pa.timestamp("ns")),
                             "quantity": pa.array(qty, pa.float64())}), tmp_path / "t.parquet")
    expected = pd.read_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["account_id"].array._pa_array.num_chunks == 1  # one chunk, as one row group

    far = pa.table({"term_end": pa.array([dt.datetime(9999, 12, 31), dt.datetime(2026, 1, 1)],
                                         pa.timestamp("us"))})
    kept = _to_pandas(far.column_names, far.columns)
    assert str(kept["term_end"].dtype) == "datetime64[us]"
    assert kept["term_end"].iloc[0] == pd.Timestamp("9999-12-31")
