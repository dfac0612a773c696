"""Books read from a database (churnml.data.sql): the session's simulated book (300 accounts)
loaded from its folder, from a DuckDB file and from a real PostgreSQL cluster gives identical
tables, counts, features and scores; bad URLs, a wrong password, a missing table or column are
clear errors with the CLI's exit codes; the password reaches no output.

PostgreSQL stores timestamps to the microsecond: the simulator's touchpoint times carry
nanoseconds, so the file's times are compared truncated to the microsecond (features and scores,
which work on days, are compared exactly)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "churnml.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=full, timeout=300)


@pytest.fixture(scope="module")
def sql_books(sim_dir, postgres, tmp_path_factory):
    """The simulated book in a DuckDB file (through the Python API) and in PostgreSQL (through
    ``churnml convert to-sql``): ``{"files": dir, "duckdb": url, "postgresql": url}``."""
    from churnml.data.sql import parse_source
    from churnml.data.sql_write import write_book_folder

    folder = tmp_path_factory.mktemp("sql_books")
    duck = f"duckdb://{folder / 'book.duckdb'}"
    rows = write_book_folder(sim_dir, parse_source(duck))
    assert rows["usage_events"] > 10_000
    pg_url = postgres.create_database("book")
    proc = _cli("convert", "to-sql", "--data", str(sim_dir), "--url", pg_url, cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert postgres.password not in proc.stdout + proc.stderr
    assert "loaded" in proc.stderr and "usage_events 1" in proc.stderr  # the console is stderr
    return {"files": sim_dir, "duckdb": duck, "postgresql": pg_url}


@pytest.fixture(scope="module")
def loaded(sql_books):
    """Each source read by ``load_book``; ``postgresql-split``: every PostgreSQL table read in
    three page ranges on three connections (the path of a big table), checked to be taken."""
    import churnml.data.sql as sql
    from churnml.data.io import load_book

    out = {kind: load_book(where) for kind, where in sql_books.items()}
    splits: list[int] = []
    real_parts, real_min = sql.read_arrow_parts, sql.SPLIT_MIN_BYTES

    def counted(connections, source, queries):
        splits.append(len(queries))
        return real_parts(connections, source, queries)

    sql.read_arrow_parts, sql.SPLIT_MIN_BYTES = counted, 0
    os.environ[sql.READ_CONNECTIONS_ENV] = "3"
    try:
        out["postgresql-split"] = load_book(sql_books["postgresql"])
    finally:
        sql.read_arrow_parts, sql.SPLIT_MIN_BYTES = real_parts, real_min
        del os.environ[sql.READ_CONNECTIONS_ENV]
    assert splits == [3] * len(out["postgresql"][0].tables), splits
    return out


def _to_microseconds(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].dt.floor("us")
    return frame


@pytest.mark.parametrize("kind", ["duckdb", "postgresql", "postgresql-split"])
def test_same_tables_counts_and_rejects(loaded, kind):
    (files, files_report), (book, report) = loaded["files"], loaded[kind]
    assert report.counts == files_report.counts
    assert sum(c["read"] for c in report.counts.values()) > 100_000
    assert report.absent == files_report.absent
    pd.testing.assert_frame_equal(report.rejects, files_report.rejects)
    assert list(book.tables) == list(files.tables)
    for name, expected in files.tables.items():
        if kind.startswith("postgresql"):
            expected = _to_microseconds(expected)
        pd.testing.assert_frame_equal(book.tables[name], expected, obj=f"{kind} {name}")
    assert "***" in book.source or kind == "duckdb"


def test_same_features_and_scores(loaded, tmp_path):
    from jobs_fakes import models

    from churnml.features.build import build_features
    from churnml.features.labels import latest_scoring_date
    from churnml.health.score import HealthScore
    from churnml.jobs.weekly import score_book

    as_of = latest_scoring_date(loaded["files"][0])
    dates = [as_of - pd.Timedelta(days=91), as_of]
    features = {k: build_features(book, dates) for k, (book, _) in loaded.items()}
    assert len(features["files"]) > 300
    for kind in ("duckdb", "postgresql", "postgresql-split"):
        pd.testing.assert_frame_equal(features[kind], features["files"], obj=f"{kind} features")
    scores = {}
    for kind, (book, _) in loaded.items():
        result = score_book(book, as_of, tmp_path / kind, models(), HealthScore(), chunk_size=120)
        scores[kind] = pd.read_parquet(result.scores_path)
    assert scores["files"]["churn_probability"].notna().all()
    for kind in ("duckdb", "postgresql"):
        pd.testing.assert_frame_equal(scores[kind], scores["files"], obj=f"{kind} scores")


def test_table_map_and_query_config(sql_books, postgres, tmp_path, monkeypatch):
    """Tables under other names and a query per table (CHURNML_SQL_CONFIG) read the same book."""
    from churnml.data.io import load_book

    db = postgres.create_database("mapped")
    from churnml.data.sql import parse_source
    from churnml.data.sql_write import write_book_folder

    write_book_folder(sql_books["files"], parse_source(db))
    postgres.psql("CREATE SCHEMA crm; ALTER TABLE accounts RENAME COLUMN account_id TO id; "
                  "ALTER TABLE accounts SET SCHEMA crm; "
                  "ALTER TABLE usage_events RENAME TO product_events", "mapped")
    config = tmp_path / "sql.yaml"
    config.write_text("tables:\n  usage_events: product_events\n"
                      "queries:\n  accounts: SELECT id AS account_id, created_at, plan, segment, "
                      "industry, region, headcount_growth, contract_type, billing_period, "
                      "payment_method FROM crm.accounts\n")
    monkeypatch.setenv("CHURNML_SQL_CONFIG", str(config))
    book, report = load_book(db)
    files, files_report = load_book(sql_books["files"])
    assert report.counts == files_report.counts
    pd.testing.assert_frame_equal(book.tables["accounts"], files.tables["accounts"])
    pd.testing.assert_frame_equal(book.tables["usage_events"], files.tables["usage_events"])


def test_errors_and_exit_codes(sql_books, postgres, tmp_path):
    """Each failure is one clear line, the CLI's exit code, and never the password."""
    from churnml.data.sql import parse_source
    from churnml.data.sql_write import write_book_folder

    broken = postgres.create_database("broken")
    write_book_folder(sql_books["files"], parse_source(broken))
    postgres.psql("DROP TABLE mrr_changes", "broken")
    wrong = postgres.url_for("book", password="wrong-" + postgres.password)
    cases = {
        "bad scheme": ("mysql://u:" + postgres.password + "@127.0.0.1/x", 2,
                       "unsupported database URL"),
        "bad port": (f"postgresql://postgres:{postgres.password}@127.0.0.1:notaport/x", 2,
                     "port is not a number"),
        "wrong password": (wrong, 2, "password authentication failed"),
        "unknown database": (postgres.url_for("nosuchdb"), 2, 'database "nosuchdb" does not exist'),
        "missing table": (broken, 2, "mrr_changes: required table 'mrr_changes' not found"),
        "no server": (f"postgresql://postgres:{postgres.password}@127.0.0.1:1/x", 1,
                      "cannot connect"),
        "missing duckdb file": (f"duckdb://{tmp_path / 'none.duckdb'}", 2,
                                "no such DuckDB database file"),
    }
    for name, (url, code, message) in cases.items():
        proc = _cli("validate", "--data", url, "--rejects", str(tmp_path / "r.csv"), cwd=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == code, (name, out)
        assert message in " ".join(out.split()), (name, out)
        assert postgres.password not in out, (name, out)
        assert "Traceback" not in out, (name, out)
    # a missing column (the tables back, one column dropped): named with its table
    write_book_folder(sql_books["files"], parse_source(broken))
    postgres.psql("ALTER TABLE usage_events DROP COLUMN ts", "broken")
    proc = _cli("validate", "--data", broken, cwd=tmp_path)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2 and "usage_events: missing required column 'ts'" in out, out
    assert postgres.password not in out


def test_password_from_the_environment(sql_books, postgres, tmp_path):
    """No password in the URL: libpq takes PGPASSWORD; the default rejects file is named after
    the database, in the working folder."""
    url = f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/book"
    proc = _cli("validate", "--data", url, cwd=tmp_path, env={"PGPASSWORD": postgres.password})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "book_rejects.csv").is_file()
    files = pd.read_csv(tmp_path / "book_rejects.csv")
    assert np.array_equal(files.columns, ["table", "row", "column", "value", "reason"])


