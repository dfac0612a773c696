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