def test_database_gone_mid_read_is_exit_1(sql_books, postgres, tmp_path):
    """The server drops the connection while a table is read (the query terminates its own
    backend, as an admin's pg_terminate_backend or a restart would): exit code 1, the table
    named, no traceback, nothing written."""
    config = tmp_path / "sql.yaml"
    config.write_text("queries:\n  usage_events: SELECT * FROM usage_events "
                      "WHERE pg_terminate_backend(pg_backend_pid())\n")
    rejects = tmp_path / "r.csv"
    proc = _cli("validate", "--data", sql_books["postgresql"], "--rejects", str(rejects),
                cwd=tmp_path, env={"CHURNML_SQL_CONFIG": str(config)})
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1, out
    assert "usage_events: the database postgresql://postgres:***@" in out, out
    assert "went away while reading" in out and "Traceback" not in out, out
    assert postgres.password not in out
    assert not rejects.exists()


def test_database_gone_mid_split_read_is_exit_1(sql_books, postgres, tmp_path, monkeypatch):
    """A big table read in page ranges on two connections: the helper connection's backend is
    terminated mid-read (its range's query kills it): DatabaseUnavailableError (exit code 1)
    naming the table, the password hidden, no rejects file written."""
    import churnml.data.sql as sql
    from churnml.data.io import load_book

    real = sql.page_range_queries

    def second_part_dies(select, pages, parts):
        queries = real(select, pages, parts)
        if "usage_events" in select:
            queries[1] += " AND pg_terminate_backend(pg_backend_pid())"
        return queries

    monkeypatch.setattr(sql, "page_range_queries", second_part_dies)
    monkeypatch.setattr(sql, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setenv(sql.READ_CONNECTIONS_ENV, "2")
    rejects = tmp_path / "r.csv"
    with pytest.raises(sql.DatabaseUnavailableError) as caught:
        load_book(sql_books["postgresql"], rejects_path=rejects)
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert message.startswith("usage_events: the database postgresql://postgres:***@"), message
    assert "went away while reading" in message and postgres.password not in message
    assert not rejects.exists()
